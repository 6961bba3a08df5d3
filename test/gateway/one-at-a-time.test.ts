import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { NoTurn, OneAtATime } from '../../src/gateway/one-at-a-time';

/** A piece of work that runs until finish() is called, noting when it started. */
function work(log: string[], name: string) {
  let finish!: () => void;
  let fail!: (err: Error) => void;
  const done = new Promise<string>((resolve, reject) => {
    finish = () => resolve(name);
    fail = reject;
  });
  return { run: () => (log.push(name), done), finish: () => finish(), fail: (err: Error) => fail(err) };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('one at a time, the others in order of arrival', async () => {
  const gate = new OneAtATime(60_000);
  const started: string[] = [];
  const [a, b, c] = ['a', 'b', 'c'].map((n) => work(started, n));
  assert.equal(gate.busy, false);
  const results = [gate.run(a.run), gate.run(b.run), gate.run(c.run)];
  assert.equal(gate.busy, true, 'new work would wait');
  await tick();
  assert.deepEqual(started, ['a']);
  a.finish();
  await tick();
  assert.deepEqual(started, ['a', 'b']);
  b.finish();
  await tick();
  assert.deepEqual(started, ['a', 'b', 'c']);
  c.finish();
  assert.deepEqual(await Promise.all(results), ['a', 'b', 'c']);
  assert.equal(gate.busy, false);
  // Free again: the next one runs at once.
  assert.equal(await gate.run(() => 'd'), 'd');
});

test('work that fails passes the turn on and its caller gets the error', async () => {
  const gate = new OneAtATime(60_000);
  const started: string[] = [];
  const [a, b] = ['a', 'b'].map((n) => work(started, n));
  const first = gate.run(a.run);
  const second = gate.run(b.run);
  a.fail(new Error('engine failed'));
  await assert.rejects(first, /engine failed/);
  await tick();
  assert.deepEqual(started, ['a', 'b']);
  b.finish();
  assert.equal(await second, 'b');
  // Work that throws before it returns a promise, too.
  await assert.rejects(gate.run(() => { throw new Error('at once'); }), /at once/);
  assert.equal(await gate.run(() => 'free'), 'free');
});

test('a waiter that waits longer than the bound is given up; the line goes on behind it', async () => {
  const gate = new OneAtATime(50);
  const started: string[] = [];
  const [a, b] = ['a', 'b'].map((n) => work(started, n));
  const first = gate.run(a.run);
  const waitedFrom = Date.now();
  const late = gate.run(b.run);
  await assert.rejects(late, (err: unknown) => err instanceof NoTurn && err.reason === 'timed-out');
  assert.ok(Date.now() - waitedFrom >= 45, 'not before the bound');
  const c = work(started, 'c');
  const third = gate.run(c.run);
  a.finish();
  await first;
  await tick();
  assert.deepEqual(started, ['a', 'c'], 'the work given up never runs');
  c.finish();
  assert.equal(await third, 'c');
});

test('a waiter whose signal aborts leaves the line; an aborted signal gets no turn at all', async () => {
  const gate = new OneAtATime(60_000);
  const started: string[] = [];
  const [a, b, c] = ['a', 'b', 'c'].map((n) => work(started, n));
  const leaving = new AbortController();
  const first = gate.run(a.run);
  const second = gate.run(b.run, leaving.signal);
  const third = gate.run(c.run);
  leaving.abort();
  await assert.rejects(second, (err: unknown) => err instanceof NoTurn && err.reason === 'cancelled');
  a.finish();
  await first;
  await tick();
  assert.deepEqual(started, ['a', 'c']);
  c.finish();
  await third;
  await assert.rejects(gate.run(() => 'x', leaving.signal), (err: unknown) => err instanceof NoTurn && err.reason === 'cancelled');
  // An abort once the turn is given changes nothing: the work runs to its end.
  const holder = new AbortController();
  const d = work(started, 'd');
  const running = gate.run(d.run, holder.signal);
  await tick();
  holder.abort();
  d.finish();
  assert.equal(await running, 'd');
});
