import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import winston from 'winston';
import { decision, logger, type TransactionFacts } from '../src/log';

/** Runs fn with the logger writing into an array instead of stdout. */
function capture(fn: () => void): Record<string, unknown>[] {
  const lines: string[] = [];
  const stream = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
  const transport = new winston.transports.Stream({ stream });
  const saved = logger.transports.slice();
  logger.clear().add(transport);
  try {
    fn();
  } finally {
    logger.clear();
    for (const t of saved) logger.add(t);
  }
  return lines.join('').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

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
