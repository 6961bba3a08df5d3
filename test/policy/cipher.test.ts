import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { algorithm, explicit, nullValue, sequence } from '../../src/asn1/der';
import { OID } from '../../src/asn1/oids';
import { parseCapabilities } from '../../src/policy/capabilities';
import { planMessage } from '../../src/policy/plan';
import { DEFAULT_CAPABILITIES } from '../../src/smime/cms/signed-data';
import { amdConfig, lookups, outbound, pkiCert, type Known } from './fixtures';
import { paperCert } from './paper-pki';

const CBC_ONLY = sequence(algorithm(OID.aes256Cbc), algorithm(OID.rsaEncryption, nullValue()));
const GCM_NO_OAEP = sequence(algorithm(OID.aes256Gcm), algorithm(OID.aes256Cbc));
/** RSAES-OAEP with absent parameters: SHA-1, which cstp does not write. */
const OAEP_SHA1 = sequence(algorithm(OID.aes256Gcm), algorithm(OID.rsaesOaep));
const OAEP_SHA384 = sequence(algorithm(OID.rsaesOaep, sequence(explicit(0, algorithm(OID.sha384, nullValue())))));

function options(recipients: string[], known: Known, settings = {}) {
  const t = planMessage(outbound(recipients), amdConfig(settings), lookups(known)).deliveries[0].transformation;
  assert.equal(t.kind, 'encrypt');
  return t.kind === 'encrypt' ? { ...t.envelope.options, reason: t.envelope.reason } : undefined;
}

const intel = { gateway: { intel: [paperCert('gw-intel')] } };

test('a gateway the store marks as a cstp peer gets AES-256-GCM with RSAES-OAEP', () => {
  assert.deepEqual(options(['juro@intel'], { ...intel, peers: [paperCert('gw-intel')] }), {
    cipher: 'aes-256-gcm', rsaKeyTransport: 'rsa-oaep', reason: 'every recipient is a cstp peer or advertises AES-256-GCM',
  });
});

test("a peer whose verified capabilities are cstp's own (a cstp gateway seen signing) is recognised without a mark", () => {
  const o = options(['juro@intel'], { ...intel, capabilities: { 'cstpbox@intel': DEFAULT_CAPABILITIES } });
  assert.deepEqual([o?.cipher, o?.rsaKeyTransport], ['aes-256-gcm', 'rsa-oaep']);
});

test("a user's capabilities are looked up by the address the certificate names", () => {
  const o = options(['julia@intel'], { user: { 'julia@intel': [paperCert('julia')] }, capabilities: { 'julia@intel': GCM_NO_OAEP } });
  assert.deepEqual([o?.cipher, o?.rsaKeyTransport], ['aes-256-gcm', 'rsa-pkcs1']);
});

test('everyone else gets AES-256-CBC with RSA PKCS#1 v1.5', () => {
  for (const known of [intel, { ...intel, capabilities: { 'cstpbox@intel': CBC_ONLY } }]) {
    const o = options(['juro@intel'], known);
    assert.deepEqual([o?.cipher, o?.rsaKeyTransport], ['aes-256-cbc', 'rsa-pkcs1']);
    assert.match(o?.reason ?? '', /cstpbox@intel is not known to read AES-GCM/);
  }
});

test('one recipient that cannot do GCM makes the whole set CBC', () => {
  const o = options(['juro@intel', 'julia@intel'], {
    ...intel, user: { 'julia@intel': [paperCert('julia')] }, peers: [paperCert('gw-intel')], capabilities: { 'julia@intel': CBC_ONLY },
  });
  assert.deepEqual([o?.cipher, o?.rsaKeyTransport], ['aes-256-cbc', 'rsa-pkcs1']);
  assert.match(o?.reason ?? '', /julia@intel/);
});

test('configuration can switch GCM and OAEP off even for cstp peers', () => {
  const peer = { ...intel, peers: [paperCert('gw-intel')] };
  const noGcm = options(['juro@intel'], peer, { preferAuthenticatedEncryption: false });
  assert.deepEqual([noGcm?.cipher, noGcm?.rsaKeyTransport, noGcm?.reason], ['aes-256-cbc', 'rsa-oaep', 'AES-GCM disabled by configuration']);
  assert.equal(options(['juro@intel'], peer, { preferOaep: false })?.rsaKeyTransport, 'rsa-pkcs1');
});

test('OAEP only with SHA-256: SHA-1 (absent parameters) or SHA-384 advertised gives PKCS#1 v1.5', () => {
  for (const caps of [OAEP_SHA1, OAEP_SHA384]) {
    assert.equal(options(['juro@intel'], { ...intel, capabilities: { 'cstpbox@intel': caps } })?.rsaKeyTransport, 'rsa-pkcs1');
  }
});

test('malformed capabilities are treated as unknown: CBC', () => {
  const o = options(['juro@intel'], { ...intel, capabilities: { 'cstpbox@intel': Buffer.from([0x30, 0x05, 0x06]) } });
  assert.deepEqual([o?.cipher, o?.rsaKeyTransport], ['aes-256-cbc', 'rsa-pkcs1']);
});

test('an EC-only envelope needs no RSA key transport choice: it stays at the default', () => {
  const o = options(['x@b'], { gateway: { b: [pkiCert('gw-b-ec')] }, peers: [pkiCert('gw-b-ec')] });
  assert.deepEqual([o?.cipher, o?.rsaKeyTransport], ['aes-256-gcm', 'rsa-pkcs1']);
});

test('parseCapabilities reads what cstp itself advertises', () => {
  assert.deepEqual(parseCapabilities(DEFAULT_CAPABILITIES), { aes256Gcm: true, oaepSha256: true });
  assert.deepEqual(parseCapabilities(CBC_ONLY), { aes256Gcm: false, oaepSha256: false });
  assert.equal(parseCapabilities(Buffer.from('not der')), undefined);
});

test('lookups without isCstpPeer (as the store adapter has) rely on capabilities alone', () => {
  const base = lookups(intel);
  const { isCstpPeer, ...withoutPeer } = base;
  assert.ok(isCstpPeer);
  const t = planMessage(outbound(['juro@intel']), amdConfig(), withoutPeer).deliveries[0].transformation;
  assert.equal(t.kind === 'encrypt' && t.envelope.options.cipher, 'aes-256-cbc');
});
