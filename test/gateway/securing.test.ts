/** src/gateway/securing: message facts, status header stripping, and a plan executed against a real store. */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { messageFacts, secureMessage } from '../../src/gateway/securing';
import { resolvePolicyConfig } from '../../src/policy/config';
import { encryptMessage, signMessage, unwrapMessage, verifyMessage } from '../../src/smime/message';
import { KeyStore } from '../../src/store/key-store';
import { paperCert, paperKey } from '../policy/paper-pki';

const dir = mkdtempSync(join(tmpdir(), 'cstp-securing-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const MESSAGE = Buffer.from(
  'From: juro@amd\r\nTo: juro@intel\r\nX-Cstp-Security: forged;\r\n  continued\r\nSubject: hi\r\n\r\nHello.\r\n',
);

test('amd outbound then intel inbound through real stores: encrypted, signed, decrypted, capabilities learned', async () => {
  const amd = KeyStore.open({ path: join(dir, 'amd'), passphrase: 'p' });
  const intel = KeyStore.open({ path: join(dir, 'intel'), passphrase: 'p' });
  try {
    amd.putGatewayIdentity('amd', { key: paperKey('gw-amd'), cert: paperCert('gw-amd'), chain: [] });
    amd.addCertificate(paperCert('gw-intel'), 'gateway', ['intel']);
    intel.putGatewayIdentity('intel', { key: paperKey('gw-intel'), cert: paperCert('gw-intel'), chain: [] });
    intel.addCertificate(paperCert('gw-amd'), 'gateway', ['amd']);
    assert.deepEqual(messageFacts(MESSAGE), { encrypted: false, signed: false });

    const out = secureMessage({ clientIp: '127.0.0.1', sender: 'juro@amd', recipients: ['juro@intel'], message: MESSAGE },
      resolvePolicyConfig({ localDomains: ['amd'] }), amd);
    assert.equal(out.deliveries.length, 1);
    assert.equal(out.deliveries[0].action, 'sign+encrypt');
    const wire = out.deliveries[0].message;
    assert.deepEqual(messageFacts(wire), { encrypted: true, signed: false });
    assert.ok(!wire.includes('Hello.'));

    const inbound = secureMessage({ clientIp: '192.0.2.1', sender: 'juro@amd', recipients: ['juro@intel'], message: wire },
      resolvePolicyConfig({ localDomains: ['intel'], localNetworks: ['10.0.0.0/8'] }), intel);
    const got = inbound.deliveries[0];
    assert.equal(got.action, 'decrypt:decrypted+verify:good-trusted');
    assert.ok(got.message.includes('Hello.'));
    assert.doesNotMatch(got.message.toString(), /forged/);
    assert.ok(intel.capabilities('cstpbox@amd'), 'capabilities of the verified domain signature stored');
    // The engine agrees that the plain delivery carries no S/MIME layer any more.
    assert.equal(unwrapMessage(got.message, { keys: [], trust: { anchors: [] } }).layers.length, 0);
  } finally {
    await amd.close();
    await intel.close();
  }
});

test('liberal with detached signatures: encrypted copy for intel, a multipart/signed original for the others', async () => {
  const amd = KeyStore.open({ path: join(dir, 'amd-detached'), passphrase: 'p' });
  try {
    amd.putGatewayIdentity('amd', { key: paperKey('gw-amd'), cert: paperCert('gw-amd'), chain: [] });
    amd.addCertificate(paperCert('gw-intel'), 'gateway', ['intel']);
    const config = resolvePolicyConfig({ localDomains: ['amd'], mixedRecipients: 'liberal', withoutCertificate: 'detached-signature' });
    const out = secureMessage({ clientIp: '127.0.0.1', sender: 'juro@amd', recipients: ['juro@intel', 'fedor@mulholland'], message: MESSAGE }, config, amd);
    assert.deepEqual(out.deliveries.map((d) => [d.action, d.plan.recipients]), [
      ['sign+encrypt', ['juro@intel']],
      ['detached-signature', ['fedor@mulholland']],
    ]);
    const signed = out.deliveries[1].message;
    assert.deepEqual(messageFacts(signed), { encrypted: false, signed: true });
    const verified = verifyMessage(signed, { anchors: [paperCert('gw-amd')], isDomainSigner: () => true });
    assert.equal(verified.verdict, 'good-trusted');
    assert.ok(verified.message.includes('Hello.'));
  } finally {
    await amd.close();
  }
});

test('requireEncryption without a certificate: a temporary failure and no delivery made', async () => {
  const amd = KeyStore.open({ path: join(dir, 'amd-required'), passphrase: 'p' });
  try {
    const config = resolvePolicyConfig({ localDomains: ['amd'], requireEncryption: ['mulholland'] });
    const out = secureMessage({ clientIp: '127.0.0.1', sender: 'juro@amd', recipients: ['fedor@mulholland'], message: MESSAGE }, config, amd);
    assert.equal(out.plan.temporaryFailure?.reply.code, 451);
    assert.deepEqual(out.deliveries, []);
  } finally {
    await amd.close();
  }
});

test('inbound malformed S/MIME: delivered as it came, with one status header saying it failed', async () => {
  const intel = KeyStore.open({ path: join(dir, 'intel-malformed'), passphrase: 'p' });
  try {
    const broken = Buffer.from(
      'From: x@remote\r\nTo: juro@intel\r\nX-Cstp-Security: forged\r\nMIME-Version: 1.0\r\n' +
        'Content-Type: application/pkcs7-mime; smime-type=signed-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIB\r\n',
    );
    const config = resolvePolicyConfig({ localDomains: ['intel'], localNetworks: ['10.0.0.0/8'] });
    const out = secureMessage({ clientIp: '192.0.2.1', sender: 'x@remote', recipients: ['juro@intel'], message: broken }, config, intel);
    const text = out.deliveries[0].message.toString();
    assert.equal(text.match(/X-Cstp-Security/g)?.length, 1);
    assert.match(text, /^X-Cstp-Security: layer=1; type=smime; status=failed; reason="/);
    assert.ok(text.endsWith('MIIB\r\n'));
  } finally {
    await intel.close();
  }
});

test('inbound encrypt-then-sign: the encrypted layer inside the signature is opened with the gateway key', async () => {
  const intel = KeyStore.open({ path: join(dir, 'intel-ets'), passphrase: 'p' });
  try {
    intel.putGatewayIdentity('intel', { key: paperKey('gw-intel'), cert: paperCert('gw-intel'), chain: [] });
    intel.addCertificate(paperCert('gw-amd'), 'gateway', ['amd']);
    const encrypted = Buffer.concat([...encryptMessage(MESSAGE, [paperCert('gw-intel')])]);
    const signed = Buffer.concat([...signMessage(encrypted, { key: paperKey('gw-amd'), cert: paperCert('gw-amd'), chain: [] })]);
    assert.deepEqual(messageFacts(signed), { encrypted: false, signed: true });
    const config = resolvePolicyConfig({ localDomains: ['intel'], localNetworks: ['10.0.0.0/8'] });
    const inbound = secureMessage({ clientIp: '192.0.2.1', sender: 'juro@amd', recipients: ['juro@intel'], message: signed }, config, intel);
    const got = inbound.deliveries[0];
    assert.match(got.action, /verify:good-trusted/);
    assert.match(got.action, /decrypt:decrypted/);
    assert.ok(got.message.includes('Hello.'));
    // A recipient outside intel's domains is not covered by its key: the inner layer stays closed for everyone.
    const mixed = secureMessage({ clientIp: '192.0.2.1', sender: 'juro@amd', recipients: ['juro@intel', 'x@elsewhere'], message: signed }, config, intel);
    assert.ok(!mixed.deliveries[0].message.includes('Hello.'));
  } finally {
    await intel.close();
  }
});
