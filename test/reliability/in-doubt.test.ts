/**
 * In-doubt deliveries through the real gateway (Haraka child process, sign+encrypt) to Postfix smtp-sink: a
 * client that cuts its connection right after the final dot never sees the reply, though the gateway delivers
 * the message. When the client sends the identical message again it gets 250 "already delivered" and the
 * destination keeps one copy; anything else (other bytes, another recipient, a resend after a 250 the client did
 * get, the same message on several connections at once while none was cut) is delivered as usual. The marker is
 * a file, so a gateway restarted after kill -9 honours it too.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Gateway } from '../gateway/harness';
import { amdStore } from '../gateway/paper-gateways';
import { startSink, type Sink } from '../delivery/peers';
import { numberedMessage, sendMail, type SendResult } from './crash-smtp';
import { readDumps } from './crash-sink';
import { decisions, kill9, prepareInstance, start, stopAndRemove, waitFor, type Instance } from './faults-gateway';

const FROM = 'juro@amd';
const ALREADY = /^250 2\.0\.0 already delivered before an interruption \([0-9a-f]{12}\)/;

describe('a resend after an interruption is answered without delivering again', { timeout: 120_000 }, () => {
  let sink: Sink;
  let inst: Instance;
  let gw: Gateway;
  const markers = (): string[] => readdirSync(join(inst.dir, 'var', 'in-doubt'));
  /** A marker goes once the 250 is written, a moment after the client could read it: the markers when that is done. */
  const markersAfterAnswers = async (expected: number): Promise<string[]> => (await waitFor(() => markers().length === expected, 5_000), markers());
  /** Copies of a message at the destination, by Message-ID and recipient. */
  const copies = (id: string, to = 'juro@intel'): number =>
    readDumps(sink.dir).filter((d) => d.messageId === `<${id}>` && d.recipients.includes(to)).length;
  const send = (id: string, to: string[], opts: { cutAfterDot?: boolean; body?: string } = {}): Promise<SendResult> =>
    sendMail({ port: inst.port, from: FROM, to, chunks: numberedMessage({ id, from: FROM, to: ['juro@intel'], marker: opts.body }), cutAfterDot: opts.cutAfterDot, timeoutMs: 30_000 });
  /** Sends with a cut after the dot and waits until the gateway has delivered and marked it. */
  const cutAfterDelivery = async (id: string, to = ['juro@intel']): Promise<void> => {
    const cut = await send(id, to, { cutAfterDot: true });
    assert.equal(cut.broken, true);
    assert.ok(await waitFor(() => copies(id, to[0]) === 1, 10_000), `${id} did not reach the destination`);
    assert.ok(await waitFor(() => markers().length === 1, 5_000), 'no in-doubt marker after the delivery');
  };

  before(async () => {
    sink = await startSink();
    inst = await prepareInstance(`[policy]\nlocal_domains = amd\nrequire_encryption = intel\n[delivery]\nnext_hop = 127.0.0.1:${sink.port}\n`, amdStore);
    gw = await start(inst.dir);
  });
  after(async () => {
    await stopAndRemove(gw, inst);
    await sink.stop();
  });

  it('the identical resend gets 250 "already delivered", the destination holds one copy, the marker goes', async () => {
    await cutAfterDelivery('cut.1@in-doubt.test');
    const again = await send('cut.1@in-doubt.test', ['juro@intel']);
    assert.equal(again.code, 250, again.text);
    assert.match(again.text, ALREADY);
    assert.equal(copies('cut.1@in-doubt.test'), 1);
    assert.deepEqual(await markersAfterAnswers(0), [], 'the marker stays after the client had its 250');
    const line = decisions(gw).at(-1) as { deliveries: { action: string; reply: { code: number } }[] };
    assert.deepEqual(line.deliveries.map((d) => [d.action, d.reply.code]), [['already-delivered', 250]]);
    assert.match(gw.stdout(), /resend of transaction [^ ]+, whose destination said \\"250 [^"\\]*\\" before the client was answered: 250 without delivering again/);
    // A third send, after the client had its 250, is a new message as far as the gateway can tell: delivered.
    const third = await send('cut.1@in-doubt.test', ['juro@intel']);
    assert.equal(third.code, 250);
    assert.doesNotMatch(third.text, ALREADY);
    assert.ok(await waitFor(() => copies('cut.1@in-doubt.test') === 2, 10_000));
  });

  it('other bytes, or the same bytes to another recipient, are delivered as usual; the marker stays for its resend', async () => {
    await cutAfterDelivery('cut.2@in-doubt.test');
    const otherBody = await send('cut.2@in-doubt.test', ['juro@intel'], { body: 'changed line' });
    assert.equal(otherBody.code, 250);
    assert.doesNotMatch(otherBody.text, ALREADY);
    const otherRecipient = await send('cut.2@in-doubt.test', ['julia@intel']);
    assert.equal(otherRecipient.code, 250);
    assert.doesNotMatch(otherRecipient.text, ALREADY);
    assert.ok(await waitFor(() => copies('cut.2@in-doubt.test') === 2 && copies('cut.2@in-doubt.test', 'julia@intel') === 1, 10_000));
    assert.equal((await markersAfterAnswers(1)).length, 1);
    const resend = await send('cut.2@in-doubt.test', ['juro@intel']);
    assert.match(resend.text, ALREADY);
    assert.deepEqual(await markersAfterAnswers(0), []);
  });

  it('a marker left by a gateway killed with SIGKILL is honoured by the restarted one', async () => {
    await cutAfterDelivery('cut.3@in-doubt.test');
    await kill9(gw);
    gw = await start(inst.dir);
    const again = await send('cut.3@in-doubt.test', ['juro@intel']);
    assert.match(again.text, ALREADY);
    assert.equal(copies('cut.3@in-doubt.test'), 1);
    assert.deepEqual(await markersAfterAnswers(0), []);
  });

  it('the same message on many connections at once, none cut, is delivered on each (a load generator, not a resend)', async () => {
    const id = 'same.4@in-doubt.test';
    const results = await Promise.all(Array.from({ length: 40 }, () => send(id, ['juro@intel'])));
    assert.deepEqual(results.map((r) => r.code), Array(40).fill(250));
    assert.equal(results.filter((r) => ALREADY.test(r.text)).length, 0);
    assert.ok(await waitFor(() => copies(id) === 40, 20_000), `${copies(id)} of 40 copies`);
    assert.deepEqual(await markersAfterAnswers(0), []);
  });
});
