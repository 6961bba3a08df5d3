import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { explainPlan } from '../../src/policy/explain';
import { planMessage } from '../../src/policy/plan';
import { amdConfig, intelConfig, lookups, NOW, outbound, pkiCert } from './fixtures';
import { paperCert } from './paper-pki';

const store = () => lookups({
  gateway: { intel: [paperCert('gw-intel')] },
  user: { 'julia@intel': [paperCert('julia')], 'old@mulholland': [pkiCert('expired')] },
  gatewayKeys: { amd: paperCert('gw-amd') },
});

test('explain: the paper example under liberal names every decision', () => {
  const text = explainPlan(planMessage(outbound(['juro@intel', 'julia@intel', 'fedor@mulholland']), amdConfig({ mixedRecipients: 'liberal' }), store()));
  const lines = text.split('\n');
  assert.equal(lines[0], 'direction: outbound (client 10.1.0.25 is in local network 10.1.0.0/16)');
  assert.equal(lines[1], 'sender: juro@amd');
  assert.match(text, /  juro@intel: gateway certificate "CN=cstp gateway intel, emailAddress=cstpbox@intel" \(SHA-256 [0-9a-f]{16}, valid until \d{4}-\d\d-\d\d\)/);
  assert.match(text, /  julia@intel: user certificate "CN=Julia/);
  assert.match(text, /  fedor@mulholland: no usable certificate\n/);
  assert.match(text, /delivery 1 via original connection: juro@intel, julia@intel\n  sign with the gateway key of amd "CN=cstp gateway amd/);
  assert.match(text, /  encrypt with aes-256-cbc \(RSA key transport rsa-pkcs1\) for 2 certificate\(s\): cstpbox@intel is not known to read AES-GCM/);
  assert.match(text, /delivery 2 via second connection \(the relay if the destination refuses it\): fedor@mulholland\n  unaltered: no usable certificate\n/);
  assert.ok(text.endsWith('\n'));
});

test('explain: refusals, deferrals, skipped certificates, notes and inbound unwrapping', () => {
  const restrictive = explainPlan(planMessage(outbound(['juro@intel', 'old@mulholland'], { sender: '' }), amdConfig({ mixedRecipients: 'restrictive' }), store()));
  assert.match(restrictive, /sender: <> \(null sender\)/);
  assert.match(restrictive, /    skipped user certificate "[^"]+" \([^)]+\): certificate .* expired on/);
  assert.match(restrictive, /refused: old@mulholland with 550 5\.7\.1\n  restrictive policy: .*\n  no notification: the sender is null/);
  assert.match(restrictive, /  not signed\n/);
  assert.match(restrictive, /note: null sender: not signed/);

  const deferred = explainPlan(planMessage(outbound(['fedor@mulholland']), amdConfig({ requireEncryption: ['mulholland'] }), store()));
  assert.match(deferred, /fedor@mulholland: no usable certificate \[encryption required\]/);
  assert.match(deferred, /deferred: the whole message is refused for now with 451 4\.7\.5\n  encryption is required for fedor@mulholland/);
  assert.doesNotMatch(deferred, /delivery 1/);

  const detached = explainPlan(planMessage(outbound(['fedor@mulholland', 'fero@amd']), amdConfig({ withoutCertificate: 'detached-signature' }), store()));
  assert.match(detached, /fero@amd: stays inside \[local\]/);
  assert.match(detached, /  detached signature \(multipart\/signed\) with the gateway key of amd/);

  const inbound = explainPlan(planMessage({
    clientIp: '192.0.2.1', sender: 'juro@amd', recipients: ['juro@intel'], message: { encrypted: true, signed: false },
    decryptionKeys: [{ holder: 'gateway', covers: ['intel'], cert: paperCert('gw-intel') }], now: NOW,
  }, intelConfig(), lookups({})));
  assert.match(inbound, /direction: inbound \(client 192\.0\.2\.1 is not in the local networks\)/);
  assert.match(inbound, /  decrypt with the gateway key "CN=cstp gateway intel/);
  assert.match(inbound, /  verify every signature layer and add the results as headers\n  incoming security status headers are removed first/);
});
