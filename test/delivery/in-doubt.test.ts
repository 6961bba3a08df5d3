import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { InDoubtDeliveries, inDoubtKey, MAX_AGE_MS } from '../../src/delivery/in-doubt';

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();
const MESSAGE = sha256('Subject: hi\r\n\r\nbody\r\n');
const RECORD = { transaction: 'ABC.1', reply: '250 2.0.0 Ok: queued as 1' };

describe('in-doubt deliveries', () => {
  const dirs: string[] = [];
  const fresh = (): string => {
    const base = mkdtempSync(join(tmpdir(), 'cstp-in-doubt-'));
    dirs.push(base);
    return join(base, 'in-doubt');
  };
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('a key covers sender, recipients (in any order) and the message', () => {
    const key = inDoubtKey({ from: 'a@x', recipients: ['b@y', 'c@z'] }, MESSAGE);
    assert.match(key, /^[0-9a-f]{64}$/);
    assert.equal(inDoubtKey({ from: 'a@x', recipients: ['c@z', 'b@y'] }, MESSAGE), key);
    assert.notEqual(inDoubtKey({ from: 'a@x', recipients: ['b@y'] }, MESSAGE), key);
    assert.notEqual(inDoubtKey({ from: 'a@x', recipients: ['b@y', 'd@z'] }, MESSAGE), key);
    assert.notEqual(inDoubtKey({ from: '', recipients: ['b@y', 'c@z'] }, MESSAGE), key);
    assert.notEqual(inDoubtKey({ from: 'a@x', recipients: ['b@y', 'c@z'] }, sha256('Subject: hi\r\n\r\nbody.\r\n')), key);
    // Address boundaries are part of what is hashed: moving text between sender and recipient changes the key.
    assert.notEqual(inDoubtKey({ from: 'a@xb', recipients: ['@y'] }, MESSAGE), inDoubtKey({ from: 'a@x', recipients: ['b@y'] }, MESSAGE));
  });

  it('records, finds and settles a marker; every process sees the files (no state in memory)', () => {
    const dir = fresh();
    const key = inDoubtKey({ from: 'a@x', recipients: ['b@y'] }, MESSAGE);
    const writer = new InDoubtDeliveries(dir);
    const other = new InDoubtDeliveries(dir);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(other.find(key), undefined);
    writer.record(key, RECORD);
    assert.equal(statSync(join(dir, key)).mode & 0o777, 0o600);
    assert.deepEqual(other.find(key), RECORD);
    other.settle(key);
    assert.equal(writer.find(key), undefined);
    writer.settle(key); // settled twice (two processes): no error
    assert.deepEqual(readdirSync(dir), []);
  });

  it('a transaction still being answered is no resend: found once its process is gone or its client left', () => {
    const dir = fresh();
    const store = new InDoubtDeliveries(dir);
    const live = 'cc'.repeat(32);
    store.record(live, { ...RECORD, pid: process.pid });
    assert.equal(store.find(live), undefined, 'an identical message while the first is answered is delivered');
    store.abandon(live);
    assert.deepEqual(store.find(live), { ...RECORD, pid: process.pid, abandoned: true });
    // A process that has exited (a crash): its markers count.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    const dead = 'dd'.repeat(32);
    store.record(dead, { ...RECORD, pid: Number(gone.stdout) });
    assert.deepEqual(store.find(dead), { ...RECORD, pid: Number(gone.stdout) });
    store.abandon('ee'.repeat(32)); // no marker: nothing to abandon, no file made
    assert.deepEqual(readdirSync(dir).sort(), [live, dead].sort());
  });

  it('a marker that cannot be parsed (read while written, or cut by a kill) counts as none: a duplicate at worst', () => {
    const dir = fresh();
    const store = new InDoubtDeliveries(dir);
    const key = 'ab'.repeat(32);
    for (const text of ['', '{"transaction": "AB']) {
      writeFileSync(join(dir, key), text);
      assert.equal(store.find(key), undefined);
    }
  });

  it('refuses a key that is not a SHA-256 in hex (no path outside the directory)', () => {
    const store = new InDoubtDeliveries(fresh());
    assert.throws(() => store.record('../x', RECORD), /not an in-doubt key/);
    assert.throws(() => store.find('AB'.repeat(32)), /not an in-doubt key/);
  });

  it('sweeps markers older than 5 days, keeps younger ones', () => {
    const dir = fresh();
    const now = Date.now();
    const store = new InDoubtDeliveries(dir, MAX_AGE_MS, () => now);
    const old = 'aa'.repeat(32);
    const young = 'bb'.repeat(32);
    store.record(old, RECORD);
    store.record(young, RECORD);
    const at = (ms: number): Date => new Date(now - ms);
    utimesSync(join(dir, old), at(MAX_AGE_MS + 60_000), at(MAX_AGE_MS + 60_000));
    utimesSync(join(dir, young), at(MAX_AGE_MS - 60_000), at(MAX_AGE_MS - 60_000));
    assert.equal(store.sweep(), 1);
    assert.equal(existsSync(join(dir, old)), false);
    assert.deepEqual(store.find(young), RECORD);
  });

  it('sweepEvery sweeps at once and reports errors instead of throwing', () => {
    const dir = fresh();
    const store = new InDoubtDeliveries(dir, 0, () => Date.now() + 1000);
    store.record('cc'.repeat(32), RECORD);
    const timer = store.sweepEvery(60_000, () => assert.fail('no error expected'));
    clearInterval(timer);
    assert.deepEqual(readdirSync(dir), []);
    rmSync(dir, { recursive: true });
    const errors: Error[] = [];
    clearInterval(store.sweepEvery(60_000, (err) => errors.push(err)));
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /ENOENT/);
  });
});
