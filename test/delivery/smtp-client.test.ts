import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DotStuffer } from '../../src/delivery/dot-stuff';
import { formatReply, ReplyParseError, ReplyParser } from '../../src/delivery/reply';
import { SmtpClient, type SmtpClientOptions } from '../../src/delivery/smtp-client';
import { pkiRead } from '../helpers/pki';
import {
  freePort,
  scriptedServer,
  startSink,
  upgradeToTls,
  type ScriptedConnection,
  type ScriptedServer,
  type Sink,
} from './peers';

/** Small limits so every timeout test finishes far below the default plugin timeout (30 s). */
const FAST = { connect: 1000, greeting: 300, command: 300, dataBlock: 300, finalDot: 300 };

function client(port: number, extra: Partial<SmtpClientOptions> = {}): SmtpClient {
  return new SmtpClient({ host: '127.0.0.1', port, heloName: 'gw.test', timeouts: FAST, ...extra });
}

/** The message part of an smtp-sink dump: after its X-* headers and 3-line Received header. */
function dumpedMessage(dump: string): string {
  const m = /^Received: .*\n\t.*\n\t.*\n/m.exec(dump);
  assert.ok(m, 'dump has a Received header');
  return dump.slice(m.index + m[0].length);
}

async function deliver(c: SmtpClient, chunks: Buffer[], from = 'a@a.example', to = 'b@b.example'): Promise<number> {
  assert.equal((await c.open()).code, 250);
  return transact(c, chunks, from, to);
}

/** MAIL, RCPT, DATA and QUIT on an open session; the code of the final reply. */
async function transact(c: SmtpClient, chunks: Buffer[], from = 'a@a.example', to = 'b@b.example'): Promise<number> {
  assert.equal((await c.mail(from)).code, 250);
  assert.equal((await c.rcpt(to)).code, 250);
  const final = await c.data(chunks);
  await c.quit();
  return final.code;
}

/** Split a buffer into pieces of the given sizes, cycling, to put chunk edges everywhere. */
function split(buf: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < buf.length; i++) {
    const n = sizes[i % sizes.length];
    out.push(buf.subarray(at, at + n));
    at += n;
  }
  return out;
}

describe('ReplyParser', () => {
  it('parses multi-line replies split anywhere, with enhanced codes', () => {
    const raw = Buffer.from('250-mx.example\r\n250-SIZE 1000\r\n250 DSN\r\n550 5.1.1 no such user\r\n');
    for (let step = 1; step < raw.length; step++) {
      const p = new ReplyParser();
      const got = split(raw, [step]).flatMap((c) => p.push(c));
      assert.deepEqual(got, [
        { code: 250, lines: ['mx.example', 'SIZE 1000', 'DSN'] },
        { code: 550, enhanced: '5.1.1', lines: ['5.1.1 no such user'] },
      ]);
    }
  });

  it('rejects garbage and a code change inside a reply', () => {
    assert.throws(() => new ReplyParser().push(Buffer.from('hello\r\n')), ReplyParseError);
    assert.throws(() => new ReplyParser().push(Buffer.from('250-a\r\n251 b\r\n')), ReplyParseError);
    assert.throws(() => new ReplyParser().push(Buffer.alloc(5000, 0x41)), ReplyParseError);
  });

  it('formats a reply back to the wire form', () => {
    assert.equal(formatReply({ code: 250, lines: ['a', 'b'] }), '250-a\r\n250 b\r\n');
  });
});

describe('DotStuffer', () => {
  const input = Buffer.from('.\r\n..two\r\n.x\r\nmid.dle\r\n.\r\nlast line without CRLF');
  const expected = '..\r\n...two\r\n..x\r\nmid.dle\r\n..\r\nlast line without CRLF\r\n.\r\n';
  for (const sizes of [[1], [2], [3, 1], [1000]]) {
    it(`stuffs across chunk edges (pieces ${sizes.join(',')})`, () => {
      const s = new DotStuffer();
      const out = Buffer.concat([...split(input, sizes).map((c) => s.stuff(c)), s.end()]).toString();
      assert.equal(out, expected);
    });
  }
  it('ends an empty message and a CRLF-terminated one with just the dot', () => {
    assert.equal(new DotStuffer().end().toString(), '.\r\n');
    const s = new DotStuffer();
    s.stuff(Buffer.from('a\r'));
    s.stuff(Buffer.from('\n'));
    assert.equal(s.end().toString(), '.\r\n');
  });
});

describe('SmtpClient against Postfix smtp-sink', () => {
  let sink: Sink;
  let plain: Sink; // no DSN, no 8BITMIME
  before(async () => {
    [sink, plain] = await Promise.all([startSink(), startSink(['-N', '-8'])]);
  });
  after(async () => {
    await Promise.all([sink.stop(), plain.stop()]);
  });

  it('delivers a message byte for byte, dot-stuffed on the wire and unstuffed by the sink', async () => {
    const msg = Buffer.from('Subject: dots\r\n\r\n.\r\n..two\r\n.x\r\nmid.dle\r\n.\r\n\r\nend without CRLF');
    const c = client(sink.port, { localAddress: '127.0.0.2' });
    assert.equal(await deliver(c, split(msg, [7, 1, 3])), 250);
    const [dump] = await sink.next(1);
    assert.match(dump, /^X-Client-Addr: 127\.0\.0\.2$/m, 'bound to the configured local address');
    const body = dumpedMessage(dump);
    // smtp-sink writes LF line ends and one empty line after the message.
    assert.equal(body, msg.toString().replace(/\r\n/g, '\n') + '\n\n');
  });

  it('reports capabilities and passes MAIL/RCPT parameters only where advertised', async () => {
    const params = { size: 1234, body: '8BITMIME' as const, smtputf8: true, ret: 'HDRS' as const, envid: 'ENV+2B1' };
    const rcptParams = { notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;b@b.example' };
    for (const [peer, mailArgs, rcptArgs] of [
      [sink, '<a@a.example> BODY=8BITMIME RET=HDRS ENVID=ENV+2B1', '<b@b.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@b.example'],
      [plain, '<a@a.example>', '<b@b.example>'],
    ] as const) {
      const c = client(peer.port);
      assert.equal((await c.open()).code, 250);
      assert.equal(c.capabilities.keywords.has('DSN'), peer === sink);
      assert.equal((await c.mail('a@a.example', params)).code, 250);
      assert.equal((await c.rcpt('b@b.example', rcptParams)).code, 250);
      assert.equal((await c.data([Buffer.from('Subject: p\r\n\r\nx\r\n')])).code, 250);
      await c.quit();
      const [dump] = await peer.next(1);
      assert.match(dump, new RegExp(`^X-Mail-Args: ${mailArgs.replace(/\+/g, '\\+')}$`, 'm'));
      assert.match(dump, new RegExp(`^X-Rcpt-Args: ${rcptArgs}$`, 'm'));
    }
  });

  it('passes 4xx and 5xx replies through exactly as sent', async () => {
    const faulty = await startSink(['-r', 'MAIL', '-f', 'RCPT']);
    try {
      const c = client(faulty.port);
      assert.equal((await c.open()).code, 250);
      assert.deepEqual(await c.mail('a@a.example'), { code: 450, enhanced: '4.3.0', lines: ['4.3.0 Error: command failed'] });
      assert.deepEqual(await c.rcpt('b@b.example'), { code: 500, enhanced: '5.3.0', lines: ['5.3.0 Error: command failed'] });
      await c.quit();
    } finally {
      await faulty.stop();
    }
  });

  it('returns the 5xx for the final dot, and a 421 the server sends before hanging up', async () => {
    const faulty = await startSink(['-f', '.', '-Q', 'RSET']);
    try {
      const c = client(faulty.port);
      assert.equal(await deliver(c, [Buffer.from('x\r\n')]), 500);
      const d = client(faulty.port);
      assert.equal((await d.open()).code, 250);
      const r = await d.rset();
      assert.equal(r.code, 421);
      assert.equal(r.local, undefined, 'the server sent this 421');
      assert.equal(d.usable, false);
      assert.equal((await d.mail('a@a.example')).code, 421);
    } finally {
      await faulty.stop();
    }
  });

  it('returns the 550 a server sends before the end of data, or a 421 if its reset wins', async () => {
    const aborting = await startSink(['-A', '0']);
    try {
      const c = client(aborting.port);
      assert.equal((await c.open()).code, 250);
      await c.mail('a@a.example');
      await c.rcpt('b@b.example');
      const start = Date.now();
      const r = await c.data(Array(32).fill(Buffer.alloc(1 << 20, 'x\r\n')));
      // smtp-sink closes with our data unread, so its kernel sends a reset that can overtake the
      // 550 (a TCP race no client can win): either way the result is prompt and not an acceptance.
      assert.ok(r.code === 550 ? r.local === undefined : r.code === 421 && r.local, JSON.stringify(r));
      assert.ok(Date.now() - start < 1000);
      assert.equal(c.usable, false);
    } finally {
      await aborting.stop();
    }
  });

  it('aborts without the final dot when the message source fails (nothing half-sent is delivered)', async () => {
    const c = client(sink.port);
    assert.equal((await c.open()).code, 250);
    await c.mail('a@a.example');
    await c.rcpt('b@b.example');
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.from('Subject: half\r\n\r\nfirst part\r\n');
      throw new Error('encryption failed');
    }
    const r = await c.data(failing());
    assert.deepEqual(r, { code: 451, enhanced: '4.3.0', lines: ['4.3.0 cstp could not read the message: encryption failed'], local: true });
    assert.equal(c.usable, false);
    await new Promise((res) => setTimeout(res, 100));
    assert.deepEqual(sink.unseen(), [], 'smtp-sink keeps no dump of an aborted transaction');
  });

  it('refuses to send a command argument carrying CR/LF (command injection)', async () => {
    const c = client(sink.port);
    assert.equal((await c.open()).code, 250);
    await assert.rejects(c.mail('a@a.example>\r\nRCPT TO:<x@evil.example'), RangeError);
    await assert.rejects(c.mail('a@a.example', { envid: 'a b' }), RangeError);
    assert.equal((await c.mail('a@a.example')).code, 250, 'the session is still in step');
    await c.quit();
  });

  it("falls back to HELO when EHLO is refused", async () => {
    const old = await startSink(['-e']);
    try {
      const c = client(old.port);
      const hello = await c.open();
      assert.equal(hello.code, 250);
      assert.equal(c.capabilities.keywords.size, 0);
      assert.equal((await c.mail('a@a.example', { body: '8BITMIME' })).code, 250);
      await c.quit();
    } finally {
      await old.stop();
    }
  });

  it("refuses a server without STARTTLS under policy 'required', before any MAIL", async () => {
    const c = client(sink.port, { tls: { policy: 'required' } });
    const r = await c.open();
    assert.equal(r.code, 421);
    assert.equal(r.enhanced, '4.7.0');
    assert.match(r.lines[0], /does not offer STARTTLS/);
    assert.equal((await c.mail('a@a.example')).code, 421);
    assert.deepEqual(sink.unseen(), []);
  });

  it('gives 421 4.4.1 at once for an unreachable destination', async () => {
    const port = await freePort(); // closed again: nothing listens there
    const start = Date.now();
    const r = await client(port).open();
    assert.equal(r.code, 421);
    assert.equal(r.enhanced, '4.4.1');
    assert.match(r.lines[0], new RegExp(`127\\.0\\.0\\.1:${port} unreachable: ECONNREFUSED`));
    assert.equal(r.local, true);
    assert.ok(Date.now() - start < 1000);
  });
});

describe('SmtpClient against scripted socket peers (faults smtp-sink cannot make)', () => {
  const servers: ScriptedServer[] = [];
  const serve = async (script: (conn: ScriptedConnection) => Promise<void> | void): Promise<number> => {
    const s = await scriptedServer(script);
    servers.push(s);
    return s.port;
  };
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  /** Greeting and EHLO, then hands over to `rest`. */
  const esmtp = (ehlo: string, rest: (conn: ScriptedConnection) => Promise<void> | void = () => undefined) =>
    async (conn: ScriptedConnection) => {
      conn.send('220 scripted ESMTP\r\n');
      await conn.line();
      conn.send(ehlo);
      await rest(conn);
    };
  const accepting = async (conn: ScriptedConnection): Promise<void> => {
    for (;;) {
      const line = await conn.line();
      if (line === 'DATA') {
        conn.send('354 go\r\n');
        while ((await conn.line()) !== '.');
        conn.send('250 2.0.0 queued\r\n');
      } else if (line === 'QUIT') {
        conn.send('221 bye\r\n');
        conn.socket.end();
        return;
      } else conn.send('250 2.1.0 ok\r\n');
    }
  };

  async function timesOut(port: number, step: (c: SmtpClient) => Promise<{ code: number; lines: string[] }>, what: RegExp): Promise<void> {
    const c = client(port);
    const start = Date.now();
    const r = await step(c);
    const elapsed = Date.now() - start;
    assert.equal(r.code, 421);
    assert.match(r.lines[0], /^4\.4\.2 127\.0\.0\.1:\d+ timed out waiting for /);
    assert.match(r.lines[0], what);
    assert.ok(elapsed >= 250 && elapsed < 1500, `timed out after ${elapsed} ms`);
    assert.equal(c.usable, false);
  }

  it('times out waiting for the greeting (accept, then silence)', async () => {
    const port = await serve(() => undefined);
    await timesOut(port, (c) => c.open(), /greeting/);
  });

  /** Accepts MAIL and RCPT and starts DATA, then leaves the rest to the test. */
  const untilData = async (conn: ScriptedConnection): Promise<void> => {
    await conn.line();
    conn.send('250 ok\r\n');
    await conn.line();
    conn.send('250 ok\r\n');
    await conn.line();
    conn.send('354 go\r\n');
  };

  it('times out waiting for a command reply', async () => {
    const port = await serve(esmtp('250 ok\r\n', async (conn) => void (await conn.line())));
    await timesOut(port, async (c) => (await c.open(), c.mail('a@a.example')), /reply to MAIL/);
  });

  it('times out waiting for the reply to the final dot', async () => {
    const port = await serve(esmtp('250 ok\r\n', untilData));
    await timesOut(
      port,
      async (c) => (await c.open(), await c.mail('a@a.example'), await c.rcpt('b@b.example'), c.data([Buffer.from('x\r\n')])),
      /reply to end of data/,
    );
  });

  it('times out on a peer that stops reading message data', async () => {
    const port = await serve(
      esmtp('250 ok\r\n', async (conn) => {
        await untilData(conn);
        conn.socket.pause(); // slow reader: socket buffers fill up
      }),
    );
    const big = Buffer.alloc(1 << 20, 'a\r\n');
    await timesOut(
      port,
      async (c) => (await c.open(), await c.mail('a@a.example'), await c.rcpt('b@b.example'), c.data(Array(64).fill(big))),
      /take message data/,
    );
  });

  it('reports a connection cut in the middle of DATA', async () => {
    const port = await serve(
      esmtp('250 ok\r\n', async (conn) => {
        for (let i = 0; i < 2; i++) (await conn.line(), conn.send('250 ok\r\n'));
        await conn.line();
        conn.send('354 go\r\n');
        await conn.line();
        conn.socket.destroy();
      }),
    );
    const c = client(port);
    await c.open();
    await c.mail('a@a.example');
    await c.rcpt('b@b.example');
    async function* slow(): AsyncGenerator<Buffer> {
      yield Buffer.from('line 1\r\n');
      await new Promise((r) => setTimeout(r, 50));
      yield Buffer.from('line 2\r\n');
    }
    const r = await c.data(slow());
    assert.equal(r.code, 421);
    assert.match(r.lines[0], /^4\.4\.2 .* (closed the connection|connection lost) during /);
  });

  it('refuses a garbage reply with a clear error', async () => {
    const port = await serve((conn) => conn.send('HTTP/1.1 400 Bad Request\r\n'));
    const r = await client(port).open();
    assert.equal(r.code, 421);
    assert.match(r.lines[0], /^4\.5\.0 127\.0\.0\.1:\d+ sent an invalid reply during greeting: malformed reply line "HTTP/);
  });

  it('passes a 421 greeting through', async () => {
    const port = await serve((conn) => void (conn.send('421 4.3.2 too busy\r\n'), conn.socket.end()));
    const r = await client(port).open();
    assert.deepEqual(r, { code: 421, enhanced: '4.3.2', lines: ['4.3.2 too busy'] });
  });

  it('reads an EHLO reply that arrives one byte per packet; passes SIZE, SMTPUTF8 and BODY where advertised', async () => {
    const ehlo = '250-scripted\r\n250-SIZE 5000\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n';
    const lines: string[] = [];
    const port = await serve(async (conn) => {
      conn.send('220 x\r\n');
      await conn.line();
      for (const ch of ehlo) {
        conn.send(ch);
        await new Promise((r) => setImmediate(r));
      }
      lines.push(await conn.line());
      conn.send('250 ok\r\n');
      await accepting(conn);
    });
    const c = client(port);
    assert.equal((await c.open()).code, 250);
    assert.equal(c.capabilities.size, 5000);
    assert.deepEqual([...c.capabilities.keywords.keys()], ['SIZE', 'SMTPUTF8', '8BITMIME']);
    const params = { size: 1234, body: '8BITMIME' as const, smtputf8: true, ret: 'FULL' as const };
    assert.equal((await c.mail('jörg@a.example', params)).code, 250);
    assert.deepEqual(lines, ['MAIL FROM:<jörg@a.example> SIZE=1234 BODY=8BITMIME SMTPUTF8']);
    await c.quit();
  });

  describe('STARTTLS', () => {
    const key = pkiRead('gw-b-rsa.key');
    const cert = pkiRead('gw-b-rsa.crt');
    /** A scripted TLS-capable peer; records the commands seen after the upgrade. */
    function tlsPeer(seen: string[], after220 = '', k = key, c = cert): (conn: ScriptedConnection) => Promise<void> {
      return esmtp('250-scripted\r\n250-STARTTLS\r\n250 8BITMIME\r\n', async (conn) => {
        assert.equal(await conn.line(), 'STARTTLS');
        conn.send('220 2.0.0 go ahead\r\n' + after220);
        const secure = upgradeToTls(conn, k, c);
        const read = secure.line;
        secure.line = async () => {
          const l = await read();
          seen.push(l);
          return l;
        };
        await secure.line();
        secure.send('250-scripted\r\n250 8BITMIME\r\n');
        await accepting(secure);
      });
    }

    it("upgrades (policy 'required' satisfied), says EHLO again, delivers over TLS and reports the TLS state", async () => {
      const seen: string[] = [];
      const port = await serve(tlsPeer(seen));
      const c = client(port, { tls: { policy: 'required' } });
      assert.equal((await c.open()).code, 250);
      assert.equal(c.tls?.protocol, 'TLSv1.3');
      assert.equal(c.tls?.authorized, false);
      assert.ok(c.tls?.cipher);
      assert.equal(c.capabilities.keywords.has('STARTTLS'), false, 'capabilities are from the EHLO after TLS');
      assert.equal(await transact(c, [Buffer.from('secret\r\n')]), 250);
      assert.deepEqual(seen.slice(0, 4), ['EHLO gw.test', 'MAIL FROM:<a@a.example>', 'RCPT TO:<b@b.example>', 'DATA']);
    });

    it("fails the handshake under 'verify' for an untrusted certificate, without falling back to plaintext", async () => {
      const seen: string[] = [];
      const port = await serve(tlsPeer(seen));
      const c = client(port, { tls: { verify: 'verify', servername: 'mx.b.example' } });
      const r = await c.open();
      assert.equal(r.code, 421);
      assert.match(r.lines[0], /^4\.7\.0 .* TLS handshake failed/);
      assert.equal(c.usable, false);
      assert.deepEqual(seen, []);
    });

    it("verifies chain and name under 'verify' with a trusted certificate for the servername", async () => {
      const dir = mkdtempSync(join(tmpdir(), 'cstp-tls-'));
      try {
        execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=mx.b.example',
          '-addext', 'subjectAltName=DNS:mx.b.example', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' });
        const mxKey = readFileSync(join(dir, 'k.pem'));
        const mxCert = readFileSync(join(dir, 'c.pem'));
        const port = await serve(tlsPeer([], '', mxKey, mxCert));
        const c = client(port, { tls: { verify: 'verify', servername: 'mx.b.example', ca: mxCert } });
        assert.equal((await c.open()).code, 250);
        assert.equal(c.tls?.authorized, true);
        await c.quit();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('refuses replies smuggled after the STARTTLS 220 (response injection)', async () => {
      const port = await serve(tlsPeer([], '250 injected\r\n'));
      const r = await client(port).open();
      assert.equal(r.code, 421);
      assert.match(r.lines[0], /sent data after its STARTTLS reply/);
    });

    it("does not use STARTTLS under policy 'off'", async () => {
      const port = await serve(esmtp('250-scripted\r\n250 STARTTLS\r\n', accepting));
      const c = client(port, { tls: { policy: 'off' } });
      assert.equal(await deliver(c, [Buffer.from('x\r\n')]), 250);
      assert.equal(c.tls, undefined);
    });
  });
});
