/**
 * Crash consistency of the synchronous gateway: under continuous load from several concurrent SMTP clients, the
 * gateway is killed with SIGKILL at chosen SMTP stages (connect/EHLO, MAIL, RCPT, DATA streaming, after the
 * final dot before the reply, after the reply while the retry queue works) and at random moments, and
 * restarted each time. The clients behave like MTAs: a message not answered with 250 is sent again. At the end
 * the destination's recorded messages are reconciled against what the clients saw acknowledged:
 *
 *   - losses: a message (and, with split delivery, each recipient's copy) acknowledged with 250 and not at the
 *     destination. Must be 0. This includes resends the gateway answered 250 "already delivered" from an
 *     in-doubt marker (docs/GATEWAY.md): such an answer must never stand for a message that is not there.
 *   - duplicates: copies at the destination beyond the first. Reported (target <= 0.1%, not met: see below);
 *     each must be explained by a kill (an attempt cut after its final dot, or a retry-queue send cut before it
 *     was recorded).
 *
 * The in-doubt marker turns a resend into 250 "already delivered" when the kill came after the gateway had
 * processed the destination's 250 (the count of such answers is printed). Most duplicates here come from the
 * step before: the destination has accepted and sent its 250, the gateway has not read it yet when it is killed
 * (seen: first copies written by smtp-sink 3-9 ms before the kill, the reply still unread on this loaded 2-core
 * machine). No marker can cover that without risking a loss, so the rate is reported, not asserted.
 *
 * 1. sign+encrypt to one recipient, Postfix smtp-sink -d as the destination (a real MTA writing each message);
 *    once as one process (21 kills) and once as a cluster, as shipped (10 kills of the master).
 * 2. liberal split delivery (encrypted copy + plain copy over a second connection) to a recording sink process
 *    that defers every plain copy once: each message leaves a part in the on-disk retry queue, and the kills
 *    land while the queue holds and sends them; after each restart the queue delivers them (the retry resend,
 *    end to end).
 *
 * CSTP_SOAK=1 (npm run soak) runs many more kills.
 */
import { after, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Gateway } from '../gateway/harness';
import { amdStore } from '../gateway/paper-gateways';
import { startSink, type Sink } from '../delivery/peers';
import { numberedMessage, sendMail, type Stage } from './crash-smtp';
import { readDumps, startCrashSink, type CrashSink, type Recorded } from './crash-sink';
import { kill9, prepareInstance, sleep, start, stopAndRemove, waitFor, type Instance } from './faults-gateway';

const SOAK = process.env.CSTP_SOAK === '1';
const CLIENTS = 4;
/** CSTP_RELIABILITY_VERBOSE=1: a line per kill on stderr, as it happens. */
const progress = (line: string): void => void (process.env.CSTP_RELIABILITY_VERBOSE && process.stderr.write(`${new Date().toISOString()} ${line}\n`));

type Target = Stage | 'random';

interface LoadReport {
  acked: Set<string>;
  attempts: number;
  /** Message-IDs with an attempt cut after the final dot (no reply): the only way a client can cause a duplicate. */
  cutAfterDot: Set<string>;
  /** Resends answered 250 "already delivered" (the gateway's in-doubt marker): duplicates avoided. */
  alreadyDelivered: number;
  failures: Map<string, number>;
}

interface KillReport {
  target: Target;
  hit: boolean;
  queued: number;
}

/**
 * Runs the clients and the killer; returns what the clients saw and where the kills landed. `onKilled` runs
 * while the gateway is down (e.g. to count the queue).
 */
async function runUnderKills(opts: {
  inst: Instance;
  gw: Gateway;
  kills: number;
  targets: Target[];
  to: string[];
  headers?: string[];
  onKilled?: () => number;
  t: TestContext;
}): Promise<{ report: LoadReport; kills: KillReport[]; gw: Gateway; ms: number }> {
  const started = Date.now();
  let gw = opts.gw;
  let stopping = false;
  let aborted = false;
  let armed: { stage: Stage; fire: () => void } | undefined;
  const report: LoadReport = { acked: new Set(), attempts: 0, cutAfterDot: new Set(), alreadyDelivered: 0, failures: new Map() };
  const onStage = (s: Stage): void => {
    if (armed && armed.stage === s) {
      const { fire } = armed;
      armed = undefined;
      fire();
    }
  };

  const client = async (k: number): Promise<void> => {
    for (let n = 0; !stopping; n++) {
      const id = `${k}.${n}.${started}@crash.test`;
      const chunks = numberedMessage({ id, from: 'juro@amd', to: opts.to, size: 4096, parts: 4, headers: opts.headers });
      for (let attempt = 0; !aborted; attempt++) {
        assert.ok(attempt < 500, `message ${id} not accepted after 500 attempts`);
        report.attempts++;
        const r = await sendMail({ port: opts.inst.port, from: 'juro@amd', to: opts.to, chunks, chunkDelayMs: 3, onStage, timeoutMs: 60_000 });
        if (r.stage === 'dot' && r.code === 250) {
          report.acked.add(id);
          if (/already delivered/.test(r.text)) report.alreadyDelivered++;
          break;
        }
        const why = r.broken ? `cut at ${r.stage}` : `${r.code} at ${r.stage} (${r.text.split('\n')[0].slice(4, 70)})`;
        report.failures.set(why, (report.failures.get(why) ?? 0) + 1);
        if (r.stage === 'dot' && r.broken) report.cutAfterDot.add(id);
        await sleep(r.broken ? 100 : 200);
      }
    }
  };

  const killer = async (): Promise<KillReport[]> => {
    const kills: KillReport[] = [];
    for (let i = 0; i < opts.kills; i++) {
      // Let the load run (and the queue work) between kills.
      await sleep(250 + Math.random() * 500);
      const target = opts.targets[i % opts.targets.length];
      const child = gw.child;
      const fire = (): void => {
        child.kill('SIGKILL');
      };
      let hit = true;
      if (target === 'random') {
        await sleep(Math.random() * 200);
        fire();
      } else {
        // At the stage, after a random few ms: inside the body upload, inside signing/encryption and the
        // upstream round trip after the dot, inside the queue's send after a 250.
        const jitter = target === 'body' ? 8 : target === 'dot' ? 12 : target === 'done' ? 20 : 0;
        hit = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => {
            armed = undefined;
            fire();
            resolve(false);
          }, 10_000);
          armed = {
            stage: target,
            fire: () => {
              clearTimeout(timer);
              if (jitter) setTimeout(fire, Math.random() * jitter);
              else fire();
              resolve(true);
            },
          };
        });
      }
      await kill9(gw);
      const queued = opts.onKilled?.() ?? 0;
      kills.push({ target, hit, queued });
      progress(`kill ${i + 1} at ${target}${hit ? '' : ' (not hit)'}: ${report.acked.size} acked, ${queued} queued`);
      gw = await start(opts.inst.dir);
    }
    return kills;
  };

  const clients = Array.from({ length: CLIENTS }, (_, k) => client(k));
  let kills: KillReport[];
  try {
    kills = await killer();
  } catch (err) {
    // A restart failed: stop the clients too, so nothing runs on after the test.
    aborted = true;
    stopping = true;
    await Promise.allSettled(clients);
    throw err;
  }
  // The last messages go through a gateway that stays up.
  await sleep(500);
  stopping = true;
  await Promise.all(clients);
  return { report, kills, gw, ms: Date.now() - started };
}

interface Reconciled {
  losses: string[];
  duplicates: number;
  duplicated: string[];
  copies: number;
}

/** Acknowledged ids against the destination's copies, per (Message-ID, recipient). */
function reconcile(acked: Set<string>, dumps: Recorded[], recipients: string[]): Reconciled {
  const copies = new Map<string, number>();
  for (const d of dumps) {
    for (const r of d.recipients) copies.set(`${d.messageId} ${r}`, (copies.get(`${d.messageId} ${r}`) ?? 0) + 1);
  }
  const losses: string[] = [];
  for (const id of acked) for (const r of recipients) if (!copies.has(`<${id}> ${r}`)) losses.push(`<${id}> ${r}`);
  const duplicated = [...copies].filter(([, n]) => n > 1).map(([k]) => k);
  const duplicates = [...copies.values()].reduce((sum, n) => sum + n - 1, 0);
  return { losses, duplicates, duplicated, copies: [...copies.values()].reduce((a, b) => a + b, 0) };
}

function summary(t: TestContext, name: string, run: { report: LoadReport; kills: KillReport[]; ms: number }, rec: Reconciled): void {
  const byTarget = new Map<string, string>();
  for (const k of run.kills) byTarget.set(k.target, `${(byTarget.get(k.target) ?? '')}${k.hit ? '+' : '-'}`);
  const pct = (100 * rec.duplicates) / Math.max(1, rec.copies);
  const lines = [
    `${name}: ${run.kills.length} kills (${[...byTarget].map(([s, h]) => `${s} ${h.length}${h.includes('-') ? ` (${h.split('-').length - 1} unhit)` : ''}`).join(', ')})`,
    `${name}: ${run.report.acked.size} messages acknowledged with 250 by ${CLIENTS} clients in ${run.report.attempts} attempts, ${(run.ms / 1000).toFixed(1)} s`,
    `${name}: failed attempts: ${[...run.report.failures].map(([w, n]) => `${w} x${n}`).join(', ') || 'none'}`,
    `${name}: resends answered "already delivered" (in-doubt marker): ${run.report.alreadyDelivered}`,
    `${name}: destination holds ${rec.copies} copies; losses ${rec.losses.length}; duplicates ${rec.duplicates} (${pct.toFixed(3)}%)` +
      `${rec.duplicated.length ? `: ${rec.duplicated.slice(0, 5).join(', ')}` : ''}`,
  ];
  for (const l of lines) t.diagnostic(l);
  process.stdout.write(lines.map((l) => `# crash: ${l}\n`).join(''));
}

/**
 * Scenario 1: sign+encrypt to smtp-sink under `kills` kills; every 250 must be at the destination, encrypted, and
 * every duplicate explained by an attempt cut after its dot. `nodes` > 0 runs the gateway as a cluster (the kill
 * then hits the master, whose workers go with it).
 */
async function sinkScenario(t: TestContext, name: string, kills: number, nodes: number, started: Started): Promise<void> {
  const sink = await startSink();
  started.sinks.push(sink);
  const inst = await prepareInstance(
    `[policy]\nlocal_domains = amd\nrequire_encryption = intel\n[delivery]\nnext_hop = 127.0.0.1:${sink.port}\n` +
      'connect_timeout = 5\ngreeting_timeout = 10\ncommand_timeout = 10\ndata_block_timeout = 10\nfinal_dot_timeout = 10\n',
    amdStore,
  );
  const gateway: Running = { inst };
  started.gateways.push(gateway);
  if (nodes > 0) {
    const smtpIni = join(inst.dir, 'config', 'smtp.ini');
    writeFileSync(smtpIni, readFileSync(smtpIni, 'utf8').replace(/^nodes=.*$/m, `nodes=${nodes}`));
  }
  gateway.gw = await start(inst.dir);
  const targets: Target[] = ['connect', 'ehlo', 'mail', 'rcpt', 'body', 'dot', 'random'];
  const run = await runUnderKills({ inst, gw: gateway.gw, kills, targets, to: ['juro@intel'], t });
  gateway.gw = run.gw;
  const dir = sink.dir;
  // smtp-sink finishes its dump file around its 250: wait until the count is stable.
  let last = -1;
  await waitFor(() => {
    const n = readdirSync(dir).length;
    const stable = n === last;
    last = n;
    return stable;
  }, 10_000, 300);
  const dumps = readDumps(dir);
  const rec = reconcile(run.report.acked, dumps, ['juro@intel']);
  summary(t, name, run, rec);
  assert.ok(run.kills.length >= kills);
  assert.ok(run.report.acked.size >= 5 * kills, `only ${run.report.acked.size} messages went through`);
  assert.deepEqual(rec.losses, [], 'acknowledged messages missing at the destination');
  // Policy said encrypt: nothing went out in plaintext, not even around a kill.
  assert.deepEqual(dumps.filter((d) => !d.encrypted || /line of /.test(d.text)).map((d) => d.file), []);
  // A duplicate needs a copy the destination accepted while its client got no 250: an attempt cut after its dot.
  const unexplained = rec.duplicated.map((k) => k.split(' ')[0].slice(1, -1)).filter((id) => !run.report.cutAfterDot.has(id));
  assert.deepEqual(unexplained, [], 'duplicates without a kill after the final dot');
  // Messages nobody acknowledged: none (every client retried until it got its 250).
  const ids = new Set(dumps.map((d) => d.messageId.slice(1, -1)));
  assert.deepEqual([...ids].filter((id) => !run.report.acked.has(id)), []);
}

interface Running {
  inst: Instance;
  gw?: Gateway;
}

/** What a scenario started, for the suite's after(). */
interface Started {
  sinks: Sink[];
  gateways: Running[];
}

describe('kill -9 under load', { timeout: SOAK ? 3_600_000 : 360_000 }, () => {
  const started: Started = { sinks: [], gateways: [] };
  let crashSink: CrashSink | undefined;
  let inst2: Instance | undefined;
  let gw2: Gateway | undefined;

  after(async () => {
    await Promise.all([...started.gateways.map((g) => stopAndRemove(g.gw, g.inst)), stopAndRemove(gw2, inst2)]);
    await Promise.all([...started.sinks.map((k) => k.stop()), crashSink?.stop()]);
  });

  it('sign+encrypt through the gateway to smtp-sink: every 250 is at the destination, duplicates only from kills after the dot', (t) =>
    sinkScenario(t, 'smtp-sink', SOAK ? 210 : 21, 0, started));

  it('the same as a cluster (smtp.ini nodes=2, as shipped nodes=cpus): the kill takes the master and its workers', (t) =>
    sinkScenario(t, 'smtp-sink, cluster', SOAK ? 60 : 10, 2, started));

  it('with the retry queue holding partial failures: the queue survives each kill and delivers after restart', async (t) => {
    crashSink = await startCrashSink({ deferOnce: 'X-Fault' });
    inst2 = await prepareInstance(
      `[policy]\nlocal_domains = amd\nmixed_recipients = liberal\n[delivery]\nnext_hop = 127.0.0.1:${crashSink.port}\n` +
        'connect_timeout = 5\ngreeting_timeout = 10\ncommand_timeout = 10\ndata_block_timeout = 10\nfinal_dot_timeout = 10\n',
      amdStore,
    );
    gw2 = await start(inst2.dir);
    const spool = join(inst2.dir, 'var', 'queue');
    const queued = (): number => readdirSync(spool).filter((f) => f.endsWith('.json')).length;
    const targets: Target[] = ['done', 'mail', 'body', 'dot', 'done', 'random', 'rcpt', 'ehlo'];
    const recipients = ['juro@intel', 'fedor@mulholland'];
    const run = await runUnderKills({
      inst: inst2, gw: gw2, kills: SOAK ? 80 : 8, targets, to: recipients, headers: ['X-Fault: defer-once'], onKilled: queued, t,
    });
    gw2 = run.gw;
    // The queue drains on its own (retried at once after a restart and when an item is queued).
    const drained = await waitFor(() => queued() === 0, 20_000);
    const spooled = run.kills.reduce((n, k) => n + k.queued, 0);
    const rec = reconcile(run.report.acked, crashSink.dumps(), recipients);
    summary(t, 'retry queue', run, rec);
    const line = `retry queue: ${spooled} queue items were on disk at the kills (${run.kills.filter((k) => k.queued > 0).length} of ${run.kills.length} kills); queue empty at the end: ${drained}`;
    t.diagnostic(line);
    process.stdout.write(`# crash: ${line}\n`);
    assert.ok(drained, `the retry queue still holds ${queued()} items:\n${gw2.stdout().split('\n').filter((l) => /retry queue|error/i.test(l)).slice(-5).join('\n')}`);
    assert.ok(run.report.acked.size >= 20, `only ${run.report.acked.size} messages went through`);
    assert.ok(spooled > 0, 'no kill found an item in the retry queue');
    assert.deepEqual(rec.losses, [], 'acknowledged copies missing at the destination');
    // The encrypted copy goes only on the client's own connection: a duplicate of it needs an attempt cut after
    // its dot. (A plain copy may also be sent twice by the queue, when a kill falls between its 250 and its removal.)
    const unexplained = rec.duplicated
      .filter((k) => k.endsWith(' juro@intel'))
      .map((k) => k.split(' ')[0].slice(1, -1))
      .filter((id) => !run.report.cutAfterDot.has(id));
    assert.deepEqual(unexplained, [], 'duplicates of the encrypted copy without a kill after the final dot');
    // Each recipient's copy as policy said: encrypted for juro@intel, the original for fedor@mulholland.
    for (const d of crashSink.dumps()) {
      if (d.recipients.includes('juro@intel')) assert.ok(d.encrypted && !/line of /.test(d.text), d.file);
    }
  });
});
