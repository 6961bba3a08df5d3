import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Certificate } from '../../src/pki/certificate';
import { checkEndEntity, validatePath, type PathErrorCode, type PathOptions, type PathResult, type UsageOptions } from '../../src/pki/path';
import { pkiDir, pkiRead } from '../helpers/pki';

const load = (name: string): Certificate => Certificate.fromPem(pkiRead(`${name}.crt`))[0];
const ca = load('ca');
const inter = load('inter');

// ---------------------------------------------------------------------------
// Extra certificates the shared test PKI lacks, made with `openssl ca` (it can set any dates).

const dir = mkdtempSync(join(tmpdir(), 'cstp-path-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const pki = (name: string): string => join(pkiDir(), name);
const local = (name: string): string => join(dir, name);

interface Spec {
  subject: string;
  /** 'self', or the path of the issuer's .crt/.key without extension. */
  issuer: string;
  ext: string[];
  rsa?: boolean;
  /** Re-use this certificate's key (path without extension) instead of making one. */
  keyFrom?: string;
  start?: string;
  end?: string;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function issue(name: string, spec: Spec): Certificate {
  const key = spec.keyFrom ? `${spec.keyFrom}.key` : local(`${name}.key`);
  if (!spec.keyFrom) {
    const alg = spec.rsa ? ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'] : ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    openssl(['genpkey', ...alg, '-out', key]);
  }
  openssl(['req', '-new', '-key', key, '-subj', spec.subject, '-out', `${name}.csr`]);
  writeFileSync(local(`${name}.idx`), '');
  writeFileSync(local(`${name}.cnf`), [
    '[ca]', 'default_ca = d', '[d]', `database = ${name}.idx`, `serial = ${name}.srl`, 'new_certs_dir = .',
    'default_md = sha256', 'policy = p', 'unique_subject = no', 'copy_extensions = none',
    '[p]', 'organizationName = optional', 'commonName = optional', 'emailAddress = optional',
    '[x]', ...spec.ext, '',
  ].join('\n'));
  const signer = spec.issuer === 'self' ? ['-selfsign', '-keyfile', key] : ['-cert', `${spec.issuer}.crt`, '-keyfile', `${spec.issuer}.key`];
  openssl(['ca', '-batch', '-preserveDN', '-notext', '-rand_serial', '-config', `${name}.cnf`, '-extensions', 'x', ...signer,
    '-startdate', spec.start ?? '20200101000000Z', '-enddate', spec.end ?? '20491231000000Z', '-in', `${name}.csr`, '-out', `${name}.crt`]);
  return Certificate.fromPem(readFileSync(local(`${name}.crt`)))[0];
}

const caExt = (keyUsage = 'keyCertSign,cRLSign', extra: string[] = []): string[] => [
  'basicConstraints=critical,CA:TRUE', `keyUsage=critical,${keyUsage}`, 'subjectKeyIdentifier=hash', ...extra,
];
const leafExt = (address: string, extra: string[] = [], keyUsage = 'digitalSignature,keyAgreement'): string[] => [
  'basicConstraints=critical,CA:FALSE', `keyUsage=critical,${keyUsage}`, 'extendedKeyUsage=emailProtection',
  `subjectAltName=email:${address}`, 'subjectKeyIdentifier=hash', ...extra,
];
const AKI = 'authorityKeyIdentifier=keyid';

const opensslDate = (d: Date): string => d.toISOString().replace(/[-T:]/g, '').slice(0, 14) + 'Z';
const nextYear = new Date(Date.now() + 365 * 86400_000);
// Valid from next year until long after the root (10 years from the PKI's creation) expires.
const future = issue('future', { subject: '/CN=Future', issuer: pki('ca'), ext: leafExt('future@t.example', [AKI]), start: opensslDate(nextYear), end: '20991231000000Z' });
const unknownCritical = issue('unknown-critical', { subject: '/CN=Unknown Critical', issuer: pki('ca'), ext: leafExt('uc@t.example', [AKI, '1.2.3.4.5=critical,ASN1:UTF8String:x']) });
const anyEku = issue('any-eku', { subject: '/CN=Any EKU', issuer: pki('ca'), ext: ['keyUsage=critical,nonRepudiation', 'extendedKeyUsage=anyExtendedKeyUsage', 'subjectAltName=email:any@t.example'] });
// inter has pathlen 0, so a CA below it may not issue anything.
const inter2 = issue('inter2', { subject: '/O=cstp Test/CN=Second Intermediate', issuer: pki('inter'), ext: caExt(undefined, [AKI]) });
const deep = issue('deep', { subject: '/CN=Too Deep', issuer: local('inter2'), ext: leafExt('deep@t.example', [AKI]) });
const noSignCa = issue('nosign-ca', { subject: '/CN=CRL-only CA', issuer: pki('ca'), ext: caExt('cRLSign', [AKI]) });
const noSignLeaf = issue('nosign-leaf', { subject: '/CN=Under CRL-only CA', issuer: local('nosign-ca'), ext: leafExt('ns@t.example') });
const byLeaf = issue('by-leaf', { subject: '/CN=Issued by a Leaf', issuer: pki('user-a-rsa'), ext: leafExt('bl@t.example') });
const expiredCa = issue('expired-ca', { subject: '/CN=Expired CA', issuer: pki('ca'), ext: caExt(undefined, [AKI]), start: '20200101000000Z', end: '20210101000000Z' });
const underExpired = issue('under-expired', { subject: '/CN=Under Expired CA', issuer: local('expired-ca'), ext: leafExt('ue@t.example') });
// Same name and key identifier as the expired CA, another key: tried first, fails its signature check.
const expiredCaImpostor = issue('expired-ca-impostor', {
  subject: '/CN=Expired CA', issuer: 'self',
  ext: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign', `subjectKeyIdentifier=${expiredCa.subjectKeyId!.toString('hex')}`],
});
// Same subject as the real root, different key: a forged issuer name.
issue('fake-root', { subject: '/O=cstp Test/CN=cstp Test Root CA', issuer: 'self', ext: caExt() });
const forged = issue('forged', { subject: '/CN=Forged', issuer: local('fake-root'), ext: leafExt('forged@t.example') });
// Same subject and even the same key identifier as the real intermediate.
const fakeInter = issue('fake-inter', {
  subject: '/O=cstp Test/CN=cstp Test Intermediate CA', issuer: 'self',
  ext: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign', `subjectKeyIdentifier=${inter.subjectKeyId!.toString('hex')}`],
});
// Same subject, its own key identifier: key identifiers should steer the search past it.
const otherKidInter = issue('other-kid-inter', { subject: '/O=cstp Test/CN=cstp Test Intermediate CA', issuer: 'self', ext: caExt() });
// A gateway's self-signed domain certificate, trusted directly.
const direct = issue('direct', { subject: '/CN=Gateway Self', issuer: 'self', rsa: true, ext: leafExt('gw@self.example', [], 'digitalSignature,keyEncipherment') });
// Two CAs that certify each other, for loop avoidance.
issue('loop-x0', { subject: '/O=Loop/CN=X', issuer: 'self', ext: caExt() });
issue('loop-y0', { subject: '/O=Loop/CN=Y', issuer: 'self', ext: caExt() });
const loopX = issue('loop-x', { subject: '/O=Loop/CN=X', issuer: local('loop-y0'), keyFrom: local('loop-x0'), ext: caExt() });
const loopY = issue('loop-y', { subject: '/O=Loop/CN=Y', issuer: local('loop-x0'), keyFrom: local('loop-y0'), ext: caExt() });
const inLoop = issue('in-loop', { subject: '/CN=In Loop', issuer: local('loop-x0'), ext: leafExt('loop@t.example') });

// ---------------------------------------------------------------------------

const seen = new Set<PathErrorCode>();

function expectFail(result: PathResult, code: PathErrorCode, mentions?: string): Extract<PathResult, { ok: false }> {
  assert.ok(!result.ok, `expected ${code}, got a valid chain`);
  assert.equal(result.code, code, result.reason);
  assert.ok(!result.reason.includes('\n'), 'reason is one line');
  if (mentions) assert.ok(result.reason.includes(mentions), `"${result.reason}" should mention ${mentions}`);
  seen.add(code);
  return result;
}

function expectChain(result: PathResult, chain: Certificate[]): void {
  assert.ok(result.ok, result.ok ? '' : `${result.code}: ${result.reason}`);
  assert.deepEqual(result.chain.map((c) => c.subject), chain.map((c) => c.subject));
}

const trustCa = (purpose: 'sign' | 'encrypt', more: Partial<PathOptions> = {}): PathOptions => ({ purpose, anchors: [ca], ...more });

test('RSA, EC and Ed25519 leaves under the root validate for what their key can do', () => {
  expectChain(validatePath(load('user-a-rsa'), trustCa('sign', { addresses: ['user@a.example'] })), [load('user-a-rsa'), ca]);
  expectChain(validatePath(load('user-a-rsa'), trustCa('encrypt')), [load('user-a-rsa'), ca]);
  expectChain(validatePath(load('user-a-ec'), trustCa('sign')), [load('user-a-ec'), ca]);
  expectChain(validatePath(load('gw-b-ec'), trustCa('encrypt', { addresses: ['gateway@b.example'] })), [load('gw-b-ec'), ca]);
  expectChain(validatePath(load('user-p384'), trustCa('sign')), [load('user-p384'), ca]);
  expectChain(validatePath(load('user-ed25519'), trustCa('sign')), [load('user-ed25519'), ca]);
});

test('an Ed25519 key cannot encrypt and a signature-only key cannot either', () => {
  expectFail(checkEndEntity(load('user-ed25519'), { purpose: 'encrypt' }), 'key-usage', 'User Ed25519');
  expectFail(validatePath(load('sign-only'), trustCa('encrypt')), 'key-usage', 'keyEncipherment');
  expectChain(validatePath(load('sign-only'), trustCa('sign')), [load('sign-only'), ca]);
});

test('EC leaves need keyAgreement to encrypt; nonRepudiation alone allows signing', () => {
  expectFail(checkEndEntity(anyEku, { purpose: 'encrypt' }), 'key-usage', 'keyAgreement');
  assert.ok(checkEndEntity(anyEku, { purpose: 'sign' }).ok);
});

test('extendedKeyUsage must allow e-mail protection; anyExtendedKeyUsage does', () => {
  expectFail(validatePath(load('bad-noeku'), trustCa('sign')), 'ext-key-usage', 'Bad No EKU');
  expectChain(validatePath(anyEku, trustCa('sign')), [anyEku, ca]);
});

test('a chain through the intermediate needs the intermediate', () => {
  const leaf = load('user-inter');
  expectChain(validatePath(leaf, trustCa('sign', { intermediates: [inter] })), [leaf, inter, ca]);
  const r = expectFail(validatePath(leaf, trustCa('sign')), 'untrusted', 'cstp Test Intermediate CA');
  assert.deepEqual(r.chain?.map((c) => c.fingerprint), [leaf.fingerprint]);
});

test('a certificate from another root is untrusted, also when that root comes along', () => {
  const stranger = load('stranger');
  expectFail(validatePath(stranger, trustCa('sign')), 'untrusted', 'Untrusted Root CA');
  const r = expectFail(validatePath(stranger, trustCa('sign', { intermediates: [load('other-ca')] })), 'untrusted', 'self-issued');
  assert.equal(r.chain?.length, 2, 'the chain found so far is returned for review');
  expectChain(validatePath(stranger, { purpose: 'sign', anchors: [load('other-ca')] }), [stranger, load('other-ca')]);
});

test('leaf problems come before trust', () => {
  expectFail(validatePath(load('expired'), { purpose: 'sign', anchors: [load('other-ca')] }), 'expired', 'Expired');
  expectFail(validatePath(load('bad-noeku'), { purpose: 'sign', anchors: [] }), 'ext-key-usage');
});

test('validity is checked at the given time', () => {
  expectFail(checkEndEntity(load('expired'), { purpose: 'sign' }), 'expired');
  assert.ok(checkEndEntity(load('expired'), { purpose: 'sign', at: new Date('2020-06-01T00:00:00Z') }).ok);
  expectFail(checkEndEntity(load('user-a-rsa'), { purpose: 'sign', at: new Date('2001-01-01T00:00:00Z') }), 'not-yet-valid');
  expectFail(validatePath(future, trustCa('sign')), 'not-yet-valid', 'Future');
  expectChain(validatePath(future, trustCa('sign', { at: new Date(nextYear.getTime() + 86400_000) })), [future, ca]);
});

test('an expired trust anchor no longer anchors', () => {
  expectFail(validatePath(future, trustCa('sign', { at: new Date('2098-01-01T00:00:00Z') })), 'expired', 'cstp Test Root CA');
});

test('RSA keys below the minimum are refused', () => {
  expectFail(validatePath(load('weak-rsa'), trustCa('sign')), 'weak-key', '1024');
  assert.ok(checkEndEntity(load('weak-rsa'), { purpose: 'sign', minRsaBits: 1024 }).ok);
  expectFail(checkEndEntity(load('user-a-rsa'), { purpose: 'sign', minRsaBits: 3072 }), 'weak-key');
  expectFail(validatePath(load('user-a-rsa'), trustCa('sign', { minRsaBits: 4096 })), 'weak-key', 'User A');
});

test('an unknown critical extension makes the certificate unusable', () => {
  expectFail(validatePath(unknownCritical, trustCa('sign')), 'unknown-critical-extension', '1.2.3.4.5');
});

test('addresses: every one must match, domain case-insensitive, local part exact', () => {
  const multi = load('multi-rsa');
  const opts = (addresses: string[]): UsageOptions => ({ purpose: 'sign', addresses });
  assert.ok(checkEndEntity(multi, opts(['multi@a.example', 'alias@a.example'])).ok);
  assert.ok(checkEndEntity(multi, opts(['alias@a.example'])).ok, 'SAN alias@A.Example matches');
  assert.ok(checkEndEntity(multi, opts(['multi@A.EXAMPLE'])).ok);
  expectFail(checkEndEntity(multi, opts(['multi@a.example', 'nobody@a.example'])), 'address-mismatch', 'nobody@a.example');
  expectFail(checkEndEntity(multi, opts(['Multi@a.example'])), 'address-mismatch');
  expectFail(validatePath(load('user-a-rsa'), trustCa('encrypt', { addresses: ['gateway@b.example'] })), 'address-mismatch', 'user@a.example');
});

test('a certificate issued by a non-CA is refused', () => {
  expectFail(validatePath(byLeaf, trustCa('sign', { intermediates: [load('user-a-rsa')] })), 'not-ca', 'User A (RSA)');
});

test('a CA whose keyUsage lacks keyCertSign cannot issue', () => {
  expectFail(validatePath(noSignLeaf, trustCa('sign', { intermediates: [noSignCa] })), 'ca-key-usage', 'CRL-only CA');
});

test('pathLenConstraint is enforced', () => {
  const r = expectFail(validatePath(deep, trustCa('sign', { intermediates: [inter2, inter] })), 'path-length', 'cstp Test Intermediate CA');
  assert.equal(r.chain?.length, 3);
});

test('an expired intermediate breaks the path and is named', () => {
  const r = expectFail(validatePath(underExpired, trustCa('sign', { intermediates: [expiredCa] })), 'expired', 'Expired CA');
  assert.deepEqual(r.chain?.map((c) => c.subject), [underExpired.subject, expiredCa.subject]);
});

test('the most specific reason wins over a same-named impostor tried first', () => {
  const r = expectFail(validatePath(underExpired, trustCa('sign', { intermediates: [expiredCaImpostor, expiredCa] })), 'expired', 'Expired CA');
  assert.equal(r.chain?.[1].fingerprint, expiredCa.fingerprint);
});

test('a forged issuer name or a tampered certificate is a bad signature', () => {
  expectFail(validatePath(forged, trustCa('sign')), 'bad-signature', 'Forged');
  const der = Buffer.from(load('user-a-rsa').der);
  der[der.length - 1] ^= 1;
  expectFail(validatePath(Certificate.fromDer(der), trustCa('sign')), 'bad-signature', 'User A (RSA)');
  expectFail(validatePath(load('user-inter'), trustCa('sign', { intermediates: [fakeInter] })), 'bad-signature');
});

test('a same-named impostor with the same key identifier does not hide the real issuer', () => {
  const leaf = load('user-inter');
  expectChain(validatePath(leaf, trustCa('sign', { intermediates: [fakeInter, inter] })), [leaf, inter, ca]);
});

test('the search is bounded: a flood of impostors gives up instead of burning CPU', () => {
  const leaf = load('user-inter');
  const impostors = (n: number): Certificate[] =>
    Array.from({ length: n }, (_, i) => {
      const der = Buffer.from(fakeInter.der);
      der.writeUInt16BE(i, der.length - 2); // distinct certificates, all with inter's name and key id
      return Certificate.fromDer(der);
    });
  expectChain(validatePath(leaf, trustCa('sign', { intermediates: [...impostors(20), inter] })), [leaf, inter, ca]);
  expectFail(validatePath(leaf, trustCa('sign', { intermediates: [...impostors(200), inter] })), 'untrusted', 'gave up');
});

test('key identifiers steer the search past same-named certificates with another key', () => {
  const leaf = load('user-inter');
  const flood = Array.from({ length: 200 }, (_, i) => {
    const der = Buffer.from(otherKidInter.der);
    der.writeUInt16BE(i, der.length - 2);
    return Certificate.fromDer(der);
  });
  expectChain(validatePath(leaf, trustCa('sign', { intermediates: [...flood, inter] })), [leaf, inter, ca]);
});

test('CAs certifying each other do not loop', () => {
  const r = expectFail(validatePath(inLoop, trustCa('sign', { intermediates: [loopX, loopY] })), 'untrusted');
  assert.deepEqual(r.chain?.map((c) => c.fingerprint), [inLoop.fingerprint, loopX.fingerprint, loopY.fingerprint]);
});

test('a directly trusted certificate is its own path', () => {
  expectChain(validatePath(direct, { purpose: 'encrypt', anchors: [direct], addresses: ['gw@self.example'] }), [direct]);
  expectChain(validatePath(load('user-a-rsa'), { purpose: 'sign', anchors: [load('user-a-rsa')] }), [load('user-a-rsa')]);
  expectFail(validatePath(direct, trustCa('encrypt')), 'untrusted', 'self-issued');
  expectFail(validatePath(direct, { purpose: 'encrypt', anchors: [direct], addresses: ['other@self.example'] }), 'address-mismatch');
});

test('every PathErrorCode was produced by a real certificate above', () => {
  const all: PathErrorCode[] = [
    'untrusted', 'expired', 'not-yet-valid', 'bad-signature', 'not-ca', 'path-length', 'ca-key-usage', 'key-usage',
    'ext-key-usage', 'address-mismatch', 'weak-key', 'unknown-critical-extension',
  ];
  assert.deepEqual(all.filter((c) => !seen.has(c)), []);
});
