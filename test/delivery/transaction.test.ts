import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RetryQueue } from '../../src/delivery/retry-queue';
import { InMemoryRouteMemory, routeMemoryOf, type ExtraRoute } from '../../src/delivery/route-memory';
import { UpstreamTransaction, type Endpoint, type UpstreamOptions } from '../../src/delivery/transaction';
import { acceptAll, freePort, scriptedServer, startSink, type ScriptedConnection, type ScriptedServer, type Sink } from './peers';

const FAST = { connect: 1000, greeting: 300, command: 300, dataBlock: 300, finalDot: 300 };
const at = (port: number): Endpoint => ({ host: '127.0.0.1', port });
const msg = (text: string) => () => [Buffer.from(`Subject: ${text}\r\n\r\n${text}\r\n`)];

function upstream(destination: Endpoint, extra: Partial<UpstreamOptions> = {}): UpstreamTransaction {
  return new UpstreamTransaction({ destination, routes: new InMemoryRouteMemory(), heloName: 'gw.test', timeouts: FAST, ...extra });
}

/** MAIL and RCPTs passed through, every reply asserted positive. */
async function envelope(up: UpstreamTransaction, rcpts: string[]): Promise<void> {
  assert.equal((await up.mailFrom('a@a.example', { ret: 'HDRS' })).code, 250);
  for (const r of rcpts) assert.equal((await up.rcptTo(r, { notify: ['FAILURE'] })).code, 250);
}

const rcptArgs = (dump: string): string[] => [...dump.matchAll(/^X-Rcpt-Args: (.*)$/gm)].map((m) => m[1]);

describe('UpstreamTransaction', () => {
  let sink: Sink;
  let relay: Sink;
  const servers: ScriptedServer[] = [];
  const serve = async (script: (conn: ScriptedConnection, index: number) => Promise<void> | void): Promise<ScriptedServer> => {
    const s = await scriptedServer(script);
    servers.push(s);
    return s;
  };
  const dirs: string[] = [];
  /** A retry queue on a fresh spool; its sender is never called in these tests. */
  const spool = (): RetryQueue & { dir: string } => {
    const dir = mkdtempSync(join(tmpdir(), 'cstp-spool-'));
    dirs.push(dir);
    const q = new RetryQueue({ dir, reportingMta: 'gw.test', bounceRoute: at(sink.port), send: async () => [] });
    return Object.assign(q, { dir });
  };
  before(async () => {
    [sink, relay] = await Promise.all([startSink(), startSink()]);
  });
  after(async () => {
    await Promise.all([sink.stop(), relay.stop(), ...servers.map((s) => s.close())]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('passes MAIL and RCPT replies through and delivers one copy to every recipient', async () => {
    const up = upstream(at(sink.port));
    await envelope(up, ['b1@b.example', 'b2@b.example']);
    const out = await up.deliver([{ recipients: ['b1@b.example', 'b2@b.example'], message: msg('one') }]);
    assert.equal(out.status, 'accepted');
    assert.equal(out.reply.code, 250);
    assert.deepEqual(out.failed, []);
    const [dump] = await sink.next(1);
    assert.deepEqual(rcptArgs(dump), ['<b1@b.example> NOTIFY=FAILURE', '<b2@b.example> NOTIFY=FAILURE']);
    assert.match(dump, /^X-Mail-Args: <a@a.example> RET=HDRS$/m);
  });

  it('splits: the first copy on the primary connection, the second over a concurrent second connection', async () => {
    const routes = new InMemoryRouteMemory();
    const up = upstream(at(sink.port), { routes, relay: at(relay.port) });
    await envelope(up, ['b1@b.example', 'b2@b.example']);
    const out = await up.deliver([
      { recipients: ['b1@b.example'], message: msg('encrypted') },
      { recipients: ['b2@b.example'], message: msg('plain') },
    ]);
    assert.equal(out.status, 'accepted');
    assert.deepEqual(out.deliveries.map((d) => d.route), ['primary', 'second-connection']);
    const dumps = await sink.next(2);
    const byRcpt = new Map(dumps.map((d) => [rcptArgs(d).join(' '), d]));
    assert.match(byRcpt.get('<b1@b.example> NOTIFY=FAILURE')!, /\nencrypted\n/);
    assert.match(byRcpt.get('<b2@b.example> NOTIFY=FAILURE')!, /\nplain\n/);
    assert.equal(routes.get(up.destinationKey), 'second-connection');
    assert.deepEqual(relay.unseen(), []);
  });

  /** A destination that takes the first connection and refuses later ones in the given way. */
  const refusals: Record<string, (conn: ScriptedConnection) => Promise<void> | void> = {
    '421 at greeting': (conn) => void (conn.send('421 4.7.0 too many connections from you\r\n'), conn.socket.end()),
    '451 at MAIL': async (conn) => {
      conn.send('220 x\r\n');
      await conn.line();
      conn.send('250 x\r\n');
      await conn.line();
      conn.send('451 4.7.1 one connection at a time\r\n');
      await conn.line().catch(() => undefined);
      conn.socket.end();
    },
    'silence (greeting timeout)': () => undefined,
    'close at accept (connection limit)': (conn) => void conn.socket.destroy(),
  };
  /** A destination that refuses a connection while another one is open. */
  async function oneConnectionAtATime(refuse: (conn: ScriptedConnection) => Promise<void> | void) {
    let open = 0;
    const server = await serve((conn) => {
      open++;
      conn.socket.once('close', () => open--);
      return open === 1 ? acceptAll(conn) : refuse(conn);
    });
    const idle = async (): Promise<void> => {
      for (let i = 0; i < 200 && open > 0; i++) await new Promise((r) => setTimeout(r, 5));
    };
    return Object.assign(server, { idle });
  }

  for (const [how, refuse] of Object.entries(refusals)) {
    it(`uses the relay when the destination refuses the second connection (${how}), and remembers it`, async () => {
      const dest = await oneConnectionAtATime(refuse);
      const routes = new InMemoryRouteMemory();
      const start = Date.now();
      const up = upstream(at(dest.port), { routes, relay: at(relay.port) });
      await envelope(up, ['b1@b.example', 'b2@b.example']);
      const out = await up.deliver([
        { recipients: ['b1@b.example'], message: msg('first') },
        { recipients: ['b2@b.example'], message: msg('second') },
      ]);
      assert.ok(Date.now() - start < 2000);
      assert.equal(out.status, 'accepted');
      assert.deepEqual(out.deliveries[1].attempts.map((a) => a.route), ['second-connection', 'relay']);
      assert.equal(out.deliveries[1].route, 'relay');
      const [dump] = await relay.next(1);
      assert.deepEqual(rcptArgs(dump), ['<b2@b.example> NOTIFY=FAILURE']);
      assert.match(dump, /\nsecond\n/);
      assert.equal(routes.get(up.destinationKey), 'relay');

      // Next time the relay comes first: the destination sees no second connection.
      await dest.idle();
      const accepted = dest.accepted;
      const again = upstream(at(dest.port), { routes, relay: at(relay.port) });
      await envelope(again, ['b1@b.example', 'b2@b.example']);
      const out2 = await again.deliver([
        { recipients: ['b1@b.example'], message: msg('first') },
        { recipients: ['b2@b.example'], message: msg('second') },
      ]);
      assert.equal(out2.status, 'accepted');
      assert.deepEqual(out2.deliveries[1].attempts.map((a) => a.route), ['relay']);
      assert.equal(dest.accepted, accepted + 1);
      assert.equal((await relay.next(1)).length, 1);
    });
  }

  it('uses the relay when a real MTA at its connection limit leaves the second connection without greeting', async () => {
    const limited = await startSink(['-m', '1'], 1);
    try {
      const routes = new InMemoryRouteMemory();
      const up = upstream(at(limited.port), { routes, relay: at(relay.port) });
      await envelope(up, ['b1@b.example', 'b2@b.example']);
      const out = await up.deliver([
        { recipients: ['b1@b.example'], message: msg('first') },
        { recipients: ['b2@b.example'], message: msg('second') },
      ]);
      assert.equal(out.status, 'accepted');
      // Queued in the kernel's accept queue (no greeting) or, if that is full too, not connected at all.
      assert.match(out.deliveries[1].attempts[0].reply.lines[0], /timed out waiting for (greeting|connection)/);
      assert.equal(out.deliveries[1].route, 'relay');
      assert.equal(routes.get(up.destinationKey), 'relay');
      assert.match((await limited.next(1))[0], /\nfirst\n/);
      assert.match((await relay.next(1))[0], /\nsecond\n/);
    } finally {
      await limited.stop();
    }
  });

  it('reports a partial failure as partial: 250 to the client, the failed part returned for the retry queue', async () => {
    const dest = await serve((conn, index) => (index === 0 ? acceptAll(conn) : refusals['421 at greeting'](conn)));
    const deadRelay = await freePort();
    const up = upstream(at(dest.port), { relay: at(deadRelay) });
    await envelope(up, ['b1@b.example', 'b2@b.example', 'b3@b.example']);
    const deliveries = [
      { recipients: ['b1@b.example'], message: msg('first') },
      { recipients: ['b2@b.example', 'b3@b.example'], message: msg('second') },
    ];
    const out = await up.deliver(deliveries);
    assert.equal(out.status, 'partial');
    assert.equal(out.reply.code, 250);
    assert.deepEqual(
      out.failed.map((f) => [f.delivery, f.recipient, f.reply.code, f.permanent]),
      [
        [1, 'b2@b.example', 421, false],
        [1, 'b3@b.example', 421, false],
      ],
    );
    assert.match(out.failed[0].reply.lines[0], /^4\.4\.1 relay 127\.0\.0\.1:\d+ unreachable: ECONNREFUSED/);
    assert.deepEqual(out.deliveries[1].attempts.map((a) => [a.route, a.reply.code]), [
      ['second-connection', 421],
      ['relay', 421],
    ]);

    const q = spool();
    const [item] = await up.queueFailures(out, deliveries, q);
    assert.deepEqual(q.list(), [item]);
    assert.deepEqual(item.recipients, [
      { address: 'b2@b.example', params: { notify: ['FAILURE'] } },
      { address: 'b3@b.example', params: { notify: ['FAILURE'] } },
    ]);
    assert.deepEqual([item.from, item.mailParams, item.destination], ['a@a.example', { ret: 'HDRS' }, at(deadRelay)]);
    assert.equal(readFileSync(join(q.dir, `${item.id}.eml`), 'latin1'), 'Subject: second\r\n\r\nsecond\r\n');
  });

  it('bounces a permanent refusal on the second connection to the sender at once (partial, nothing queued for retry)', async () => {
    const dest = await serve(async (conn, index) => {
      if (index === 0) return acceptAll(conn);
      conn.send('220 x\r\n');
      for (const reply of ['250 x', '250 ok', '550 5.1.1 no such user']) (await conn.line(), conn.send(reply + '\r\n'));
      await acceptAll(conn, false);
    });
    const up = upstream(at(dest.port));
    await envelope(up, ['b1@b.example', 'b2@b.example']);
    const deliveries = [
      { recipients: ['b1@b.example'], message: msg('first') },
      { recipients: ['b2@b.example'], message: msg('second') },
    ];
    const out = await up.deliver(deliveries);
    assert.equal(out.status, 'partial');
    assert.deepEqual(out.failed.map((f) => [f.recipient, f.reply.code, f.permanent]), [['b2@b.example', 550, true]]);
    const q = spool();
    assert.deepEqual(await up.queueFailures(out, deliveries, q), []);
    const [dsn] = q.list();
    assert.deepEqual([dsn.from, dsn.recipients.map((r) => r.address)], ['', ['a@a.example']]);
    assert.match(readFileSync(join(q.dir, `${dsn.id}.eml`), 'latin1'), /^Status: 5\.1\.1\r$/m);
  });

  it('reconnects once when the destination dropped the idle primary connection during the upload', async () => {
    const dest = await serve(async (conn, index) => {
      if (index > 0) return acceptAll(conn);
      conn.send('220 x\r\n');
      for (let i = 0; i < 3; i++) (await conn.line(), conn.send('250 ok\r\n')); // EHLO, MAIL, RCPT
      conn.send('421 4.4.2 scripted: timeout exceeded\r\n'); // as Postfix smtpd_timeout does
      conn.socket.end();
    });
    const up = upstream(at(dest.port));
    await envelope(up, ['b1@b.example']);
    await new Promise((r) => setTimeout(r, 50));
    const out = await up.deliver([{ recipients: ['b1@b.example'], message: msg('x') }]);
    assert.equal(out.status, 'accepted');
    assert.deepEqual(out.reply.lines, ['2.0.0 queued as SCRIPTED']);
    assert.equal(dest.accepted, 2);
  });

  it('passes a 5xx through when nothing was accepted', async () => {
    const rejecting = await startSink(['-f', '.']);
    try {
      const up = upstream(at(rejecting.port));
      await envelope(up, ['b1@b.example']);
      const out = await up.deliver([{ recipients: ['b1@b.example'], message: msg('x') }]);
      assert.equal(out.status, 'failed');
      assert.deepEqual(out.reply, { code: 500, enhanced: '5.3.0', lines: ['5.3.0 Error: command failed'] });
      assert.deepEqual(out.failed.map((f) => f.permanent), [true]);
    } finally {
      await rejecting.stop();
    }
  });

  it('passes the destination reply for a refused RCPT through', async () => {
    const refusing = await startSink(['-f', 'RCPT']);
    try {
      const up = upstream(at(refusing.port));
      assert.equal((await up.mailFrom('a@a.example')).code, 250);
      assert.deepEqual(await up.rcptTo('b1@b.example'), { code: 500, enhanced: '5.3.0', lines: ['5.3.0 Error: command failed'] });
      up.close();
    } finally {
      await refusing.stop();
    }
  });

  it('gives 421 at MAIL at once when the destination is unreachable', async () => {
    const start = Date.now();
    const r = await upstream(at(await freePort())).mailFrom('a@a.example');
    assert.equal(r.code, 421);
    assert.equal(r.enhanced, '4.4.1');
    assert.ok(Date.now() - start < 1000);
  });

  it('gives 421 promptly when the destination hangs after the message', async () => {
    const dest = await serve(async (conn) => {
      conn.send('220 x\r\n');
      for (;;) {
        const line = await conn.line();
        if (line === 'DATA') return void conn.send('354 go\r\n');
        conn.send('250 ok\r\n');
      }
    });
    const up = upstream(at(dest.port));
    await envelope(up, ['b1@b.example']);
    const start = Date.now();
    const out = await up.deliver([{ recipients: ['b1@b.example'], message: msg('x') }]);
    assert.ok(Date.now() - start < 1000);
    assert.equal(out.status, 'failed');
    assert.equal(out.reply.code, 421);
    assert.match(out.reply.lines[0], /timed out waiting for reply to end of data/);
  });

  it('reads and writes routes through a store-shaped object', () => {
    const records = new Map<string, { route: ExtraRoute }>();
    const memory = routeMemoryOf({ route: (d) => records.get(d), setRoute: (d, route) => void records.set(d, { route }) });
    memory.set('192.0.2.1:25', 'relay');
    assert.equal(memory.get('192.0.2.1:25'), 'relay');
    assert.equal(memory.get('192.0.2.2:25'), undefined);
  });
});
