/**
 * The gateway as a Haraka cluster, as shipped (smtp.ini nodes=cpus; nodes=2 here, whatever the machine): both
 * workers accept, secure and deliver, and the retry queue has exactly one runner, the master, which a worker wakes when it
 * queues a part (a queued part goes out at once, not at the queue's next 30 s tick, and only once). A worker
 * that cannot open the store stops the whole gateway (exit 78) instead of being forked again and again.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { amdStore } from './paper-gateways';
import { startCrashSink, type CrashSink } from '../reliability/crash-sink';
import { numberedMessage, sendMail } from '../reliability/crash-smtp';
import { prepareInstance, start, stopAndRemove, waitFor, type Instance } from '../reliability/faults-gateway';
import type { Gateway } from './harness';

/** CPU time (user+system, clock ticks) of each worker process of the cluster master `pid`. */
function workerTicks(pid: number): Map<number, number> {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return new Map(
    children.map((child) => {
      const fields = readFileSync(`/proc/${child}/stat`, 'utf8').split(') ')[1].split(' ');
      return [child, Number(fields[11]) + Number(fields[12])]; // utime, stime (fields 14 and 15 of stat)
    }),
  );
}

describe('the gateway as a cluster (nodes=2)', { timeout: 120_000 }, () => {
  let sink: CrashSink;
  let inst: Instance;
  let gw: Gateway | undefined;

  before(async () => {
    sink = await startCrashSink({ deferOnce: 'X-Fault' });
    inst = await prepareInstance(
      `[policy]\nlocal_domains = amd\nmixed_recipients = liberal\n[delivery]\nnext_hop = 127.0.0.1:${sink.port}\n`,
      amdStore,
    );
    const smtpIni = join(inst.dir, 'config', 'smtp.ini');
    writeFileSync(smtpIni, readFileSync(smtpIni, 'utf8').replace(/^nodes=.*$/m, 'nodes=2'));
    gw = await start(inst.dir);
    // Each worker logs its own "Listening on"; wait for the second.
    await waitFor(() => gw!.stdout().split('Listening on').length - 1 >= 2, 30_000);
  });

  after(async () => {
    await stopAndRemove(gw, inst);
    await sink?.stop();
  });

  it('secures and delivers in both workers, each message once', async () => {
    const before = workerTicks(gw!.child.pid!);
    assert.equal(before.size, 2, 'two worker processes');
    const ids = Array.from({ length: 60 }, (_, i) => `${i}.${Date.now()}@cluster.test`);
    const results = [];
    for (let i = 0; i < ids.length; i += 10) {
      results.push(
        ...(await Promise.all(
          ids.slice(i, i + 10).map((id) =>
            sendMail({ port: inst.port, from: 'juro@amd', to: ['juro@intel'], chunks: numberedMessage({ id, from: 'juro@amd', to: ['juro@intel'], size: 10_000 }) }),
          ),
        )),
      );
    }
    assert.deepEqual(results.filter((r) => r.code !== 250).map((r) => r.text), []);
    const dumps = await waitFor(() => (sink.dumps().length >= ids.length ? sink.dumps() : undefined), 10_000);
    assert.ok(dumps, `the destination holds ${sink.dumps().length} of ${ids.length}`);
    assert.deepEqual(dumps.map((d) => d.messageId).sort(), ids.map((id) => `<${id}>`).sort());
    assert.ok(dumps.every((d) => d.encrypted));
    const after = workerTicks(gw!.child.pid!);
    for (const [pid, ticks] of after) assert.ok(ticks - (before.get(pid) ?? 0) >= 5, `worker ${pid} did work: ${[...before]} -> ${[...after]}`);
  });

  it('a part the destination deferred is queued by a worker and sent at once by the master, once', async () => {
    const id = `deferred.${Date.now()}@cluster.test`;
    const to = ['juro@intel', 'fedor@mulholland'];
    const r = await sendMail({ port: inst.port, from: 'juro@amd', to, chunks: numberedMessage({ id, from: 'juro@amd', to, headers: ['X-Fault: defer-once'] }) });
    assert.equal(r.code, 250, r.text);
    const spool = join(inst.dir, 'var', 'queue');
    // Well inside the runner's 30 s tick: the worker's wake-up reached the master.
    const copies = await waitFor(() => {
      const mine = sink.dumps().filter((d) => d.messageId === `<${id}>`);
      return mine.length >= 2 && readdirSync(spool).length === 0 ? mine : undefined;
    }, 10_000);
    assert.ok(copies, `queue: ${readdirSync(spool).join(', ')}; at the destination: ${sink.dumps().filter((d) => d.messageId === `<${id}>`).length}`);
    await new Promise((done) => setTimeout(done, 1_000)); // a second runner would send it again now
    const final = sink.dumps().filter((d) => d.messageId === `<${id}>`);
    assert.deepEqual(final.map((d) => [d.recipients.join(','), d.encrypted]).sort(), [['fedor@mulholland', false], ['juro@intel', true]]);
  });

  it('a restarted worker that cannot open the store stops the gateway with exit 78, not a fork loop', async () => {
    // The passphrase changed under the running gateway; then a worker dies and the master forks a new one.
    writeFileSync(join(inst.dir, 'var', 'store.passphrase'), 'not the passphrase\n', { mode: 0o600 });
    const [worker] = workerTicks(gw!.child.pid!).keys();
    process.kill(worker, 'SIGKILL');
    const code = await Promise.race([gw!.exited, new Promise((done) => setTimeout(() => done('still running'), 15_000))]);
    assert.equal(code, 78, gw!.stderr().slice(-2000));
    assert.match(gw!.stderr(), /cstp: worker \d+ cannot run \(cstp: cannot open the key store: wrong passphrase for key store .*\): stopping the gateway/);
  });
});
