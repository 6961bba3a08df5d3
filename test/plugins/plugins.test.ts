/** The thin Haraka entry points, called as Haraka calls them (hooks with next and a connection). */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientFacts, codes, type Connection, type Plugin } from '../../plugins/haraka';
import { captureLog, logger } from '../../src/log';

type NextCall = [number | undefined, string | undefined];

function callHook(hook: (next: (code?: number, msg?: string) => void) => void): NextCall {
  let result: NextCall | undefined;
  hook((code, msg) => (result = [code, msg]));
  assert.ok(result, 'the hook called next()');
  return result;
}

function fakePlugin(registeredHooks: Record<string, unknown[]> = {}): Plugin {
  const noop = () => undefined;
  return {
    name: 'test',
    haraka_require: (m: string) => (m === 'plugins' ? { registered_hooks: registeredHooks } : assert.fail(m)),
    config: { get: (name: string) => assert.fail(name) },
    logdebug: noop, loginfo: noop, lognotice: noop, logwarn: noop, logerror: noop,
  };
}

function fakeConnection(ip: string): Connection & { logged: string[] } {
  const logged: string[] = [];
  const log = (...args: unknown[]) => void logged.push(args.filter((a) => typeof a === 'string').join(' '));
  return {
    uuid: 'U1', remote: { ip, port: 40000 }, local: { ip: '127.0.0.1', port: 2525 }, relaying: false, notes: {},
    hello: { host: null }, tls: { enabled: false, verified: false, cipher: {} },
    results: { add: () => undefined }, transaction: null, logged,
    logdebug: log, loginfo: log, lognotice: log, logwarn: log, logerror: log,
  };
}

describe('cstp-direction', () => {
  let dir: string;
  const saved = process.env.HARAKA;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cstp-plugins-'));
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'cstp.ini'), '[policy]\nlocal_networks = 10.0.0.0/8, fd00::/8\n');
    process.env.HARAKA = dir;
  });
  after(() => {
    process.env.HARAKA = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  it('marks clients in local_networks outbound and everyone else inbound', async () => {
    const plugin = await import('../../plugins/cstp-direction/index');
    plugin.register();
    for (const [ip, direction] of [['10.1.2.3', 'outbound'], ['::ffff:10.9.9.9', 'outbound'], ['fd00::25', 'outbound'], ['127.0.0.1', 'inbound'], ['192.0.2.1', 'inbound']]) {
      const connection = fakeConnection(ip);
      assert.deepEqual(callHook((next) => plugin.hook_connect_init.call(fakePlugin(), next, connection)), [undefined, undefined]);
      assert.equal(connection.notes.cstp_direction, direction, ip);
      assert.match(connection.logged[0], new RegExp(`^direction ${direction}`));
    }
  });
});

describe('cstp-no-delivery', () => {
  it('accepts recipients and answers DATA with 451 while nothing delivers', async () => {
    const plugin = await import('../../plugins/cstp-no-delivery/index');
    const connection = fakeConnection('127.0.0.1');
    assert.deepEqual(callHook((next) => plugin.hook_rcpt.call(fakePlugin(), next, connection)), [codes.ok, undefined]);
    assert.deepEqual(callHook((next) => plugin.hook_data.call(fakePlugin(), next, connection)), [codes.denysoft, 'cstp: delivery not configured']);
  });

  it('steps aside once a plugin registers the queue hook', async () => {
    const plugin = await import('../../plugins/cstp-no-delivery/index');
    const delivering = fakePlugin({ queue: [{ plugin: 'cstp-delivery' }] });
    const connection = fakeConnection('127.0.0.1');
    assert.deepEqual(callHook((next) => plugin.hook_rcpt.call(delivering, next, connection)), [undefined, undefined]);
    assert.deepEqual(callHook((next) => plugin.hook_data.call(delivering, next, connection)), [undefined, undefined]);
  });
});

describe('cstp-log', () => {
  /** Feeds items to hook_log with the logger writing into an array; returns the lines as objects. */
  async function captured(items: { level: string; data: string }[]): Promise<Record<string, unknown>[]> {
    const plugin = await import('../../plugins/cstp-log/index');
    const lines: string[] = [];
    const restore = captureLog((line) => lines.push(line));
    const level = logger.level;
    logger.level = 'debug';
    try {
      for (const item of items) assert.deepEqual(callHook((next) => plugin.hook_log(next, {}, item)), [codes.ok, undefined]);
    } finally {
      restore();
      logger.level = level;
    }
    return lines.join('').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  it('writes Haraka records as JSON lines and keeps bodies and credentials out', async () => {
    const lines = await captured([
      { level: 'NOTICE', data: JSON.stringify({ level: 'NOTICE', uuid: 'U1.1', origin: 'core', message: 'hello', extra: 1 }) },
      { level: 'DATA', data: 'Subject: a secret body line' },
      { level: 'PROTOCOL', data: JSON.stringify({ level: 'PROTOCOL', uuid: 'U1', origin: 'core', message: 'C: AUTH PLAIN AGp1cm8Ac2VjcmV0' }) },
      { level: 'INFO', data: 'loglevel: INFO' },
      { level: 'PROTOCOL', data: JSON.stringify({ level: 'PROTOCOL', uuid: 'U2', origin: 'core', message: 'S: 334 VXNlcm5hbWU6' }) },
      { level: 'PROTOCOL', data: JSON.stringify({ level: 'PROTOCOL', uuid: 'U2', origin: 'core', message: 'C: anVybw==' }) },
    ]);
    assert.deepEqual(
      lines.map(({ timestamp: _t, ...rest }) => rest),
      [
        { level: 'info', source: 'haraka', uuid: 'U1.1', origin: 'core', message: 'hello', extra: 1 },
        { level: 'debug', source: 'haraka', uuid: 'U1', origin: 'core', message: 'C: AUTH PLAIN <redacted>' },
        { level: 'info', source: 'haraka', message: 'loglevel: INFO' },
        { level: 'debug', source: 'haraka', uuid: 'U2', origin: 'core', message: 'S: 334 VXNlcm5hbWU6' },
        { level: 'debug', source: 'haraka', uuid: 'U2', origin: 'core', message: 'C: <redacted>' },
      ],
    );
  });
});

describe('clientFacts', () => {
  it('reports the client leg, plaintext as tls null', () => {
    const connection = fakeConnection('127.0.0.1');
    assert.deepEqual(clientFacts(connection), { ip: '127.0.0.1', port: 40000, helo: undefined, tls: null });
    connection.hello.host = 'mail.amd.example';
    connection.tls = { enabled: true, verified: false, cipher: { name: 'TLS_AES_256_GCM_SHA384', version: 'TLSv1.3' } };
    assert.deepEqual(clientFacts(connection), {
      ip: '127.0.0.1', port: 40000, helo: 'mail.amd.example',
      tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', verified: false },
    });
  });
});
