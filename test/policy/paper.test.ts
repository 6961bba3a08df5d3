/**
 * The paper's examples (section 4.5) as plans. amd and intel run cstp; mulholland does not.
 * amd knows intel's gateway certificate and Julia's own; Julia's key is not on intel's gateway.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { planMessage, type HeldKey } from '../../src/policy/plan';
import { amdConfig, fps, intelConfig, lookups, NOW, outbound } from './fixtures';
import { paperCert } from './paper-pki';

const amdStore = () => lookups({
  gateway: { intel: [paperCert('gw-intel')] },
  user: { 'julia@intel': [paperCert('julia')] },
  gatewayKeys: { amd: paperCert('gw-amd') },
});
const RECIPIENTS = ['juro@intel', 'julia@intel', 'fedor@mulholland'];

test('example 1, liberal: one copy signed by cstpbox@amd and encrypted to intel and Julia; fedor gets it unaltered over a second connection', () => {
  const plan = planMessage(outbound(RECIPIENTS), amdConfig({ mixedRecipients: 'liberal' }), amdStore());
  assert.equal(plan.direction, 'outbound');
  assert.equal(plan.deliveries.length, 2);
  const [secured, plain] = plan.deliveries;
  assert.deepEqual(secured.recipients, ['juro@intel', 'julia@intel']);
  assert.equal(secured.route, 'original');
  assert.equal(secured.transformation.kind, 'encrypt');
  if (secured.transformation.kind !== 'encrypt') return;
  assert.equal(secured.transformation.signer?.kind, 'gateway');
  assert.equal(secured.transformation.signer?.owner, 'amd');
  assert.equal(secured.transformation.signer?.cert.fingerprint, paperCert('gw-amd').fingerprint);
  // Juro has no certificate of his own: intel's gateway certificate; Julia's own wins over it.
  assert.deepEqual(fps(secured.transformation.envelope.certificates), fps([paperCert('gw-intel'), paperCert('julia')]));
  assert.deepEqual(secured.transformation.envelope.options, { cipher: 'aes-256-cbc', rsaKeyTransport: 'rsa-pkcs1' });
  assert.deepEqual(plain, {
    recipients: ['fedor@mulholland'], route: 'second-connection', stripStatusHeaders: false,
    transformation: { kind: 'unaltered', reason: 'no usable certificate' },
  });
  assert.deepEqual(plan.refused, []);
  assert.equal(plan.temporaryFailure, undefined);
});

test('example 1, liberal with detached signatures: fedor receives it signed by the amd gateway', () => {
  const plan = planMessage(outbound(RECIPIENTS), amdConfig({ mixedRecipients: 'liberal', withoutCertificate: 'detached-signature' }), amdStore());
  const t = plan.deliveries[1].transformation;
  assert.equal(t.kind, 'detached-signature');
  if (t.kind === 'detached-signature') assert.equal(t.signer.cert.fingerprint, paperCert('gw-amd').fingerprint);
});

test('example 1, restrictive: only the encrypted copy goes out; fedor is refused and juro gets a DSN', () => {
  const plan = planMessage(outbound(RECIPIENTS), amdConfig({ mixedRecipients: 'restrictive' }), amdStore());
  assert.equal(plan.deliveries.length, 1);
  assert.deepEqual(plan.deliveries[0].recipients, ['juro@intel', 'julia@intel']);
  assert.equal(plan.deliveries[0].route, 'original');
  assert.equal(plan.refused.length, 1);
  const [r] = plan.refused;
  assert.equal(r.recipient, 'fedor@mulholland');
  assert.deepEqual([r.reply.code, r.reply.enhanced], [550, '5.7.1']);
  assert.equal(r.notifySender, true);
  assert.match(r.dsn, /not delivered to fedor@mulholland/);
  assert.match(r.reason, /restrictive/);
});

test("example 1 at intel: its gateway key opens the envelope for juro and julia; one delivery, verified", () => {
  const held: HeldKey = { holder: 'gateway', covers: ['intel'], cert: paperCert('gw-intel') };
  const plan = planMessage({
    clientIp: '192.0.2.25', sender: 'juro@amd', recipients: ['juro@intel', 'julia@intel'],
    message: { encrypted: true, signed: false }, decryptionKeys: [held], now: NOW,
  }, intelConfig(), lookups({}));
  assert.equal(plan.direction, 'inbound');
  assert.deepEqual(plan.deliveries, [{
    recipients: ['juro@intel', 'julia@intel'], route: 'original', stripStatusHeaders: true,
    transformation: { kind: 'unwrap', keys: [held] },
  }]);
});

test('example 2: juro@amd to julia@intel only is encrypted to her own certificate alone', () => {
  const plan = planMessage(outbound(['julia@intel']), amdConfig(), amdStore());
  assert.equal(plan.deliveries.length, 1);
  const t = plan.deliveries[0].transformation;
  assert.equal(t.kind, 'encrypt');
  if (t.kind !== 'encrypt') return;
  assert.deepEqual(fps(t.envelope.certificates), fps([paperCert('julia')]));
  assert.equal(t.signer?.owner, 'amd', 'signed by cstpbox@amd, not by juro (the warning Julia sees)');
});

test("example 2 at intel: no key for Julia's RecipientInfo, so the S/MIME message passes untouched", () => {
  const plan = planMessage({
    clientIp: '192.0.2.25', sender: 'juro@amd', recipients: ['julia@intel'],
    message: { encrypted: true, signed: false }, decryptionKeys: [], now: NOW,
  }, intelConfig(), lookups({}));
  assert.equal(plan.deliveries.length, 1);
  assert.equal(plan.deliveries[0].transformation.kind, 'unaltered');
  assert.equal(plan.deliveries[0].route, 'original');
  assert.equal(plan.deliveries[0].stripStatusHeaders, true);
});
