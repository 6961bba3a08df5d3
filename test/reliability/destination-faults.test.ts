/**
 * Destination faults through the whole gateway (Haraka + cstp-gateway, outbound sign+encrypt to juro@intel,
 * require_encryption = intel, upstream timeouts of 2 s). The destination is a scripted SMTP peer on a real
 * socket whose behaviour the test picks per case: silent after accepting, 421 on connect, hanging or refusing
 * at EHLO, MAIL, RCPT, DATA and after the final dot, cutting the connection mid-DATA, reading slowly or not at
 * all. For each: the client's reply class, the stage it comes at, an upper bound on the time it takes (the
 * configured timeout plus generous slack, never a lower bound), and that every byte the destination received
 * of the message was S/MIME-encrypted: the body never leaves in plaintext.
 *
 * Not repeated here (test/gateway/paper.test.ts has them): connection refused at MAIL, 4xx/5xx at RCPT from
 * smtp-sink, 4xx/5xx after the end of data, encryption required but impossible.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Gateway } from '../gateway/harness';
import { amdStore } from '../gateway/paper-gateways';
import { SmtpClient } from '../../src/delivery/smtp-client';
import { scriptedServer, type ScriptedConnection, type ScriptedServer } from '../delivery/peers';
import { numberedMessage, sendMail, type SendResult } from './crash-smtp';
import { decisions, prepareInstance, sleep, start, stopAndRemove, type Instance } from './faults-gateway';

const TIMEOUT_S = 2;
/** Slack over a configured timeout for a loaded 2-core machine: generous, but a hang would still fail. */
const SLACK_MS = 8_000;
const PROMPT_MS = 5_000;
const SECRET = 'SECRET-BODY-MARKER';
/** How long 'slow-final' takes to answer the final dot: longer than the client idle limit of the second suite. */
const SLOW_FINAL_MS = 4_000;

type Mode =
  | 'accept' | 'hang-accept' | '421-connect' | 'hang-ehlo' | 'mail-451' | 'mail-550' | 'hang-mail' | 'hang-rcpt'
  | 'rcpt-second-550' | 'data-451' | 'data-554' | 'hang-data' | 'hang-final' | 'slow-final' | 'cut-mid-data' | 'stall-reader'
  | 'slow-reader';

let mode: Mode = 'accept';
/** Every connection's received bytes, and the DATA content of each (what would be "sent"). */
const wire: Buffer[] = [];
const contents: string[] = [];

const forever = (conn: ScriptedConnection): Promise<void> => new Promise((r) => conn.socket.once('close', () => r()));

async function peer(conn: ScriptedConnection): Promise<void> {
  const m = mode;
  conn.socket.once('close', () => wire.push(conn.received()));
  if (m === 'hang-accept') return forever(conn);
  if (m === '421-connect') {
    conn.send('421 4.3.2 scripted: service not available\r\n');
    conn.socket.end();
    return;
  }
  conn.send('220 scripted ESMTP\r\n');
  let rcpts = 0;
  for (;;) {
    const line = await conn.line();
    const verb = line.slice(0, 4).toUpperCase();
    if (verb === 'EHLO') {
      if (m === 'hang-ehlo') return forever(conn);
      conn.send('250-scripted\r\n250-8BITMIME\r\n250 DSN\r\n');
    } else if (verb === 'MAIL') {
      if (m === 'hang-mail') return forever(conn);
      conn.send(m === 'mail-451' ? '451 4.3.0 scripted: not now\r\n' : m === 'mail-550' ? '550 5.7.1 scripted: sender refused\r\n' : '250 2.1.0 ok\r\n');
    } else if (verb === 'RCPT') {
      if (m === 'hang-rcpt') return forever(conn);
      rcpts++;
      conn.send(m === 'rcpt-second-550' && rcpts === 2 ? '550 5.1.1 scripted: no such user\r\n' : '250 2.1.5 ok\r\n');
    } else if (verb === 'DATA') {
      if (m === 'hang-data') return forever(conn);
      if (m === 'data-451' || m === 'data-554') {
        conn.send(m === 'data-451' ? '451 4.3.0 scripted: no data now\r\n' : '554 5.3.0 scripted: no data\r\n');
        continue;
      }
      conn.send('354 go ahead\r\n');
      if (m === 'cut-mid-data') {
        // Take a little of the message, then drop the connection.
        for (let i = 0; i < 5; i++) contents.push(await conn.line());
        conn.socket.destroy();
        return;
      }
      if (m === 'stall-reader') {
        conn.socket.pause();
        return forever(conn);
      }
      if (m === 'slow-reader') {
        // Reads in bursts with pauses well under the data-block timeout: slow, but never stalled for long.
        const timer = setInterval(() => {
          conn.socket.pause();
          setTimeout(() => conn.socket.resume(), 150);
        }, 50);
        conn.socket.once('close', () => clearInterval(timer));
        const lines: string[] = [];
        for (let l = await conn.line(); l !== '.'; l = await conn.line()) lines.push(l);
        clearInterval(timer);
        conn.socket.resume();
        contents.push(lines.join('\r\n'));
        conn.send('250 2.0.0 queued slowly\r\n');
        continue;
      }
      const lines: string[] = [];
      for (let l = await conn.line(); l !== '.'; l = await conn.line()) lines.push(l);
      contents.push(lines.join('\r\n'));
      if (m === 'hang-final') return forever(conn);
      if (m === 'slow-final') await sleep(SLOW_FINAL_MS);
      conn.send('250 2.0.0 queued as SCRIPTED\r\n');
    } else if (verb === 'QUIT') {
      conn.send('221 2.0.0 bye\r\n');
      conn.socket.end();
      return;
    } else conn.send('250 2.0.0 ok\r\n');
  }
}

describe('destination faults through the gateway', { timeout: 180_000 }, () => {
  let server: ScriptedServer;
  let inst: Instance | undefined;
  let gw: Gateway | undefined;
  let seq = 0;

  before(async () => {
    server = await scriptedServer(peer);
    const t = TIMEOUT_S;
    inst = await prepareInstance(
      `[policy]\nlocal_domains = amd\nrequire_encryption = intel\n[delivery]\nnext_hop = 127.0.0.1:${server.port}\n` +
        `connect_timeout = ${t}\ngreeting_timeout = ${t}\ncommand_timeout = ${t}\ndata_block_timeout = ${t}\nfinal_dot_timeout = ${t}\n`,
      amdStore,
    );
    gw = await start(inst.dir);
  });

  after(async () => {
    await stopAndRemove(gw, inst);
    await server?.close();
  });

  async function send(m: Mode, opts: { to?: string[]; size?: number } = {}): Promise<SendResult> {
    mode = m;
    const to = opts.to ?? ['juro@intel'];
    const id = `${m}.${++seq}@faults.test`;
    const chunks = numberedMessage({ id, from: 'juro@amd', to, size: opts.size ?? 2048, parts: 4, marker: SECRET });
    const r = await sendMail({ port: inst!.port, from: 'juro@amd', to, chunks, timeoutMs: 120_000 });
    // Let the gateway close its side before the next case changes the mode.
    await sleep(50);
    return r;
  }

  const within = (r: SendResult, ms: number): void => assert.ok(r.ms <= ms, `took ${r.ms} ms, bound ${ms} ms: ${r.text}`);
  const at = (r: SendResult, stage: SendResult['stage'], cls: 2 | 4 | 5): void => {
    assert.equal(r.stage, stage, JSON.stringify(r));
    assert.equal(Math.floor((r.code ?? 0) / 100), cls, JSON.stringify(r));
  };

  it('the scripted destination works: 250, the copy it got is S/MIME', async () => {
    const r = await send('accept');
    at(r, 'dot', 2);
    within(r, PROMPT_MS);
  });

  it('accept then silence (no greeting): 4xx at MAIL within the greeting timeout', async () => {
    const r = await send('hang-accept');
    at(r, 'mail', 4);
    within(r, TIMEOUT_S * 1000 + SLACK_MS);
  });

  it('421 on connect: the destination\'s 421 at MAIL, at once, and the client\'s connection is closed', async () => {
    const r = await send('421-connect');
    at(r, 'mail', 4);
    assert.equal(r.code, 421);
    assert.match(r.text, /scripted: service not available/);
    within(r, PROMPT_MS);
  });

  it('silence after EHLO: 4xx at MAIL within the command timeout', async () => {
    const r = await send('hang-ehlo');
    at(r, 'mail', 4);
    within(r, TIMEOUT_S * 1000 + SLACK_MS);
  });

  it('4xx at MAIL: passed through at once', async () => {
    const r = await send('mail-451');
    at(r, 'mail', 4);
    assert.match(r.text, /^451 4\.3\.0 scripted: not now/);
    within(r, PROMPT_MS);
  });

  it('5xx at MAIL: passed through at once', async () => {
    const r = await send('mail-550');
    at(r, 'mail', 5);
    assert.match(r.text, /^550 5\.7\.1 scripted: sender refused/);
    within(r, PROMPT_MS);
  });

  it('silence after MAIL: 4xx at MAIL within the command timeout', async () => {
    const r = await send('hang-mail');
    at(r, 'mail', 4);
    within(r, TIMEOUT_S * 1000 + SLACK_MS);
  });

  it('silence after RCPT: 4xx at RCPT within the command timeout', async () => {
    const r = await send('hang-rcpt');
    at(r, 'rcpt', 4);
    within(r, TIMEOUT_S * 1000 + SLACK_MS);
  });

  it('one of two recipients refused at RCPT: the client sees both replies, the other gets the encrypted copy', async () => {
    const r = await send('rcpt-second-550', { to: ['juro@intel', 'julia@intel'] });
    assert.deepEqual(r.rcptCodes, [250, 550]);
    at(r, 'dot', 2);
    within(r, PROMPT_MS);
  });

  it('4xx to the DATA command: 4xx after the client\'s final dot, at once', async () => {
    const r = await send('data-451');
    at(r, 'dot', 4);
    assert.match(r.text, /^451 4\.3\.0 scripted: no data now/);
    within(r, PROMPT_MS);
  });

  it('5xx to the DATA command: 5xx after the client\'s final dot, at once', async () => {
    const r = await send('data-554');
    at(r, 'dot', 5);
    assert.match(r.text, /^554 5\.3\.0 scripted: no data/);
    within(r, PROMPT_MS);
  });

  it('no answer to the DATA command: 4xx after the final dot within the command timeout', async () => {
    const r = await send('hang-data');
    at(r, 'dot', 4);
    within(r, TIMEOUT_S * 1000 + SLACK_MS);
  });

  it('no answer to the final dot: 4xx within the final-dot timeout', async () => {
    const r = await send('hang-final');
    at(r, 'dot', 4);
    within(r, TIMEOUT_S * 1000 + SLACK_MS);
  });

  it('connection cut mid-DATA: 4xx at once', async () => {
    const r = await send('cut-mid-data', { size: 256 * 1024 });
    at(r, 'dot', 4);
    within(r, PROMPT_MS);
  });

  it('a reader that stops reading: 4xx within the data-block (or final-dot) timeout', async () => {
    const r = await send('stall-reader', { size: 3 * 1024 * 1024 });
    at(r, 'dot', 4);
    within(r, TIMEOUT_S * 1000 + SLACK_MS + 5_000);
    const last = decisions(gw!).at(-1) as { deliveries: { reply: { text: string } }[] };
    process.stdout.write(`# faults: stalled reader answered with: ${last.deliveries[0].reply.text}\n`);
  });

  it('a slow reader that keeps reading: delivered (250), slower than any single timeout would allow if it stalled', async () => {
    const r = await send('slow-reader', { size: 1024 * 1024 });
    at(r, 'dot', 2);
    within(r, 60_000);
    process.stdout.write(`# faults: slow reader took ${r.ms} ms for a 1 MiB message\n`);
  });

  it('after all of it: nothing left in plaintext, every copy the destination read is S/MIME, and the gateway still runs', async () => {
    await sleep(200);
    const all = Buffer.concat(wire).toString('latin1');
    assert.ok(wire.length >= 15, `only ${wire.length} upstream connections recorded`);
    assert.ok(!all.includes(SECRET), 'the message body reached the destination in plaintext');
    assert.ok(contents.length >= 5, `${contents.length} DATA contents`);
    for (const c of contents) {
      assert.ok(!c.includes(SECRET), 'plaintext body');
      if (c.length > 200) assert.match(c, /application\/pkcs7-mime/);
    }
    assert.equal(gw!.child.exitCode, null);
    const r = await send('accept');
    at(r, 'dot', 2);
  });
});

/**
 * A destination that takes longer to answer the final dot than the gateway lets a client sit idle (smtp.ini
 * inactivity_timeout, 2 s here), but within the upstream final-dot timeout: the client, which is silent while it
 * waits for that reply, gets the destination's 250, not Haraka's "421 timeout".
 */
describe('a destination slower to answer the final dot than the client idle limit', { timeout: 60_000 }, () => {
  let server: ScriptedServer;
  let inst: Instance | undefined;
  let gw: Gateway | undefined;

  before(async () => {
    server = await scriptedServer(peer);
    inst = await prepareInstance(
      `[policy]\nlocal_domains = amd\nrequire_encryption = intel\n[delivery]\nnext_hop = 127.0.0.1:${server.port}\nfinal_dot_timeout = 20\n`,
      amdStore,
    );
    const smtpIni = join(inst.dir, 'config', 'smtp.ini');
    writeFileSync(smtpIni, readFileSync(smtpIni, 'utf8').replace(/^inactivity_timeout=.*$/m, 'inactivity_timeout=2'));
    gw = await start(inst.dir);
  });

  after(async () => {
    await stopAndRemove(gw, inst);
    await server?.close();
  });

  it('the client gets the 250, and its idle limit holds again afterwards', async () => {
    mode = 'slow-final';
    const client = new SmtpClient({ host: '127.0.0.1', port: inst!.port, heloName: 'mail.amd', tls: { policy: 'off' } });
    try {
      assert.equal((await client.open()).code, 250);
      assert.equal((await client.mail('juro@amd')).code, 250);
      assert.equal((await client.rcpt('juro@intel')).code, 250);
      const started = Date.now();
      const chunks = numberedMessage({ id: 'slow-final@faults.test', from: 'juro@amd', to: ['juro@intel'], size: 2048, parts: 1, marker: SECRET });
      const reply = await client.data(chunks);
      const ms = Date.now() - started;
      assert.equal(reply.code, 250, `${reply.code} ${reply.lines.join(' ')} after ${ms} ms`);
      assert.ok(ms >= SLOW_FINAL_MS, `answered after ${ms} ms, before the destination did`);
      // Silent again after its reply: Haraka's idle limit (2 s) closes the session once more.
      const idleSince = Date.now();
      while (client.usable && Date.now() - idleSince < 10_000) await sleep(100);
      assert.equal(client.usable, false, 'the session outlived the idle limit after the reply');
    } finally {
      client.close();
    }
  });
});
