/** The KeyStore adapter: what planMessage sees of a real store. */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { planMessage } from '../../src/policy/plan';
import { heldKeys, storeLookups } from '../../src/policy/store-lookups';
import { DEFAULT_CAPABILITIES } from '../../src/smime/cms/signed-data';
import { KeyStore } from '../../src/store/key-store';
import { fps, intelConfig, NOW } from './fixtures';
import { paperCert, paperKey } from './paper-pki';

const dir = mkdtempSync(join(tmpdir(), 'cstp-policy-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** intel's store: its own identity, Julia's key, amd's gateway certificate and capabilities. */
function intelStore(): KeyStore {
  const store = KeyStore.open({ path: join(dir, 'intel'), passphrase: 'pass' });
  store.putGatewayIdentity('intel', { key: paperKey('gw-intel'), cert: paperCert('gw-intel'), chain: [] });
  store.putUserKey({ key: paperKey('julia'), cert: paperCert('julia'), chain: [] });
  store.addCertificate(paperCert('gw-amd'), 'gateway', ['amd']);
  store.setCapabilities('cstpbox@amd', DEFAULT_CAPABILITIES);
  return store;
}

test('storeLookups maps the store: certificates by recipient, signing identities, learned capabilities', async () => {
  const store = intelStore();
  try {
    const lookups = storeLookups(store);
    assert.deepEqual(fps(lookups.recipientCertificates('juro@AMD').gateway), fps([paperCert('gw-amd')]));
    assert.equal(lookups.userSigningCertificate('julia@intel')?.fingerprint, paperCert('julia').fingerprint);
    assert.equal(lookups.gatewaySigningCertificate('intel')?.fingerprint, paperCert('gw-intel').fingerprint);
    assert.equal(lookups.userSigningCertificate('juro@intel'), undefined);
    assert.ok(lookups.capabilities('cstpbox@amd')?.equals(DEFAULT_CAPABILITIES));

    // Julia replies to juro@amd: signed with her own key, and amd's gateway gets GCM from its capabilities.
    const plan = planMessage({
      clientIp: '10.2.0.9', sender: 'julia@intel', recipients: ['juro@amd'], message: { encrypted: false, signed: false }, now: NOW,
    }, intelConfig(), lookups);
    const t = plan.deliveries[0].transformation;
    assert.equal(t.kind, 'encrypt');
    if (t.kind !== 'encrypt') return;
    assert.deepEqual([t.signer?.kind, t.signer?.owner], ['user', 'julia@intel']);
    assert.deepEqual(t.envelope.options, { cipher: 'aes-256-gcm', rsaKeyTransport: 'rsa-oaep' });
  } finally {
    await store.close();
  }
});

test('heldKeys: the gateway identity of each recipient domain once, and each recipient\'s own key', async () => {
  const store = intelStore();
  try {
    const keys = heldKeys(store, ['juro@intel', 'julia@intel', 'x@elsewhere']);
    assert.deepEqual(keys.map((k) => [k.holder, k.covers, k.cert.fingerprint]), [
      ['gateway', ['intel'], paperCert('gw-intel').fingerprint],
      ['user', ['julia@intel'], paperCert('julia').fingerprint],
    ]);
  } finally {
    await store.close();
  }
});
