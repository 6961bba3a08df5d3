import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { OID } from '../../src/asn1/oids';
import { certificationRequest, generateKeyPair, selfSignedCertificate, smimeKeyUsage, type KeyAlgorithm } from '../../src/pki/issue';
import { checkEndEntity, validatePath } from '../../src/pki/path';
import { decryptMessage, encryptMessage, signMessage, verifyMessage } from '../../src/smime/message';

const MESSAGE = Buffer.from('From: juro@amd.example\r\nTo: juro@intel.example\r\nSubject: hi\r\n\r\nhello\r\n');
const join_ = (chunks: Iterable<Buffer>): Buffer => Buffer.concat([...chunks]);

/** Runs openssl in a scratch directory holding `files`; stdout and stderr together (openssl 3.0 `req -verify` exits 0 on failure). */
function openssl(args: string[], files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'cstp-issue-'));
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
    return r.stdout + r.stderr;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function gatewayCert(alg: KeyAlgorithm) {
  const { privateKey } = generateKeyPair(alg);
  const cert = selfSignedCertificate({
    key: privateKey,
    subject: { commonName: 'cstp gateway amd.example', organization: 'AMD Example', email: 'amd.example@amd.example' },
    emails: ['amd.example@amd.example'],
    dnsNames: ['amd.example'],
    days: 365,
    keyUsage: smimeKeyUsage(privateKey),
    extKeyUsage: [OID.emailProtection],
  });
  return { key: privateKey, cert };
}

for (const alg of ['rsa-2048', 'rsa-3072', 'ec-p256'] as const) {
  test(`${alg}: the self-signed certificate parses and verifies with openssl`, () => {
    const { cert } = gatewayCert(alg);
    const text = openssl(['x509', '-in', 'c.pem', '-noout', '-text'], { 'c.pem': cert.toPem() });
    assert.match(text, /Version: 3/);
    assert.match(text, alg === 'ec-p256' ? /ecdsa-with-SHA256/ : /sha256WithRSAEncryption/);
    assert.match(text, /email:amd\.example@amd\.example/);
    assert.match(text, /DNS:amd\.example/);
    assert.match(text, /E-mail Protection/);
    assert.match(text, /CA:FALSE/);
    assert.match(text, alg === 'ec-p256' ? /Digital Signature, Key Agreement/ : /Digital Signature, Key Encipherment/);
    assert.match(text, /Subject Key Identifier/);
    const verified = openssl(['verify', '-partial_chain', '-purpose', 'smimesign', '-CAfile', 'c.pem', 'c.pem'], { 'c.pem': cert.toPem() });
    assert.match(verified, /c\.pem: OK/);
  });
}

test('our Certificate reads back what was written', () => {
  const { cert } = gatewayCert('rsa-2048');
  assert.equal(cert.serial.length, 16);
  assert.equal(cert.serial[0] & 0x80, 0, 'serial must be positive');
  assert.deepEqual(cert.emailAddresses, ['amd.example@amd.example', 'amd.example@amd.example']);
  assert.deepEqual([...cert.keyUsage!].sort(), ['digitalSignature', 'keyEncipherment']);
  assert.deepEqual(cert.extKeyUsage, [OID.emailProtection]);
  assert.equal(cert.isCA, false);
  assert.equal(cert.isSelfIssued, true);
  assert.equal(cert.rsaBits, 2048);
  assert.ok(cert.subjectKeyId && cert.subjectKeyId.length === 20);
  assert.ok(cert.authorityKeyId!.equals(cert.subjectKeyId));
  assert.ok(cert.notAfter.getTime() - cert.notBefore.getTime() > 365 * 86400_000);
  assert.ok(cert.notBefore.getTime() <= Date.now());
  assert.ok(cert.x509.verify(cert.publicKey));
});

test('serial numbers differ between certificates', () => {
  const { privateKey } = generateKeyPair('ec-p256');
  const make = () => selfSignedCertificate({ key: privateKey, subject: { commonName: 'x' }, days: 1, keyUsage: ['digitalSignature'] });
  assert.notDeepEqual(make().serial, make().serial);
});

test('a CA certificate has cA and keyCertSign and issues nothing else by default', () => {
  const { privateKey } = generateKeyPair('ec-p256');
  const ca = selfSignedCertificate({ key: privateKey, subject: { commonName: 'Demo CA' }, days: 10, keyUsage: ['keyCertSign', 'cRLSign'], ca: true });
  assert.equal(ca.isCA, true);
  assert.deepEqual([...ca.keyUsage!].sort(), ['cRLSign', 'keyCertSign']);
  assert.equal(ca.extKeyUsage, undefined);
  assert.equal(ca.emailAddresses.length, 0);
  const text = openssl(['x509', '-in', 'c.pem', '-noout', '-text'], { 'c.pem': ca.toPem() });
  assert.match(text, /CA:TRUE/);
});

test('validatePath accepts the self-signed gateway certificate as a direct anchor, and only as one', () => {
  const { cert } = gatewayCert('rsa-2048');
  const direct = validatePath(cert, { purpose: 'encrypt', anchors: [cert], addresses: ['amd.example@AMD.example'] });
  assert.ok(direct.ok, direct.ok ? '' : direct.reason);
  const other = gatewayCert('rsa-2048').cert;
  const untrusted = validatePath(cert, { purpose: 'sign', anchors: [other] });
  assert.equal(untrusted.ok, false);
  assert.equal(checkEndEntity(cert, { purpose: 'sign' }).ok, true);
});

test('S/MIME sign, verify, encrypt and decrypt work with generated gateway keys (RSA and EC)', () => {
  for (const alg of ['rsa-2048', 'ec-p256'] as const) {
    const gw = gatewayCert(alg);
    const signed = join_(signMessage(MESSAGE, { ...gw, chain: [] }));
    const verified = verifyMessage(signed, { anchors: [gw.cert] });
    assert.equal(verified.signers[0].verdict, 'cert-unusable', 'From is juro@, not the gateway address');
    const own = Buffer.from(MESSAGE.toString().replace('From: juro@amd.example', 'From: amd.example@amd.example'));
    const ownVerified = verifyMessage(join_(signMessage(own, { ...gw, chain: [] })), { anchors: [gw.cert] });
    assert.equal(ownVerified.signers[0].verdict, 'good-trusted', ownVerified.signers[0].reason);
    const encrypted = join_(encryptMessage(MESSAGE, [gw.cert]));
    const { message } = decryptMessage(encrypted, [{ key: gw.key, cert: gw.cert }]);
    assert.match(message.toString(), /hello/);
  }
});

test('openssl cms reads a message encrypted to the generated certificate with the generated key', () => {
  const gw = gatewayCert('rsa-2048');
  const encrypted = join_(encryptMessage(MESSAGE, [gw.cert]));
  const out = openssl(['cms', '-decrypt', '-in', 'm.eml', '-recip', 'c.pem', '-inkey', 'k.pem'], {
    'm.eml': encrypted.toString('latin1'), 'c.pem': gw.cert.toPem(), 'k.pem': gw.key.export({ type: 'pkcs8', format: 'pem' }) as string,
  });
  assert.match(out, /hello/);
});

for (const alg of ['rsa-2048', 'ec-p256'] as const) {
  test(`${alg}: the certification request verifies with openssl req and carries the requested names`, () => {
    const { privateKey } = generateKeyPair(alg);
    const csr = certificationRequest({ key: privateKey, subject: { commonName: 'cstp gateway', organization: 'Intel Example', email: 'gw@intel.example' }, emails: ['gw@intel.example', 'intel.example@intel.example'] });
    assert.match(csr, /^-----BEGIN CERTIFICATE REQUEST-----\n/);
    const text = openssl(['req', '-in', 'r.pem', '-noout', '-verify', '-text'], { 'r.pem': csr });
    assert.match(text, /verify OK/);
    assert.match(text, /CN ?= ?cstp gateway/);
    assert.match(text, /O ?= ?Intel Example/);
    assert.match(text, /email:gw@intel\.example, email:intel\.example@intel\.example/);
    assert.match(text, /E-mail Protection/);
    assert.match(text, alg === 'ec-p256' ? /Key Agreement/ : /Key Encipherment/);
  });
}

test('a tampered certification request fails openssl req -verify', () => {
  const { privateKey } = generateKeyPair('ec-p256');
  const csr = certificationRequest({ key: privateKey, subject: { commonName: 'cstp gateway' }, emails: ['gw@intel.example'] });
  const der = Buffer.from(csr.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const at = der.indexOf(Buffer.from('gw@intel'));
  der[at] ^= 0x01;
  const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  assert.match(openssl(['req', '-in', 'r.pem', '-noout', '-verify'], { 'r.pem': pem }), /verify failure/);
});
