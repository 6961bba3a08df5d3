import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { captureLog, decision, logger, setLogLevel, type TransactionFacts } from '../src/log';

/** Runs fn with the logger writing into an array instead of stdout; the raw lines. */
function raw(fn: () => void): string[] {
  const lines: string[] = [];
  const restore = captureLog((line) => lines.push(line));
  try {
    fn();
  } finally {
    restore();
  }
  return lines;
}

const capture = (fn: () => void): Record<string, unknown>[] => raw(fn).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('logger', () => {
  it('writes one JSON line per entry, line breaks in a message escaped', () => {
    const lines = raw(() => logger.log('warn', 'two\nlines', { uuid: 'U1' }));
    assert.equal(lines.length, 1);
    assert.match(lines[0], /^\{[^\n]*\}\n$/);
    const { timestamp, ...rest } = JSON.parse(lines[0]) as Record<string, unknown>;
    assert.deepEqual(rest, { level: 'warn', message: 'two\nlines', uuid: 'U1' });
    assert.ok(!Number.isNaN(Date.parse(String(timestamp))));
  });

  it('leaves out entries below the level set, and the level reads back', () => {
    try {
      setLogLevel('warn');
      assert.equal(logger.level, 'warn');
      const lines = capture(() => {
        logger.log('error', 'e');
        logger.log('warn', 'w');
        logger.info('i');
        logger.log('debug', 'd');
      });
      assert.deepEqual(lines.map((l) => l.message), ['e', 'w']);
      setLogLevel('debug');
      assert.equal(capture(() => logger.log('debug', 'd')).length, 1);
    } finally {
      setLogLevel('info');
    }
  });
});

const facts: TransactionFacts = {
  uuid: 'A1B2C3.1',
  direction: 'outbound',
  client: { ip: '127.0.0.1', port: 40000, helo: 'mail.amd.example', tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', verified: false } },
  destination: { host: '192.0.2.25', port: 25, tls: null },
  sender: 'juro@amd.example',
  recipients: ['juro@intel.example', 'fedor@mulholland.example'],
  deliveries: [
    {
      recipients: ['juro@intel.example'],
      action: 'sign+encrypt',
      algorithm: 'aes-256-gcm/rsa-oaep',
      certificates: ['ab'.repeat(32)],
      route: 'same-destination',
      reply: { code: 250, text: 'queued' },
      durationMs: 42,
    },
  ],
};

describe('decision log line', () => {
  it('is one JSON line with the transaction facts', () => {
    const [line] = capture(() => decision(facts));
    assert.equal(line.message, 'decision');
    assert.equal(line.level, 'info');
    assert.equal(line.uuid, 'A1B2C3.1');
    assert.equal(line.direction, 'outbound');
    assert.deepEqual(line.recipients, facts.recipients);
    assert.deepEqual(line.client, { ip: '127.0.0.1', port: 40000, helo: 'mail.amd.example', tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', verified: false } });
    assert.deepEqual(line.destination, { host: '192.0.2.25', port: 25, tls: null });
    assert.deepEqual((line.deliveries as unknown[])[0], {
      recipients: ['juro@intel.example'],
      action: 'sign+encrypt',
      algorithm: 'aes-256-gcm/rsa-oaep',
      certificates: ['ab'.repeat(32)],
      route: 'same-destination',
      reply: { code: 250, text: 'queued' },
      durationMs: 42,
    });
    assert.equal(typeof line.timestamp, 'string');
  });

  it('copies only the fields it names, so secrets passed along never reach the log', () => {
    const leaky = {
      ...facts,
      passphrase: 'hunter2',
      client: { ...facts.client, password: 'hunter2', tls: { ...facts.client.tls, key: 'hunter2' } },
      deliveries: [{ ...facts.deliveries[0], privateKey: '-----BEGIN PRIVATE KEY-----', body: 'Subject: secret' }],
    } as unknown as TransactionFacts;
    const [line] = capture(() => decision(leaky));
    assert.doesNotMatch(JSON.stringify(line), /hunter2|PRIVATE KEY|secret/);
  });
});
