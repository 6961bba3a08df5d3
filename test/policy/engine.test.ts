/**
 * The plans drive the S/MIME engine: amd's outbound plan executed with signAndEncryptMessage,
 * intel's inbound plan with unwrapMessage, as the gateway layers will.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { isDomainSigner } from '../../src/policy/domain-signing';
import { planMessage, type Plan, type Transformation } from '../../src/policy/plan';
import { signAndEncryptMessage, unwrapMessage } from '../../src/smime/message';
import { amdConfig, intelConfig, lookups, NOW, outbound } from './fixtures';
import { paperCert, paperKey } from './paper-pki';

const MESSAGE = Buffer.from([
  'From: Juro <juro@amd>', 'To: juro@intel, julia@intel, fedor@mulholland', 'Subject: the paper example',
  'Date: Mon, 23 Nov 2026 11:00:00 +0000', 'Message-ID: <example-1@amd>', 'X-Cstp-Security: forged', '', 'Hello from amd.', '',
].join('\r\n'));

function kind<K extends Transformation['kind']>(plan: Plan, index: number, k: K): Extract<Transformation, { kind: K }> {
  const t = plan.deliveries[index].transformation;
  assert.equal(t.kind, k);
  return t as Extract<Transformation, { kind: K }>;
}

/** What amd's gateway sends toward intel in the first example. */
function amdOutbound(): Buffer {
  const plan = planMessage(outbound(['juro@intel', 'julia@intel', 'fedor@mulholland']), amdConfig({ mixedRecipients: 'liberal' }), lookups({
    gateway: { intel: [paperCert('gw-intel')] }, user: { 'julia@intel': [paperCert('julia')] }, gatewayKeys: { amd: paperCert('gw-amd') },
  }));
  const t = kind(plan, 0, 'encrypt');
  assert.ok(t.signer);
  const signer = { key: paperKey('gw-amd'), cert: t.signer.cert };
  return Buffer.concat([...signAndEncryptMessage(MESSAGE, signer, t.envelope.certificates, t.envelope.options)]);
}

const intelStore = lookups({ gateway: { amd: [paperCert('gw-amd')] } });

test("example 1 through the engine: intel's gateway key opens amd's copy and finds amd's domain signature", () => {
  const wire = amdOutbound();
  const plan = planMessage({
    clientIp: '192.0.2.25', sender: 'juro@amd', recipients: ['juro@intel', 'julia@intel'], message: { encrypted: true, signed: false },
    decryptionKeys: [{ holder: 'gateway', covers: ['intel'], cert: paperCert('gw-intel') }], now: NOW,
  }, intelConfig(), intelStore);
  const t = kind(plan, 0, 'unwrap');
  const keys = t.keys.map((k) => ({ key: paperKey('gw-intel'), cert: k.cert }));
  const { message, layers } = unwrapMessage(wire, { keys, trust: { anchors: [paperCert('gw-amd')] } });
  assert.deepEqual(layers.map((l) => l.type), ['encrypted', 'signed']);
  assert.ok(message.includes('Hello from amd.'));
  assert.ok(!message.includes('X-Cstp-Security: forged'), 'forged status header removed');
  const signed = layers[1];
  assert.ok(signed.type === 'signed');
  // The engine's RFC 8550 From check flags the domain signature; the store shows it is amd's gateway.
  assert.equal(signed.report.verdict, 'cert-unusable');
  assert.match(signed.report.reason, /names cstpbox@amd.*, not the sender juro@amd/);
  const signer = signed.report.signers[0].signer;
  assert.ok(signer);
  assert.equal(isDomainSigner(signer, 'juro@amd', intelStore), true);
  assert.equal(isDomainSigner(signer, 'someone@intel', intelStore), false);
  assert.equal(isDomainSigner(paperCert('julia'), 'juro@amd', intelStore), false);
});

test("example 2 through the engine: without Julia's key the copy stays encrypted for her own client", () => {
  const wire = amdOutbound();
  const plan = planMessage({
    clientIp: '192.0.2.25', sender: 'juro@amd', recipients: ['julia@intel'], message: { encrypted: true, signed: false }, decryptionKeys: [], now: NOW,
  }, intelConfig(), intelStore);
  assert.equal(kind(plan, 0, 'unaltered').reason, 'encrypted for a key this gateway does not hold: passed on for the recipient to decrypt');
  // Julia's client, holding her key, opens it.
  const { layers } = unwrapMessage(wire, { keys: [{ key: paperKey('julia'), cert: paperCert('julia') }], trust: { anchors: [paperCert('gw-amd')] } });
  assert.deepEqual(layers.map((l) => l.type === 'encrypted' ? l.status : l.type), ['decrypted', 'signed']);
});
