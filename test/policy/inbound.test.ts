import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { planMessage, type HeldKey, type PolicyInput } from '../../src/policy/plan';
import { intelConfig, lookups, NOW } from './fixtures';
import { paperCert } from './paper-pki';

const inbound = (message: PolicyInput['message'], recipients: string[], decryptionKeys: HeldKey[] = []): PolicyInput => ({
  clientIp: '2001:db8:99::1', sender: 'juro@amd', recipients, message, decryptionKeys, now: NOW,
});
const gatewayKey: HeldKey = { holder: 'gateway', covers: ['intel'], cert: paperCert('gw-intel') };
const juliaKey: HeldKey = { holder: 'user', covers: ['julia@intel'], cert: paperCert('julia') };

test('inbound plain mail passes unaltered, with forged status headers stripped', () => {
  const plan = planMessage(inbound({ encrypted: false, signed: false }, ['juro@intel']), intelConfig(), lookups({}));
  assert.equal(plan.direction, 'inbound');
  assert.deepEqual(plan.deliveries, [{
    recipients: ['juro@intel'], route: 'original', stripStatusHeaders: true, transformation: { kind: 'unaltered', reason: 'not S/MIME' },
  }]);
});

test('inbound signed mail is unwrapped to verify every layer, nothing to decrypt', () => {
  const plan = planMessage(inbound({ encrypted: false, signed: true }, ['juro@intel', 'julia@intel']), intelConfig(), lookups({}));
  assert.deepEqual(plan.deliveries.map((d) => [d.recipients, d.transformation]), [[['juro@intel', 'julia@intel'], { kind: 'unwrap', keys: [] }]]);
});

test("a user's key opens the message for that user only; the others get it as it came over a second connection", () => {
  const plan = planMessage(inbound({ encrypted: true, signed: false }, ['juro@intel', 'julia@intel'], [juliaKey]), intelConfig(), lookups({}));
  assert.deepEqual(plan.deliveries, [
    { recipients: ['julia@intel'], route: 'original', stripStatusHeaders: true, transformation: { kind: 'unwrap', keys: [juliaKey] } },
    {
      recipients: ['juro@intel'], route: 'second-connection', stripStatusHeaders: true,
      transformation: { kind: 'unaltered', reason: 'encrypted for a key this gateway does not hold: passed on for the recipient to decrypt' },
    },
  ]);
});

test('a gateway key opens the message for the domains it serves; several held keys go into one delivery once each', () => {
  const plan = planMessage(inbound({ encrypted: true, signed: true }, ['julia@intel', 'juro@INTEL', 'x@elsewhere'], [gatewayKey, juliaKey, gatewayKey]),
    intelConfig(), lookups({}));
  assert.deepEqual(plan.deliveries.map((d) => d.recipients), [['julia@intel', 'juro@INTEL'], ['x@elsewhere']]);
  const t = plan.deliveries[0].transformation;
  assert.deepEqual(t, { kind: 'unwrap', keys: [gatewayKey, juliaKey] });
});

test('inbound never refuses, defers or signs, whatever the outbound settings', () => {
  const plan = planMessage(inbound({ encrypted: true, signed: false }, ['juro@intel']),
    intelConfig({ mixedRecipients: 'restrictive', requireEncryption: ['intel'] }), lookups({}));
  assert.deepEqual(plan.refused, []);
  assert.equal(plan.temporaryFailure, undefined);
  assert.equal(plan.deliveries[0].transformation.kind, 'unaltered');
});

test('inbound: a recipient given twice is delivered to once', () => {
  const plan = planMessage(inbound({ encrypted: false, signed: true }, ['juro@intel', 'juro@Intel']), intelConfig(), lookups({}));
  assert.deepEqual(plan.deliveries[0].recipients, ['juro@intel']);
});

test('inbound signed outside (encrypt-then-sign): keys covering every recipient are offered for the layers inside', () => {
  const both = planMessage(inbound({ encrypted: false, signed: true }, ['juro@intel', 'julia@intel'], [gatewayKey, juliaKey]), intelConfig(), lookups({}));
  assert.deepEqual(both.deliveries.map((d) => d.transformation), [{ kind: 'unwrap', keys: [gatewayKey] }]);
  const julia = planMessage(inbound({ encrypted: false, signed: true }, ['julia@intel'], [gatewayKey, juliaKey]), intelConfig(), lookups({}));
  assert.deepEqual(julia.deliveries.map((d) => d.transformation), [{ kind: 'unwrap', keys: [gatewayKey, juliaKey] }]);
});
