import { strict as assert } from 'node:assert';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeDsn, RetryQueue, smtpSender, type RetryQueueOptions } from '../../src/delivery/retry-queue';
import type { Endpoint } from '../../src/delivery/transaction';
import { freePort, startSink, type Sink } from './peers';

const FAST = { connect: 1000, greeting: 300, command: 300, dataBlock: 300, finalDot: 300 };
const at = (port: number): Endpoint => ({ host: '127.0.0.1', port });
const MESSAGE = Buffer.from('Subject: queued\r\nMessage-ID: <q1@a.example>\r\n\r\n.leading dot\r\nbody\r\n');

describe('RetryQueue (durable spool, retries, DSN bounces) against smtp-sink', () => {
  let sink: Sink;
  let senderServer: Sink; // stands for the local mail server that takes DSNs to the sender
  const dirs: string[] = [];
  let clock = 1_000_000;
  before(async () => {
    [sink, senderServer] = await Promise.all([startSink(), startSink()]);
  });
  after(async () => {
    await Promise.all([sink.stop(), senderServer.stop()]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  function queue(extra: Partial<RetryQueueOptions> = {}, dir = mkdtempSync(join(tmpdir(), 'cstp-spool-'))): RetryQueue {
    dirs.push(dir);
    return new RetryQueue({
      dir,
      delays: [1000, 2000, 4000],
      reportingMta: 'gw.a.example',
      bounceRoute: at(senderServer.port),
      send: smtpSender({ heloName: 'gw.test', timeouts: FAST }),
      now: () => clock,
      ...extra,
    });
  }

  it('survives a restart (new instance on the same spool) and delivers when due', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'cstp-spool-'));
    dirs.push(parent);
    const dir = join(parent, 'created');
    const first = queue({}, dir);
    first.enqueue(
      { from: 'a@a.example', mailParams: { ret: 'HDRS' }, recipients: [{ address: 'b@b.example', params: { notify: ['FAILURE'] } }], destination: at(sink.port) },
      MESSAGE,
    );
    writeFileSync(join(dir, 'half-written.eml'), 'crash leftover'); // a message without state: dropped by the runner
    const second = queue({}, dir);
    assert.ok(readdirSync(dir).includes('half-written.eml'), 'a process that only enqueues leaves other writers alone');
    second.start();
    assert.ok(!readdirSync(dir).includes('half-written.eml'));
    assert.equal(second.list().length, 1);
    await second.runDue();
    assert.equal(second.list().length, 1, 'not due yet');
    clock += 1000;
    await second.runDue();
    assert.deepEqual(second.list(), []);
    assert.deepEqual(readdirSync(dir), []);
    await second.stop();
    const [dump] = await sink.next(1);
    assert.match(dump, /^X-Rcpt-Args: <b@b\.example> NOTIFY=FAILURE$/m);
    assert.match(dump, /\n\.leading dot\nbody\n/);
  });

  it('backs off on temporary failures, then bounces with a DSN to the sender', async () => {
    const down = await freePort();
    const q = queue();
    q.enqueue(
      {
        from: 'a@a.example',
        mailParams: { envid: 'ENV1' },
        recipients: [{ address: 'b@b.example', params: { orcpt: 'rfc822;b@b.example' } }],
        destination: at(down),
      },
      MESSAGE,
    );
    const delays: number[] = [];
    for (let i = 0; i < 2; i++) {
      clock = q.list()[0].nextAttempt;
      await q.runDue();
      const [item] = q.list();
      assert.equal(item.attempts, i + 1);
      assert.equal(item.lastReply?.code, 421);
      delays.push(item.nextAttempt - clock);
    }
    assert.deepEqual(delays, [2000, 4000]);
    clock = q.list()[0].nextAttempt;
    await q.runDue(); // third failure: delays used up, the DSN is queued
    const [dsnItem] = q.list();
    assert.equal(dsnItem.from, '');
    assert.deepEqual(dsnItem.recipients.map((r) => r.address), ['a@a.example']);
    clock = dsnItem.nextAttempt;
    await q.runDue();
    assert.deepEqual(q.list(), []);
    const [dsn] = await senderServer.next(1);
    assert.match(dsn, /^X-Mail-Args: <>$/m);
    assert.match(dsn, /^Content-Type: multipart\/report; report-type=delivery-status;/m);
    assert.match(dsn, /^Original-Envelope-Id: ENV1$/m);
    assert.match(dsn, /^Final-Recipient: rfc822; b@b\.example$/m);
    assert.match(dsn, /^Original-Recipient: rfc822; b@b\.example$/m);
    assert.match(dsn, /^Action: failed$/m);
    assert.match(dsn, /^Status: 4\.4\.1$/m);
    assert.match(dsn, /^Diagnostic-Code: smtp; 421 4\.4\.1 127\.0\.0\.1:\d+ unreachable: ECONNREFUSED$/m);
    assert.match(dsn, /^Content-Type: text\/rfc822-headers$/m);
    assert.match(dsn, /^Message-ID: <q1@a\.example>$/m);
    assert.doesNotMatch(dsn, /leading dot/, 'RET defaults to headers only');
  });

  it('quotes the whole message under RET=FULL, and a header section alone as headers', () => {
    const item = {
      id: 'x', from: 'a@a.example', mailParams: { ret: 'FULL' as const }, recipients: [{ address: 'b@b.example', params: {} }],
      destination: at(25), arrival: new Date(0).toISOString(), attempts: 1, nextAttempt: 0,
    };
    const dsn = (message: Buffer): string => makeDsn({
      reportingMta: 'gw.a.example', item, message, date: new Date(0),
      failed: [{ recipient: item.recipients[0], reply: { code: 550, enhanced: '5.1.1', lines: ['no such user'] } }],
    }).toString('latin1');
    const whole = dsn(MESSAGE);
    assert.match(whole, /^Content-Type: message\/rfc822\r$/m);
    assert.match(whole, /leading dot/);
    const head = MESSAGE.subarray(0, MESSAGE.indexOf('\r\n\r\n') + 4);
    const headers = dsn(head);
    assert.match(headers, /^Content-Type: text\/rfc822-headers\r$/m);
    assert.doesNotMatch(headers, /message\/rfc822/);
    assert.match(headers, /^Message-ID: <q1@a\.example>\r$/m);
  });

  it('bounces a permanent failure at once, honouring NOTIFY=NEVER for others', async () => {
    const rejecting = await startSink(['-f', 'RCPT']);
    try {
      const q = queue();
      q.enqueue(
        {
          from: 'a@a.example',
          recipients: [
            { address: 'b1@b.example', params: {} },
            { address: 'b2@b.example', params: { notify: ['NEVER'] } },
          ],
          destination: at(rejecting.port),
        },
        MESSAGE,
      );
      clock = q.list()[0].nextAttempt;
      await q.runDue();
      const [dsnItem, ...rest] = q.list();
      assert.deepEqual(rest, []);
      clock = dsnItem.nextAttempt;
      await q.runDue();
      const [dsn] = await senderServer.next(1);
      assert.match(dsn, /^Final-Recipient: rfc822; b1@b\.example$/m);
      assert.doesNotMatch(dsn, /b2@b\.example/);
      assert.match(dsn, /^Status: 5\.3\.0$/m);
    } finally {
      await rejecting.stop();
    }
  });
});
