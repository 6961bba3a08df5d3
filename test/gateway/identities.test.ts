import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ensureGatewayIdentities } from '../../src/gateway/identities';
import { KeyStore } from '../../src/store/key-store';

const dir = mkdtempSync(join(tmpdir(), 'cstp-identities-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('first start creates a demo identity when no local domain is configured, once', async () => {
  const store = KeyStore.open({ path: join(dir, 'demo'), passphrase: 'p' });
  try {
    assert.deepEqual(ensureGatewayIdentities(store, []), ['localhost']);
    const id = store.gatewayIdentity('localhost');
    assert.ok(id && id.cert.hasEmail('domain-signing-authority@localhost'));
    assert.deepEqual(ensureGatewayIdentities(store, []), [], 'a second start keeps the existing key');
    assert.equal(store.gatewayIdentity('localhost')?.cert.fingerprint, id.cert.fingerprint);
  } finally {
    await store.close();
  }
});

test('configured local domains each get an identity; wildcards and existing ones are left alone', async () => {
  const store = KeyStore.open({ path: join(dir, 'domains'), passphrase: 'p' });
  try {
    assert.deepEqual(ensureGatewayIdentities(store, ['amd.example', '*.amd.example']), ['amd.example']);
    assert.deepEqual(ensureGatewayIdentities(store, ['amd.example', 'intel.example']), ['intel.example']);
    assert.equal(store.gatewayIdentity('localhost'), undefined, 'no demo identity once domains are configured');
  } finally {
    await store.close();
  }
});
