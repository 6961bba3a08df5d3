/**
 * 5,000 SMTP sessions open at once against the real gateway (Haraka child process, Postfix smtp-sink behind
 * it): every session is opened and left idle after EHLO, then all of them send at the same moment. None may be
 * refused, the gateway's peak RSS stays under 1 GiB, and every message reaches the sink. Each sending session
 * holds two sockets in the gateway (the client's and the upstream one opened at MAIL), so the gateway needs
 * about 2 x 5,000 descriptors: the test raises its own, smtp-sink's and the gateway's limit to 65,536 with
 * prlimit (root, as in CI; docs/GATEWAY.md "Large messages and many sessions" has the production settings).
 * `npm test` runs 2,000 sessions (still twice past a default limit of 1,024 descriptors); the full 5,000 take
 * 60-140 s on a busy 2-core machine and run in `npm run soak` (CSTP_SOAK=1). CSTP_SESSIONS sets any number;
 * CSTP_TEST_NODES=2 runs the gateway as a cluster (RSS then summed over its processes, descriptors per process).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { SmtpClient } from '../../src/delivery/smtp-client';
import { startSink, type Sink } from '../delivery/peers';
import { amdStore, startGateway, stop, type Running } from './paper-gateways';

const SESSIONS = Number(process.env.CSTP_SESSIONS ?? (process.env.CSTP_SOAK === '1' ? 5000 : 2000));
const NOFILE = 65536;
const MIB = 1024 * 1024;
/** Sessions connecting at the same time while they are opened (Haraka listens with Node's backlog of 511). */
const OPENING = 250;

/** The process's descriptor limit raised to NOFILE, or as far as its hard limit when it may not go beyond (a container). */
function raiseFdLimit(pid: number): number {
  try {
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${NOFILE}:${NOFILE}`], { stdio: 'pipe' });
  } catch {
    const hard = /^Max open files\s+\d+\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1];
    if (hard) execFileSync('prlimit', ['--pid', String(pid), `--nofile=${hard}:${hard}`], { stdio: 'pipe' });
  }
  return Number(/^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1]);
}

/** The gateway's processes: Haraka and, in a cluster, its workers. */
function processes(pid: number): number[] {
  return [pid, ...readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)];
}

/** A memory figure summed over the gateway's processes. */
function status(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  return processes(pid).reduce((sum, p) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${p}/status`, 'utf8'));
    assert.ok(m, `no ${field} for ${p}`);
    return sum + Number(m[1]) * 1024;
  }, 0);
}

/** Open descriptors of the gateway process that has most (the limit is per process). */
const openFds = (pid: number): number => Math.max(...processes(pid).map((p) => readdirSync(`/proc/${p}/fd`).length));

function messageFor(i: number, to: string): Buffer {
  return Buffer.from(
    `From: juro@amd\r\nTo: ${to}\r\nSubject: session ${i}\r\nMessage-ID: <session-${i}@amd>\r\n\r\n` +
      `Message ${i} of ${SESSIONS}, sent while ${SESSIONS} sessions were open.\r\n`.repeat(10),
  );
}

describe(`${SESSIONS} SMTP sessions at once`, () => {
  let sink: Sink;
  let gateway: Running | undefined;
  const clients: SmtpClient[] = [];

  before(async () => {
    raiseFdLimit(process.pid); // our own client sockets; smtp-sink inherits the limit
    sink = await startSink(['-m', String(SESSIONS + 100)], 4096);
    // Liberal: recipients without a certificate get the message unaltered over the same connection; every tenth
    // message goes to intel and is signed and encrypted, so the crypto path runs under the same load.
    gateway = await startGateway(
      `[policy]\nlocal_domains = amd\nmixed_recipients = liberal\n[delivery]\nnext_hop = 127.0.0.1:${sink.port}\n`, amdStore);
    const limit = raiseFdLimit(gateway.gw.child.pid!);
    // Two sockets per session, plus the store, logs and listeners.
    assert.ok(limit >= 2 * SESSIONS + 100, `the gateway may open only ${limit} descriptors, ${2 * SESSIONS + 100} are needed`);
  });

  after(async () => {
    for (const c of clients) c.close();
    await stop(gateway);
    await sink?.stop();
  });

  it('keeps every session, stays under 1 GiB and delivers every message', async () => {
    const pid = gateway!.gw.child.pid!;
    const baseline = status(pid, 'VmRSS');
    const started = Date.now();
    const refused: string[] = [];
    for (let i = 0; i < SESSIONS; i += OPENING) {
      const wave = Array.from({ length: Math.min(OPENING, SESSIONS - i) }, () =>
        new SmtpClient({ host: '127.0.0.1', port: gateway!.port, heloName: 'mail.amd', tls: { policy: 'off' }, timeouts: { connect: 60_000 } }));
      const replies = await Promise.all(wave.map((c) => c.open()));
      replies.forEach((r) => r.code !== 250 && refused.push(`${r.code} ${r.lines.join(' ')}`));
      clients.push(...wave);
    }
    const opened = Date.now();
    assert.deepEqual(refused.slice(0, 5), [], `${refused.length} of ${SESSIONS} sessions refused`);
    assert.equal(clients.filter((c) => c.usable).length, SESSIONS);
    const idleRss = status(pid, 'VmRSS');
    const idleFds = openFds(pid);

    let peakFds = idleFds;
    const sampler = setInterval(() => {
      try {
        peakFds = Math.max(peakFds, openFds(pid));
      } catch {
        // the directory listing raced a closing descriptor
      }
    }, 200);
    const results = await Promise.all(clients.map(async (c, i) => {
      const to = i % 10 === 0 ? 'juro@intel' : 'fedor@mulholland';
      const steps = [await c.mail('juro@amd'), await c.rcpt(to), await c.data([messageFor(i, to)])];
      void c.quit();
      return steps.find((r) => r.code !== 250) ?? steps[2];
    }));
    clearInterval(sampler);
    const sent = Date.now();
    const failed = results.filter((r) => r.code !== 250);
    assert.deepEqual(failed.slice(0, 5).map((r) => `${r.code} ${r.lines.join(' ')}`), [], `${failed.length} of ${SESSIONS} not accepted`);

    let delivered = 0;
    for (let i = 0; i < 300 && delivered < SESSIONS; i++) {
      delivered = readdirSync(sink.dir).length;
      if (delivered < SESSIONS) await new Promise((r) => setTimeout(r, 100));
    }
    const peak = status(pid, 'VmHWM');
    console.log(`${SESSIONS} sessions: opened in ${((opened - started) / 1000).toFixed(1)} s, all sent in ` +
      `${((sent - opened) / 1000).toFixed(1)} s; gateway RSS ${(baseline / MIB).toFixed(0)} MiB at start, ` +
      `${(idleRss / MIB).toFixed(0)} MiB with all sessions idle, peak ${(peak / MIB).toFixed(0)} MiB; ` +
      `descriptors ${idleFds} idle, peak ${peakFds}; ${delivered} messages at the sink`);
    assert.equal(delivered, SESSIONS, 'every message at the sink');
    assert.ok(peak <= 1024 * MIB, `peak RSS ${(peak / MIB).toFixed(0)} MiB is over 1 GiB`);
  });
});
