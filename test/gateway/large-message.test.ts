/**
 * One 100 MiB message signed and encrypted through the real gateway (Haraka child process, amd's store, Postfix
 * smtp-sink behind it). The gateway must stream it: its peak RSS (VmHWM, reset after warm-up through
 * /proc/<pid>/clear_refs) may grow by at most 64 MiB over its resident size before the message. The warm-up is a
 * small message and an 8 MiB one (streamed too), so the heap has its working size; the growth over the RSS after
 * the small message alone is printed as well (about 50-60 MiB here, against 20-25 MiB after the full warm-up). The message at
 * the sink must decrypt (openssl cms, intel's gateway key) and verify to exactly the content that was sent: both
 * sides are compared by SHA-256 of a stream, so the test process never holds the message either.
 * CSTP_LARGE_MB changes the size (default 100).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SmtpClient } from '../../src/delivery/smtp-client';
import { toPem } from '../../src/pki/issue';
import { startSink, type Sink } from '../delivery/peers';
import { paperCert, paperKey } from '../policy/paper-pki';
import { swaks } from './harness';
import { amdStore, startGateway, stop, type Running } from './paper-gateways';

const MIB = 1024 * 1024;
const SIZE = Number(process.env.CSTP_LARGE_MB ?? 100) * MIB;
const LIMIT_GROWTH = 64 * MIB;

/** kB values of /proc/<pid>/status, in octets. */
function status(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `no ${field} for ${pid}`);
  return Number(m[1]) * 1024;
}

const HEAD = 'Content-Type: application/octet-stream; name="big.bin"\r\nContent-Transfer-Encoding: base64\r\n';
const LINE_OCTETS = 57; // one 76-character base64 line

/**
 * The message, made as it is sent: random octets as base64 lines, about `size` octets in all. `content` is fed
 * what openssl's verify will give back: the content header fields, the empty line and the body.
 */
function* message(size: number, content: ReturnType<typeof createHash>): Generator<Buffer> {
  const outer = 'From: juro@amd\r\nTo: juro@intel\r\nSubject: one large message\r\nMIME-Version: 1.0\r\n';
  const head = Buffer.from(`${outer}${HEAD}\r\n`);
  content.update(`${HEAD}\r\n`);
  yield head;
  const linesPerPiece = 1024;
  let left = size - head.length;
  while (left > 0) {
    const raw = randomBytes(LINE_OCTETS * linesPerPiece).toString('base64');
    const lines: string[] = [];
    for (let i = 0; i < raw.length && left > 0; i += 76) {
      const line = `${raw.slice(i, i + 76)}\r\n`;
      lines.push(line);
      left -= line.length;
    }
    const piece = Buffer.from(lines.join(''));
    content.update(piece);
    yield piece;
  }
}

/** SHA-256 of a shell pipeline's stdout, and its stderr. */
function hashOf(command: string): Promise<{ hash: string; octets: number; code: number | null; stderr: string }> {
  return new Promise((done) => {
    const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    let octets = 0;
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      hash.update(d);
      octets += d.length;
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('close', (code) => done({ hash: hash.digest('hex'), octets, code, stderr }));
  });
}

describe('a 100 MiB message through the gateway', () => {
  /** One message of `size` octets from juro@amd to juro@intel; `content` gets what openssl's verify gives back. */
  async function send(size: number, content: ReturnType<typeof createHash>) {
    const client = new SmtpClient({ host: '127.0.0.1', port: gateway!.port, heloName: 'mail.amd', tls: { policy: 'off' } });
    assert.equal((await client.open()).code, 250);
    assert.equal((await client.mail('juro@amd', { size })).code, 250);
    assert.equal((await client.rcpt('juro@intel')).code, 250);
    const reply = await client.data(message(size, content));
    await client.quit();
    return reply;
  }

  let sink: Sink;
  let gateway: Running | undefined;
  const files = mkdtempSync(join(tmpdir(), 'cstp-large-'));

  before(async () => {
    sink = await startSink();
    gateway = await startGateway(`[policy]\nlocal_domains = amd\n[delivery]\nnext_hop = 127.0.0.1:${sink.port}\n`, amdStore);
    writeFileSync(join(files, 'intel.crt'), toPem('CERTIFICATE', paperCert('gw-intel').der));
    writeFileSync(join(files, 'intel.key'), paperKey('gw-intel').export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  });

  after(async () => {
    await stop(gateway);
    await sink?.stop();
    rmSync(files, { recursive: true, force: true });
  });

  it('is signed and encrypted with at most 64 MiB of peak RSS growth, and decrypts to exactly what was sent', async () => {
    const pid = gateway!.gw.child.pid!;
    // Warm-up: a small message and an 8 MiB one through the same paths (plugins, store, upstream connections, the
    // streaming code compiled, the heap grown to its working size): what is measured is what the size costs.
    const warm = await swaks(gateway!.port, ['--from', 'juro@amd', '--to', 'juro@intel', '--body', 'warm-up']);
    assert.equal(warm.code, 0, warm.output);
    await sink.next(1);
    const small = status(pid, 'VmRSS'); // reported too: growth over a gateway that has seen small mail only
    assert.equal((await send(8 * MIB, createHash('sha256'))).code, 250);
    await sink.next(1);
    const warmed = new Set(readdirSync(sink.dir));
    await new Promise((r) => setTimeout(r, 200));
    writeFileSync(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM to the current RSS
    const baseline = status(pid, 'VmRSS');

    const content = createHash('sha256');
    const started = Date.now();
    const reply = await send(SIZE, content);
    const seconds = (Date.now() - started) / 1000;
    assert.equal(reply.code, 250, reply.lines.join(' '));
    const peak = status(pid, 'VmHWM');
    const growth = peak - baseline;
    const mbps = SIZE / MIB / seconds;
    console.log(`large message: ${SIZE / MIB} MiB in ${seconds.toFixed(1)} s (${mbps.toFixed(1)} MiB/s, DATA to 250), ` +
      `gateway RSS ${(small / MIB).toFixed(0)} MiB after a small message, ${(baseline / MIB).toFixed(0)} MiB after 8 MiB, ` +
      `peak ${(peak / MIB).toFixed(0)} MiB: growth ${(growth / MIB).toFixed(1)} MiB (${((peak - small) / MIB).toFixed(1)} MiB over the small-message RSS)`);
    assert.ok(growth <= LIMIT_GROWTH, `peak RSS grew by ${(growth / MIB).toFixed(1)} MiB, more than 64 MiB`);

    const dumps = readdirSync(sink.dir).filter((f) => !warmed.has(f)).map((f) => join(sink.dir, f));
    assert.equal(dumps.length, 1, `expected one message at the sink, found ${dumps.length}`);
    const [dump] = dumps;
    assert.ok(statSync(dump).size > SIZE, 'the sink holds the whole encrypted message');
    const head = readFileSync(dump).subarray(0, 4096).toString('latin1');
    assert.match(head, /Content-Type: application\/pkcs7-mime; smime-type=(auth)?enveloped-data/);
    assert.match(head, /Subject: one large message/);
    // Decrypt with intel's key, then check the signature (amd's self-signed gateway certificate as the anchor)
    // and write the signed content: the content header fields and the body exactly as sent.
    const amdCert = join(files, 'amd.crt');
    writeFileSync(amdCert, toPem('CERTIFICATE', paperCert('gw-amd').der));
    const opened = await hashOf(
      `openssl cms -decrypt -in '${dump}' -recip '${files}/intel.crt' -inkey '${files}/intel.key' | ` +
        `openssl cms -verify -CAfile '${amdCert}' -purpose any`,
    );
    if (process.env.CSTP_KEEP_DUMP) require('node:fs').copyFileSync(dump, process.env.CSTP_KEEP_DUMP);
    assert.equal(opened.code, 0, opened.stderr);
    assert.match(opened.stderr, /Verification successful/);
    assert.ok(opened.octets > SIZE * 0.99, `openssl gave back ${opened.octets} octets`);
    assert.equal(opened.hash, content.digest('hex'), 'decrypted and verified content differs from what was sent');
    assert.ok(!existsSync(join(gateway!.dir, 'var', 'spool', 'haraka')) || readdirSync(join(gateway!.dir, 'var', 'spool', 'haraka')).length === 0);
    assert.deepEqual(readdirSync(join(gateway!.dir, 'var', 'spool')).filter((f) => f !== 'haraka'), [], 'spool files removed');
  });
});
