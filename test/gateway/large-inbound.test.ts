/**
 * Large signed and encrypted messages INBOUND to the real gateway (Haraka child process, intel's store with its
 * gateway key). Such a message cannot be streamed: it is decrypted and verified in memory, at several times its
 * size, so the gateway holds one such message at a time (largeInMemory in the cstp-gateway plugin) and the others
 * wait their turn.
 *
 * - Several sent at once, Postfix smtp-sink behind the gateway: all arrive decrypted and verified with exactly the
 *   content that was sent, and the gateway's peak RSS (VmHWM, reset through /proc/<pid>/clear_refs after a small
 *   warm-up message) grows by at most LIMIT_GROWTH. CSTP_LARGE_INBOUND_MB changes the content size of each
 *   message (default 24).
 * - Behind a destination that holds its reply to the first message (so that one keeps its turn): a client that
 *   leaves while its message waits gives up its place, nothing of it goes out, and the next one is delivered.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SmtpClient } from '../../src/delivery/smtp-client';
import type { KeyStore } from '../../src/store/key-store';
import { paperCert } from '../policy/paper-pki';
import { startSink, type Sink } from '../delivery/peers';
import { jsonLines, swaks } from './harness';
import { creds, paperPem, startGateway, stop, type Running } from './paper-gateways';

const MIB = 1024 * 1024;
/** What the gateway logs when a large message has to wait for its turn in memory. */
const WAITS = 'a large message waits for its turn in memory';
const CONTENT = Number(process.env.CSTP_LARGE_INBOUND_MB ?? 24) * MIB;
/**
 * Four, not three: without the gate the process holds the secured bytes of every message whose delivery is under
 * way (securing itself is synchronous, so not of all of them at once); with three that peak was too close to the
 * gated one for a limit between them to be safe.
 */
const MESSAGES = 4;
/**
 * Measured on this 2-core machine, 4 x 24 MiB of content (33 MiB encrypted messages): without the gate the peak
 * grew by 478-501 MiB, with it by 238-272 MiB (3 messages: 321-346 MiB without, 213-251 MiB with). One such
 * message alone grows it by about 200 MiB, most of it the heap growing to its working size for a message this large.
 */
const LIMIT_GROWTH = 360 * MIB;

/** kB values of /proc/<pid>/status, in octets. */
function status(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `no ${field} for ${pid}`);
  return Number(m[1]) * 1024;
}

/** Random octets as 76-character base64 lines (CRLF), about `size` octets. */
function base64Body(size: number): Buffer {
  const raw = randomBytes(Math.ceil((size * 57) / 78)).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < raw.length; i += 76) lines.push(raw.slice(i, i + 76));
  return Buffer.from(`${lines.join('\r\n')}\r\n`);
}

/** SHA-256 of a body with its line ends as LF and none at the end (smtp-sink writes LF and an empty last line). */
const bodyHash = (body: Buffer | string): string =>
  createHash('sha256').update(body.toString('latin1').replace(/\r\n/g, '\n').replace(/\n+$/, '')).digest('hex');

interface Input {
  file: string;
  subject: string;
  /** bodyHash of the content's body. */
  hash: string;
}

const files = mkdtempSync(join(tmpdir(), 'cstp-large-inbound-'));

/**
 * A message from juro@amd to juro@intel with `size` octets of content, signed by amd's gateway and encrypted for
 * intel's with openssl (the sender's side is not cstp here).
 */
function encryptedMessage(subject: string, size: number): Input {
  const amd = paperPem(files, 'gw-amd');
  const intel = paperPem(files, 'gw-intel');
  const body = base64Body(size);
  const name = subject.replace(/\W+/g, '-');
  const entity = join(files, `${name}.content`);
  writeFileSync(entity, Buffer.concat([Buffer.from('Content-Type: application/octet-stream; name="big.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'), body]));
  const file = join(files, `${name}.eml`);
  execFileSync('sh', ['-c',
    `openssl cms -sign -binary -crlfeol -md sha256 -in '${entity}' -signer '${amd.cert}' -inkey '${amd.key}' | ` +
    `openssl cms -encrypt -binary -crlfeol -aes-256-cbc -from juro@amd -to juro@intel -subject '${subject}' -out '${file}' '${intel.cert}'`,
  ]);
  // openssl ends the base64 lines with a bare LF whatever -crlfeol says; SMTP wants CRLF.
  writeFileSync(file, readFileSync(file, 'latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
  return { file, subject, hash: bodyHash(body) };
}

/** Intel's gateway: loopback clients are not intel's mail servers here, so everything reaching it is inbound. */
function intelGateway(destinationPort: number): Promise<Running> {
  return startGateway(`[policy]\nlocal_networks = 10.99.0.0/16\nlocal_domains = intel\n[delivery]\nnext_hop = 127.0.0.1:${destinationPort}\n`, (s: KeyStore) => {
    s.putGatewayIdentity('intel', creds('gw-intel'));
    s.addCertificate(paperCert('gw-amd'), 'gateway', ['amd']);
  });
}

/** A client that has sent MAIL and RCPT for juro@intel. */
async function openTransaction(gateway: Running): Promise<SmtpClient> {
  const client = new SmtpClient({ host: '127.0.0.1', port: gateway.port, heloName: 'mail.amd', tls: { policy: 'off' } });
  assert.equal((await client.open()).code, 250);
  assert.equal((await client.mail('juro@amd')).code, 250);
  assert.equal((await client.rcpt('juro@intel')).code, 250);
  return client;
}

async function send(gateway: Running, input: Input) {
  const client = await openTransaction(gateway);
  const reply = await client.data([readFileSync(input.file)]);
  await client.quit();
  return reply;
}

/**
 * A destination that takes every message and notes its Subject, but answers the final dot of the first one only
 * once `releaseFirst` is called: until then that message holds the gateway's turn.
 */
async function holdingDestination() {
  const subjects: string[] = [];
  let releaseFirst!: () => void;
  const released = new Promise<void>((r) => (releaseFirst = r));
  let firstArrived!: () => void;
  const first = new Promise<void>((r) => (firstArrived = r));
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.setEncoding('latin1');
    socket.on('error', () => undefined);
    socket.write('220 holding ESMTP\r\n');
    let pending = '';
    let inData = false;
    let scanned = 0;
    let busy = false;
    const serve = async (): Promise<void> => {
      for (;;) {
        if (inData) {
          const end = pending.indexOf('\r\n.\r\n', Math.max(0, scanned - 4));
          if (end < 0) return void (scanned = pending.length);
          const message = pending.slice(0, end + 2);
          pending = pending.slice(end + 5);
          inData = false;
          subjects.push(/^Subject: (.*)\r$/m.exec(message)?.[1] ?? '');
          if (subjects.length === 1) {
            firstArrived();
            await released;
          }
          socket.write('250 2.0.0 taken\r\n');
          continue;
        }
        const eol = pending.indexOf('\r\n');
        if (eol < 0) return;
        const command = pending.slice(0, eol).toUpperCase();
        pending = pending.slice(eol + 2);
        if (command === 'DATA') {
          inData = true;
          scanned = 0;
          socket.write('354 go ahead\r\n');
        } else if (command === 'QUIT') {
          socket.end('221 2.0.0 bye\r\n');
        } else socket.write('250 ok\r\n');
      }
    };
    socket.on('data', (chunk: string) => {
      pending += chunk;
      if (busy) return;
      busy = true;
      void serve().finally(() => (busy = false));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    subjects,
    first,
    releaseFirst,
    close: () => new Promise<void>((r) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => r());
    }),
  };
}

async function waitFor(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    assert.ok(Date.now() < deadline, `${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('large inbound S/MIME messages, several at once', () => {
  let sink: Sink;
  let destination: Awaited<ReturnType<typeof holdingDestination>>;
  let gateway: Running | undefined;
  let held: Running | undefined;
  const inputs: Input[] = [];
  const small: Input[] = [];

  before(async () => {
    [sink, destination] = await Promise.all([startSink(), holdingDestination()]);
    [gateway, held] = await Promise.all([intelGateway(sink.port), intelGateway(destination.port)]);
    for (let i = 1; i <= MESSAGES; i++) inputs.push(encryptedMessage(`large inbound ${i}`, CONTENT));
    // Large enough to be spooled (over STREAM_ABOVE, 4 MiB), small enough to be quick.
    for (const name of ['holds the turn', 'leaves', 'is next']) small.push(encryptedMessage(name, 5 * MIB));
  });

  after(async () => {
    await Promise.all([stop(gateway), stop(held)]);
    await Promise.all([sink?.stop(), destination?.close()]);
    rmSync(files, { recursive: true, force: true });
  });

  it(`are all decrypted and verified, one at a time in memory: the gateway's peak RSS grows by at most ${LIMIT_GROWTH / MIB} MiB`, async () => {
    const pid = gateway!.gw.child.pid!;
    const warm = await swaks(gateway!.port, ['--from', 'juro@amd', '--to', 'juro@intel', '--body', 'warm-up']);
    assert.equal(warm.code, 0, warm.output);
    await sink.next(1);
    await new Promise((r) => setTimeout(r, 200));
    writeFileSync(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM to the current RSS
    const baseline = status(pid, 'VmRSS');

    const started = Date.now();
    const replies = await Promise.all(inputs.map((m) => send(gateway!, m)));
    const seconds = (Date.now() - started) / 1000;
    const peak = status(pid, 'VmHWM');
    const growth = peak - baseline;
    console.log(`large inbound: ${MESSAGES} x ${CONTENT / MIB} MiB of content at once in ${seconds.toFixed(1)} s, gateway RSS ` +
      `${(baseline / MIB).toFixed(0)} MiB before, peak ${(peak / MIB).toFixed(0)} MiB: growth ${(growth / MIB).toFixed(1)} MiB`);
    for (const reply of replies) assert.equal(reply.code, 250, reply.lines.join(' '));

    const dumps = await sink.next(MESSAGES);
    assert.equal(dumps.length, MESSAGES, `expected ${MESSAGES} messages at the sink, found ${dumps.length}`);
    for (const { subject, hash } of inputs) {
      const dump = dumps.find((d) => new RegExp(`^Subject: ${subject}\r?$`, 'm').test(d));
      assert.ok(dump, `no "${subject}" at the sink`);
      const end = /\r?\n\r?\n/.exec(dump)!;
      const head = dump.slice(0, end.index);
      assert.doesNotMatch(head, /application\/pkcs7-mime/);
      assert.match(head, /X-Cstp-Security: layer=1; type=encrypted; status=decrypted/);
      assert.match(head, /X-Cstp-Security: layer=2; type=signed; verdict=good-trusted; signer="cstpbox@amd"/);
      assert.match(head, /Content-Type: application\/octet-stream; name="big.bin"/);
      assert.equal(bodyHash(dump.slice(end.index + end[0].length)), hash, `"${subject}": delivered content differs from what was sent`);
    }
    assert.ok(growth <= LIMIT_GROWTH, `peak RSS grew by ${(growth / MIB).toFixed(1)} MiB, more than ${LIMIT_GROWTH / MIB} MiB`);
    assert.deepEqual(readdirSync(join(gateway!.dir, 'var', 'spool')).filter((f) => f !== 'haraka'), [], 'spool files removed');
  });

  it('a client that leaves while its message waits for its turn gives up its place; nothing of it goes out', async () => {
    const [holder, leaver, next] = small;
    const holding = send(held!, holder);
    await destination.first; // the holder has its turn until its destination answers

    // The leaver sends its whole message, waits for its turn, and goes away before it comes.
    const leaving = await openTransaction(held!);
    void leaving.data([readFileSync(leaver.file)]);
    const spooled = (): string[] => readdirSync(join(held!.dir, 'var', 'spool')).filter((f) => f !== 'haraka');
    const inLine = (n: number) => (): boolean => held!.gw.stdout().split(WAITS).length > n;
    await waitFor(inLine(1), 10_000, "the leaver's message in line");
    leaving.close();
    await waitFor(
      () => held!.gw.stdout().includes('the client left while its large message waited for its turn'), 10_000, 'the leaver given up',
    );

    // The next one waits behind the holder, where the leaver was.
    const nextReply = send(held!, next);
    await waitFor(inLine(2), 10_000, 'the next message in line');
    destination.releaseFirst();
    assert.equal((await holding).code, 250);
    assert.equal((await nextReply).code, 250);
    assert.deepEqual(destination.subjects, [holder.subject, next.subject], 'what reached the destination, in order');
    const given = jsonLines(held!.gw.stdout()).find((l) =>
      l.message === 'decision' && (l.deliveries as { action: string }[] | undefined)?.[0]?.action === 'not-sent');
    assert.ok(given, 'a decision line for the message given up');
    assert.equal((given.deliveries as { reply: { code: number } }[])[0].reply.code, 451);
    await waitFor(() => spooled().length === 0, 5_000, 'spool files removed');
  });
});
