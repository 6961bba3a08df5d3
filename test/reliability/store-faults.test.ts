/**
 * Store faults through the whole gateway: what it does when its key store cannot be read (permissions, a file
 * of garbage, a truncated file), when the passphrase is wrong, and when the disk fills up while it runs (a
 * small tmpfs over the instance's var/, mounted in a private mount namespace of the gateway's own: it goes away
 * with the process on every exit path). The gateway writes at run time to the store (route memory, harvested
 * untrusted certificates, peers' capabilities) and to var/queue (the retry queue).
 *
 * Asserted: a store that cannot be opened stops the gateway at startup with exit status 78 and a line naming
 * the store and the reason (never a crash by signal, never a listening gateway without keys); with a full disk
 * every message gets either 250 with every copy at the destination, or a 4xx with a reason (deferred: the
 * client keeps it), never 250 and then lost; the gateway never dies; once space is back, mail flows again.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { signMessage } from '../../src/smime/message';
import { open } from 'lmdb';
import { KeyStore } from '../../src/store/key-store';
import type { Gateway } from '../gateway/harness';
import { amdStore, creds } from '../gateway/paper-gateways';
import { numberedMessage, sendMail, type SendResult } from './crash-smtp';
import { startCrashSink, type CrashSink } from './crash-sink';
import { launch, PASS, prepareInstance, sleep, start, stopAndRemove, waitFor, type Instance } from './faults-gateway';
import { removeInstance } from '../gateway/harness';

const ROOT = process.getuid?.() === 0;
const INI = '[policy]\nlocal_domains = amd\n[delivery]\nnext_hop = 127.0.0.1:9\nconnect_timeout = 2\n';

/** Starts the instance expecting it to refuse: its exit status, stderr, and whether it ever listened. */
async function refusesToStart(dir: string, prefix: string[] = []): Promise<{ code: number | null; signal: string | null; stderr: string; listened: boolean }> {
  const gw = launch(dir, prefix);
  const timer = setTimeout(() => gw.child.kill('SIGKILL'), 30_000);
  await gw.exited;
  clearTimeout(timer);
  return { code: gw.child.exitCode, signal: gw.child.signalCode, stderr: gw.stderr(), listened: gw.stdout().includes('Listening on') };
}

describe('a key store that cannot be opened stops the gateway at startup, saying why', { timeout: 120_000, concurrency: true }, () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeInstance));

  async function instance(): Promise<Instance> {
    const inst = await prepareInstance(INI, amdStore);
    dirs.push(inst.dir);
    return inst;
  }

  it('unreadable (mode 000, and without root\'s DAC override): exit 78, "Permission denied", the store named', async () => {
    const inst = await instance();
    const store = join(inst.dir, 'var', 'store');
    chmodSync(join(store, 'store.mdb'), 0o000);
    // Root reads anything; drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH so the mode counts, as for the service user.
    const r = await refusesToStart(inst.dir, ROOT ? ['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--inh-caps=-dac_override,-dac_read_search'] : []);
    assert.equal(r.signal, null, r.stderr);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /cstp: cannot open the key store: .*permission denied/i);
    assert.ok(r.stderr.includes(store), r.stderr);
    assert.equal(r.listened, false);
  });

  it('a data file of garbage: exit 78, "damaged ... not an LMDB data file" (LMDB itself died of SIGSEGV here)', async () => {
    const inst = await instance();
    writeFileSync(join(inst.dir, 'var', 'store', 'store.mdb'), Buffer.alloc(65536, 'cstp'));
    const r = await refusesToStart(inst.dir);
    assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /cstp: cannot open the key store: key store .* is damaged: .*not an LMDB data file/);
    assert.equal(r.listened, false);
  });

  it('a truncated data file: exit 78, "damaged ... truncated" (LMDB itself died of SIGBUS here)', async () => {
    const inst = await instance();
    truncateSync(join(inst.dir, 'var', 'store', 'store.mdb'), 8192);
    const r = await refusesToStart(inst.dir);
    assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /is damaged: .*is truncated/);
  });

  it('damaged data pages behind intact meta pages: exit 78, "damaged" (the gateway died of SIGSEGV here)', async () => {
    const inst = await instance();
    const file = join(inst.dir, 'var', 'store', 'store.mdb');
    const data = readFileSync(file);
    // Pages 0 and 1 are the meta pages; everything after them becomes noise.
    for (let i = 8192; i < data.length; i++) data[i] = (i * 7) & 0xff;
    writeFileSync(file, data);
    const r = await refusesToStart(inst.dir);
    assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /cstp: cannot open the key store: key store .* is damaged: /);
    assert.equal(r.listened, false);
  });

  it('a wrong passphrase: exit 78, "wrong passphrase for key store", the passphrase not shown', async () => {
    const inst = await instance();
    writeFileSync(join(inst.dir, 'var', 'store.passphrase'), 'not the passphrase\n', { mode: 0o600 });
    const r = await refusesToStart(inst.dir);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /wrong passphrase for key store .*var\/store/);
    assert.doesNotMatch(r.stderr, /not the passphrase|paper example passphrase/);
  });

  it('a key sealed under another passphrase (record copied from another store): exit 78, naming the key', async () => {
    const inst = await instance();
    const other = await prepareInstance(INI, (s) => s.putGatewayIdentity('amd', creds('gw-intel')), { varName: 'var' });
    dirs.push(other.dir);
    // Swap the identity record for one sealed under another store's key (with the same record id).
    const read = (dir: string) => open({ path: join(dir, 'var', 'store', 'store.mdb'), noSubdir: true, maxDbs: 16 });
    const [a, b] = [read(inst.dir), read(other.dir)];
    // Both stores share the passphrase here, but each has its own salt, so the key-encryption keys differ.
    const foreign = b.openDB({ name: 'identities', encoding: 'json' }).get('amd');
    await a.openDB({ name: 'identities', encoding: 'json' }).put('amd', foreign);
    await Promise.all([a.close(), b.close()]);
    const r = await refusesToStart(inst.dir);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /the key for amd in .* does not decrypt/);
    assert.doesNotMatch(r.stderr, new RegExp(PASS));
  });
});

/** `unshare -m`: the gateway in a mount namespace of its own, var/ a tmpfs of `size` holding a copy of var-seed/. */
function inTmpfs(dir: string, size: string): string[] {
  const script = 'mount -t tmpfs -o size=$1,mode=0700 cstp-faults "$0/var" && cp -a "$0/var-seed/." "$0/var/" && shift && exec "$@"';
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, dir, size];
}

describe('disk full while the gateway runs (tmpfs in a private mount namespace)', { timeout: 180_000, skip: ROOT ? false : 'needs root (unshare -m, mount)' }, () => {
  let sink: CrashSink;
  let inst: Instance | undefined;
  let gw: Gateway | undefined;
  let varPath = '';
  let filler = '';
  let seq = 0;
  const killOnExit = (): void => void gw?.child.kill('SIGKILL');

  before(async () => {
    sink = await startCrashSink({ deferOnce: 'X-Fault' });
    // 127.0.0.1 is ours (outbound); a client from 127.0.0.2 sends inbound mail.
    inst = await prepareInstance(
      `[policy]\nlocal_domains = amd\nlocal_networks = 127.0.0.1/32\nmixed_recipients = liberal\n` +
        `[delivery]\nnext_hop = 127.0.0.1:${sink.port}\nconnect_timeout = 5\ngreeting_timeout = 5\n`,
      amdStore,
      { varName: 'var-seed' },
    );
    // A compacted copy of the store has no free pages: its first write at run time must grow the file, so a full
    // disk fails it for certain (LMDB would otherwise reuse free pages of the file and need no new space).
    const seed = join(inst.dir, 'var-seed', 'store');
    const compact = `${seed}.compact`;
    const root = open({ path: join(seed, 'store.mdb'), noSubdir: true, maxDbs: 16 });
    await root.backup(compact, true);
    await root.close();
    rmSync(join(seed, 'store.mdb'));
    writeFileSync(join(seed, 'store.mdb'), readFileSync(compact), { mode: 0o600 });
    rmSync(compact);
    mkdirSync(join(inst.dir, 'var'), { mode: 0o700 });
    gw = await start(inst.dir, inTmpfs(inst.dir, '16m'));
    process.once('exit', killOnExit);
    // The tmpfs as the gateway sees it, reached from outside its namespace.
    varPath = `/proc/${gw.child.pid}/root${inst.dir}/var`;
    filler = join(varPath, 'filler');
  });

  after(async () => {
    process.off('exit', killOnExit);
    await stopAndRemove(gw, inst);
    await sink?.stop();
  });

  function fill(): number {
    const fd = openSync(filler, 'w');
    let written = 0;
    try {
      for (const size of [1 << 20, 1 << 16, 1 << 12, 512]) {
        const block = Buffer.alloc(size, 0x55);
        for (;;) {
          try {
            written += writeSync(fd, block);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
            break;
          }
        }
      }
    } finally {
      closeSync(fd);
    }
    return written;
  }

  const send = (opts: { to: string[]; headers?: string[]; inbound?: boolean; chunks?: Buffer[] }): Promise<SendResult> => {
    const id = `store-fault.${++seq}@faults.test`;
    const chunks = opts.chunks ?? numberedMessage({ id, from: 'juro@amd', to: opts.to, size: 8192, parts: 2, headers: opts.headers });
    return sendMail({ port: inst!.port, from: 'juro@amd', to: opts.to, chunks, localAddress: opts.inbound ? '127.0.0.2' : undefined, timeoutMs: 60_000 });
  };
  const copiesOf = (r: SendResult, chunks?: Buffer[]): number => {
    const id = /Message-ID: (<[^>]+>)/.exec((chunks ?? [])[0]?.toString() ?? '')?.[1];
    return sink.dumps().filter((d) => d.messageId === id).length + (r ? 0 : 0);
  };
  const queueFiles = (): string[] => readdirSync(join(varPath, 'queue'));
  const log = (): string => gw!.stdout() + gw!.stderr();

  it('fills the disk', () => {
    const n = fill();
    assert.ok(n > 8 * 1024 * 1024, `filler of ${n} bytes`);
  });

  it('route memory cannot be written: the split delivery still gets 250, each copy once (was: 451 "nothing was sent" after both went out)', async () => {
    const id = `store-fault.${++seq}@faults.test`;
    const chunks = numberedMessage({ id, from: 'juro@amd', to: ['juro@intel', 'fedor@mulholland'], size: 8192, parts: 2 });
    const r = await send({ to: ['juro@intel', 'fedor@mulholland'], chunks });
    assert.equal(r.code, 250, r.text);
    assert.equal(copiesOf(r, chunks), 2);
    assert.match(log(), /route memory: cannot write to key store .*: No space left on device/i);
  });

  it('a partial failure that cannot be queued: 4xx with the reason (not 250 and lost), no half-written queue files', async () => {
    const r = await send({ to: ['juro@intel', 'fedor@mulholland'], headers: ['X-Fault: defer'] });
    assert.equal(r.stage, 'dot');
    assert.equal(r.code, 451, r.text);
    assert.match(r.text, /could not queue part of the message/);
    assert.deepEqual(queueFiles(), []);
    assert.match(log(), /retry queue: cannot write .*queue.*No space left on device/i);
  });

  it('an untrusted signer\'s certificate cannot be harvested: inbound mail deferred (4xx), nothing delivered', async () => {
    const before = sink.dumps().length;
    const message = Buffer.from(`From: juro@amd\r\nTo: boss@amd\r\nSubject: signed\r\nMessage-ID: <harvest.${++seq}@faults.test>\r\n\r\nSigned by Juro.\r\n`);
    const signed = Buffer.concat([...signMessage(message, creds('juro-amd'))]);
    const r = await send({ to: ['boss@amd'], inbound: true, chunks: [signed] });
    assert.equal(r.stage, 'dot', r.text);
    assert.equal(Math.floor((r.code ?? 0) / 100), 4, r.text);
    assert.equal(sink.dumps().length, before);
    assert.match(log(), /securing failed: cannot write to key store .*No space left on device/i);
  });

  it('the gateway is still running; with space back, the same mail goes through and the queue works again', async () => {
    assert.equal(gw!.child.exitCode, null);
    assert.equal(gw!.child.signalCode, null);
    unlinkSync(filler);
    // The inbound signed message, sent again: delivered, the certificate harvested.
    const message = Buffer.from('From: juro@amd\r\nTo: boss@amd\r\nSubject: signed\r\nMessage-ID: <harvest.again@faults.test>\r\n\r\nSigned by Juro.\r\n');
    const signed = Buffer.concat([...signMessage(message, creds('juro-amd'))]);
    const inbound = await send({ to: ['boss@amd'], inbound: true, chunks: [signed] });
    assert.equal(inbound.code, 250, inbound.text);
    // A partial failure now goes to the queue, which delivers it right away (not at the 30 s tick), also with a
    // damaged state file in the spool: that one is reported and skipped, not a stop for the others.
    writeFileSync(join(varPath, 'queue', '0-damaged.json'), '{"id": "0-damaged", "fr');
    const id = `store-fault.${++seq}@faults.test`;
    const chunks = numberedMessage({ id, from: 'juro@amd', to: ['juro@intel', 'fedor@mulholland'], size: 8192, parts: 2, headers: ['X-Fault: defer'] });
    const r = await send({ to: ['juro@intel', 'fedor@mulholland'], chunks });
    assert.equal(r.code, 250, r.text);
    assert.ok(await waitFor(() => copiesOf(r, chunks) === 2, 15_000), 'the queued copy was not delivered');
    const others = (): string[] => queueFiles().filter((f) => !f.startsWith('0-damaged'));
    assert.ok(await waitFor(() => others().length === 0, 5_000), others().join(' '));
    assert.match(log(), /skipping unreadable queue item .*0-damaged\.json/);
    assert.ok(queueFiles().includes('0-damaged.json'), 'a damaged item is kept for the administrator');
    await sleep(100);
    const store = KeyStore.open({ path: join(varPath, 'store'), passphrase: PASS, readOnly: true });
    try {
      assert.ok(store.untrusted().some((u) => u.fingerprint === creds('juro-amd').cert.fingerprint));
      assert.equal(store.route(`127.0.0.1:${sink.port}`)?.route, 'second-connection');
    } finally {
      await store.close();
    }
  });
});
