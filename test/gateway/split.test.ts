/**
 * Split delivery through the real gateway (liberal policy: an encrypted copy for juro@intel, the original for
 * fedor@mulholland over a second connection): a destination at its connection limit (smtp-sink -m 1, backlog 1)
 * makes the gateway use the relay and remember it in the store; with the relay down too, the client still gets
 * 250 (the encrypted copy was accepted) and the failed part waits in the on-disk retry queue.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyStore } from '../../src/store/key-store';
import { freePort, startSink, type Sink } from '../delivery/peers';
import { swaks } from './harness';
import { amdStore, PASS, startGateway, stop, type Running } from './paper-gateways';

const TIMEOUTS = 'connect_timeout = 1\ngreeting_timeout = 1\n';

describe('split delivery through the gateway', () => {
  let limited: Sink, limited2: Sink, relay: Sink;
  let viaRelay: Running | undefined, partial: Running | undefined;

  before(async () => {
    [limited, limited2, relay] = await Promise.all([startSink(['-m', '1'], 1), startSink(['-m', '1'], 1), startSink()]);
    const deadRelay = await freePort();
    [viaRelay, partial] = await Promise.all([
      startGateway(`[policy]\nlocal_domains = amd\nmixed_recipients = liberal\n[delivery]\nnext_hop = 127.0.0.1:${limited.port}\n` +
        `relay_host = 127.0.0.1:${relay.port}\n${TIMEOUTS}`, amdStore),
      startGateway(`[policy]\nlocal_domains = amd\nmixed_recipients = liberal\n[delivery]\nnext_hop = 127.0.0.1:${limited2.port}\n` +
        `relay_host = 127.0.0.1:${deadRelay}\n${TIMEOUTS}`, amdStore),
    ]);
  });

  after(async () => {
    await Promise.all([stop(viaRelay), stop(partial)]);
    await Promise.all([limited, limited2, relay].map((s) => s?.stop()));
  });

  it('second connection refused: the original goes via the relay, and the store remembers the relay', async () => {
    const r = await swaks(viaRelay!.port, ['--from', 'juro@amd', '--to', 'juro@intel,fedor@mulholland', '--body', 'split me']);
    assert.equal(r.code, 0, r.output);
    const [encrypted] = await limited.next(1);
    assert.match(encrypted ?? '', /X-Rcpt-Args: <juro@intel>[\s\S]*application\/pkcs7-mime/);
    const [plain] = await relay.next(1);
    assert.match(plain ?? '', /X-Rcpt-Args: <fedor@mulholland>[\s\S]*split me/);
    const store = KeyStore.open({ path: join(viaRelay!.dir, 'var', 'store'), passphrase: PASS, readOnly: true });
    try {
      assert.equal(store.route(`127.0.0.1:${limited.port}`)?.route, 'relay');
    } finally {
      await store.close();
    }
    const decision = viaRelay!.gw.stdout().split('\n').filter((l) => l.includes('"event":"decision"')).map((l) => JSON.parse(l));
    assert.equal(decision.length, 1);
    assert.deepEqual(decision[0].deliveries.map((d: { action: string; route: string }) => [d.action, d.route]), [
      ['sign+encrypt', 'same-destination'],
      ['unaltered', 'relay'],
    ]);
  });

  it('partial failure: 250 to the client, the failed part in the retry queue', async () => {
    const r = await swaks(partial!.port, ['--from', 'juro@amd', '--to', 'juro@intel,fedor@mulholland', '--body', 'half of it']);
    assert.equal(r.code, 0, r.output);
    assert.equal((await limited2.next(1)).length, 1);
    const spool = join(partial!.dir, 'var', 'queue');
    const items = readdirSync(spool).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(join(spool, f), 'utf8')));
    assert.equal(items.length, 1, JSON.stringify(items));
    assert.deepEqual(items[0].recipients.map((q: { address: string }) => q.address), ['fedor@mulholland']);
    assert.equal(items[0].from, 'juro@amd');
  });
});
