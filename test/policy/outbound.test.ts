import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { planMessage, type Plan, type Transformation } from '../../src/policy/plan';
import { amdConfig, fps, lookups, outbound, pkiCert, type Known } from './fixtures';
import { paperCert } from './paper-pki';

const GW_AMD = { amd: paperCert('gw-amd') };

function encryptOf(plan: Plan, index = 0): Extract<Transformation, { kind: 'encrypt' }> {
  const t = plan.deliveries[index].transformation;
  assert.equal(t.kind, 'encrypt');
  return t as Extract<Transformation, { kind: 'encrypt' }>;
}

test("a gateway certificate covering several recipients of its domain is in the envelope once", () => {
  const plan = planMessage(outbound(['juro@intel', 'anna@intel', 'petr@intel']), amdConfig(),
    lookups({ gateway: { intel: [paperCert('gw-intel')] }, gatewayKeys: GW_AMD }));
  assert.equal(plan.deliveries.length, 1);
  assert.deepEqual(plan.deliveries[0].recipients, ['juro@intel', 'anna@intel', 'petr@intel']);
  assert.deepEqual(fps(encryptOf(plan).envelope.certificates), fps([paperCert('gw-intel')]));
});

test("every recipient with a certificate shares one delivery and one envelope with all their certificates", () => {
  const known: Known = { user: { 'julia@intel': [paperCert('julia')], 'user@a.example': [pkiCert('user-a-rsa')] }, gateway: { b: [pkiCert('gw-b-rsa')] } };
  const plan = planMessage(outbound(['user@a.example', 'x@b', 'julia@intel']), amdConfig(), lookups(known));
  assert.equal(plan.deliveries.length, 1);
  assert.deepEqual(fps(encryptOf(plan).envelope.certificates), fps([pkiCert('user-a-rsa'), pkiCert('gw-b-rsa'), paperCert('julia')]));
});

test('signing: the sender\'s own key when held, else the gateway key of the sender\'s domain', () => {
  const known: Known = { gateway: { intel: [paperCert('gw-intel')] }, gatewayKeys: GW_AMD, userKeys: { 'juro@amd': paperCert('juro-amd') } };
  const withUser = encryptOf(planMessage(outbound(['juro@intel']), amdConfig(), lookups(known)));
  assert.deepEqual([withUser.signer?.kind, withUser.signer?.owner], ['user', 'juro@amd']);
  const other = encryptOf(planMessage(outbound(['juro@intel'], { sender: 'fero@amd' }), amdConfig(), lookups(known)));
  assert.deepEqual([other.signer?.kind, other.signer?.owner], ['gateway', 'amd']);
});

test("signing = gateway ignores the user's key; signing = none signs nothing", () => {
  const known: Known = { gateway: { intel: [paperCert('gw-intel')] }, gatewayKeys: GW_AMD, userKeys: { 'juro@amd': paperCert('juro-amd') } };
  assert.equal(encryptOf(planMessage(outbound(['juro@intel']), amdConfig({ signing: 'gateway' }), lookups(known))).signer?.kind, 'gateway');
  const none = planMessage(outbound(['juro@intel', 'fedor@mulholland']), amdConfig({ signing: 'none', withoutCertificate: 'detached-signature', mixedRecipients: 'liberal' }), lookups(known));
  assert.equal(encryptOf(none).signer, undefined);
  assert.deepEqual(none.deliveries[1].transformation, { kind: 'unaltered', reason: 'no usable certificate, and no key to sign with' });
});

test("an unusable user signing certificate falls back to the gateway key, with a note", () => {
  // juro-amd names juro@amd, not fero@amd; the expired certificate is unusable for anyone.
  for (const [sender, cert] of [['fero@amd', paperCert('juro-amd')], ['old@amd', pkiCert('expired')]] as const) {
    const plan = planMessage(outbound(['juro@intel'], { sender }),
      amdConfig(), lookups({ gateway: { intel: [paperCert('gw-intel')] }, gatewayKeys: GW_AMD, userKeys: { [sender]: cert } }));
    assert.equal(encryptOf(plan).signer?.kind, 'gateway', sender);
    assert.match(plan.notes.join('\n'), new RegExp(`the key of ${sender} is not used to sign`));
  }
});

test('no signing key at all: encrypted unsigned, with a note; an unusable gateway key is not used either', () => {
  const base: Known = { gateway: { intel: [paperCert('gw-intel')] } };
  const none = planMessage(outbound(['juro@intel']), amdConfig(), lookups(base));
  assert.equal(encryptOf(none).signer, undefined);
  assert.match(none.notes.join('\n'), /no signing key for juro@amd nor for the domain amd/);
  const expired = planMessage(outbound(['juro@intel']), amdConfig(), lookups({ ...base, gatewayKeys: { amd: pkiCert('expired') } }));
  assert.equal(encryptOf(expired).signer, undefined);
  assert.match(expired.notes.join('\n'), /gateway key of amd is not used to sign: .*expired/);
});

test('the null sender is never signed for and never notified', () => {
  const plan = planMessage(outbound(['juro@intel', 'fedor@mulholland'], { sender: '' }), amdConfig({ mixedRecipients: 'restrictive' }),
    lookups({ gateway: { intel: [paperCert('gw-intel')] }, gatewayKeys: GW_AMD }));
  assert.equal(encryptOf(plan).signer, undefined);
  assert.equal(plan.refused[0].notifySender, false);
});

test('unusable certificates are ignored with their reason: expired, weak, no emailProtection, sign-only, wrong address', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['old@a.example', 'expired', /expired/],
    ['weak@a.example', 'weak-rsa', /1024-bit/],
    ['bad@a.example', 'bad-noeku', /emailProtection/],
    ['signonly@a.example', 'sign-only', /does not allow encryption/],
    ['someone@a.example', 'user-a-rsa', /not for someone@a\.example/],
  ];
  for (const [address, name, reason] of cases) {
    const plan = planMessage(outbound([address]), amdConfig(), lookups({ user: { [address]: [pkiCert(name)] } }));
    assert.equal(plan.deliveries[0].transformation.kind, 'unaltered', name);
    const [finding] = plan.findings;
    assert.equal(finding.chosen, undefined);
    assert.equal(finding.skipped.length, 1);
    assert.match(finding.skipped[0].reason, reason, name);
  }
});

test("an unusable own certificate falls back to the domain gateway's; an expired gateway certificate means none", () => {
  const fallback = planMessage(outbound(['old@intel']), amdConfig(),
    lookups({ user: { 'old@intel': [pkiCert('expired')] }, gateway: { intel: [paperCert('gw-intel')] } }));
  assert.equal(fallback.findings[0].chosen?.via, 'gateway');
  assert.deepEqual(fps(encryptOf(fallback).envelope.certificates), fps([paperCert('gw-intel')]));
  const none = planMessage(outbound(['juro@intel']), amdConfig(), lookups({ gateway: { intel: [pkiCert('expired')] } }));
  assert.equal(none.deliveries[0].transformation.kind, 'unaltered');
});

test('among several usable certificates the choice does not depend on store order', () => {
  const a = paperCert('gw-intel');
  const b = pkiCert('gw-b-rsa');
  const pick = (certs: typeof a[]) => planMessage(outbound(['juro@intel']), amdConfig(), lookups({ gateway: { intel: certs } })).findings[0].chosen?.cert.fingerprint;
  assert.equal(pick([a, b]), pick([b, a]));
});

test('no recipient has a certificate: not mixed, so even restrictive delivers to everyone, on the original connection', () => {
  const plan = planMessage(outbound(['fedor@mulholland', 'eva@mulholland']), amdConfig({ mixedRecipients: 'restrictive' }), lookups({ gatewayKeys: GW_AMD }));
  assert.deepEqual(plan.refused, []);
  assert.deepEqual(plan.deliveries, [{
    recipients: ['fedor@mulholland', 'eva@mulholland'], route: 'original', stripStatusHeaders: false,
    transformation: { kind: 'unaltered', reason: 'no usable certificate' },
  }]);
});

test('outbound mail to a local domain stays inside: never encrypted, never refused, requireEncryption does not apply', () => {
  const plan = planMessage(outbound(['juro@intel', 'fero@AMD', 'fedor@mulholland']),
    amdConfig({ mixedRecipients: 'restrictive', requireEncryption: ['amd'] }),
    lookups({ gateway: { intel: [paperCert('gw-intel')], amd: [paperCert('gw-amd')] }, gatewayKeys: GW_AMD }));
  assert.equal(plan.temporaryFailure, undefined);
  assert.deepEqual(plan.refused.map((r) => r.recipient), ['fedor@mulholland']);
  assert.deepEqual(plan.deliveries[1], {
    recipients: ['fero@AMD'], route: 'second-connection', stripStatusHeaders: false,
    transformation: { kind: 'unaltered', reason: 'local recipients: the message stays inside' },
  });
  assert.deepEqual([plan.findings[1].local, plan.findings[1].requireEncryption], [true, false]);
});

test('requireEncryption without a certificate defers the whole message with 451 4.7.5 and delivers nothing', () => {
  for (const pattern of ['mulholland', 'fedor@mulholland', 'fedor@MULHOLLAND']) {
    const plan = planMessage(outbound(['juro@intel', 'fedor@mulholland']), amdConfig({ requireEncryption: [pattern] }),
      lookups({ gateway: { intel: [paperCert('gw-intel')] }, gatewayKeys: GW_AMD }));
    assert.deepEqual(plan.deliveries, [], pattern);
    assert.deepEqual(plan.refused, []);
    assert.deepEqual(plan.temporaryFailure?.recipients, ['fedor@mulholland']);
    assert.deepEqual([plan.temporaryFailure?.reply.code, plan.temporaryFailure?.reply.enhanced], [451, '4.7.5']);
  }
});

test('requireEncryption: *.domain matches subdomains only; a recipient with a certificate is simply encrypted', () => {
  const store = lookups({ gateway: { intel: [paperCert('gw-intel')] } });
  const cfg = amdConfig({ requireEncryption: ['*.mulholland', 'intel'] });
  assert.ok(planMessage(outbound(['x@eu.mulholland']), cfg, store).temporaryFailure);
  assert.equal(planMessage(outbound(['x@mulholland']), cfg, store).temporaryFailure, undefined);
  const encrypted = planMessage(outbound(['juro@intel']), cfg, store);
  assert.equal(encrypted.temporaryFailure, undefined);
  assert.equal(encryptOf(encrypted).envelope.certificates.length, 1);
});

test('mail the sender already encrypted passes unaltered to everyone, even under restrictive and requireEncryption', () => {
  const plan = planMessage(outbound(['juro@intel', 'fedor@mulholland'], { message: { encrypted: true, signed: true } }),
    amdConfig({ mixedRecipients: 'restrictive', requireEncryption: ['mulholland'] }),
    lookups({ gateway: { intel: [paperCert('gw-intel')] }, gatewayKeys: GW_AMD }));
  assert.deepEqual(plan.deliveries, [{
    recipients: ['juro@intel', 'fedor@mulholland'], route: 'original', stripStatusHeaders: false,
    transformation: { kind: 'unaltered', reason: 'already S/MIME encrypted by the sender' },
  }]);
  assert.deepEqual(plan.refused, []);
  assert.equal(plan.temporaryFailure, undefined);
  assert.match(plan.notes[0], /already S\/MIME encrypted/);
});

test('a message the sender already signed is still signed by the gateway and encrypted', () => {
  const plan = planMessage(outbound(['juro@intel'], { message: { encrypted: false, signed: true } }), amdConfig(),
    lookups({ gateway: { intel: [paperCert('gw-intel')] }, gatewayKeys: GW_AMD }));
  assert.equal(encryptOf(plan).signer?.kind, 'gateway');
});

test('the plan is deterministic and keeps the recipients in the order given', () => {
  const store = lookups({ gateway: { intel: [paperCert('gw-intel')] }, user: { 'julia@intel': [paperCert('julia')] }, gatewayKeys: GW_AMD });
  const input = outbound(['fedor@mulholland', 'julia@intel', 'eva@mulholland', 'juro@intel']);
  const liberal = amdConfig({ mixedRecipients: 'liberal' });
  const first = planMessage(input, liberal, store);
  assert.deepEqual(planMessage(input, liberal, store), first);
  assert.deepEqual(first.deliveries.map((d) => d.recipients), [['julia@intel', 'juro@intel'], ['fedor@mulholland', 'eva@mulholland']]);
  assert.deepEqual(fps(encryptOf(first).envelope.certificates), fps([paperCert('julia'), paperCert('gw-intel')]));
});

test('a recipient given twice (also with the domain in another case) is planned once, as first spelled', () => {
  const plan = planMessage(outbound(['juro@intel', 'fedor@mulholland', 'juro@INTEL', 'fedor@mulholland']), amdConfig({ mixedRecipients: 'liberal' }),
    lookups({ gateway: { intel: [paperCert('gw-intel')] } }));
  assert.deepEqual(plan.deliveries.map((d) => d.recipients), [['juro@intel'], ['fedor@mulholland']]);
  assert.deepEqual(plan.findings.map((f) => f.address), ['juro@intel', 'fedor@mulholland']);
});
