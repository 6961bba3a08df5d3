import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { sign, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import forge from 'node-forge';
import { Certificate } from '../../src/pki/certificate';
import { isPkcs12, KeyError, loadCredentials, loadPkcs12, loadPrivateKey, type Credentials } from '../../src/pki/keys';
import { P12_PASS, pkiPath, pkiRead } from '../helpers/pki';

const dir = mkdtempSync(join(tmpdir(), 'cstp-keys-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs openssl in the scratch directory and returns the named output file. */
function openssl(out: string, args: string[]): Buffer {
  execFileSync('openssl', [...args, '-out', join(dir, out)], { stdio: ['ignore', 'ignore', 'pipe'] });
  return readFileSync(join(dir, out));
}

const cert = (name: string): Certificate => Certificate.fromPem(pkiRead(`${name}.crt`))[0];

/** The key signs and the certificate's public key verifies: they belong together. */
function assertPair(key: KeyObject, name: string): void {
  assert.equal(key.type, 'private');
  const digest = key.asymmetricKeyType === 'ed25519' ? null : 'sha256';
  const data = Buffer.from('cstp');
  assert.ok(verify(digest, data, cert(name).publicKey, sign(digest, data, key)), `key does not belong to ${name}`);
}

function assertKeyError(fn: () => unknown, message: RegExp, secret?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof KeyError, `expected a KeyError, got ${String(e)}`);
    assert.equal(e.name, 'KeyError');
    assert.match(e.message, message);
    assert.ok(!e.message.includes('\n'), 'one line');
    if (secret) assert.ok(!e.message.includes(secret), 'the passphrase is not echoed');
    return true;
  });
}

const fingerprints = (certs: Certificate[]): string[] => certs.map((c) => c.fingerprint);

// ---------------------------------------------------------------------------
// PEM and DER private keys

test('PEM PKCS#8 keys of every type in the test PKI load', () => {
  for (const name of ['user-a-rsa', 'user-a-ec', 'user-p384', 'user-ed25519']) {
    assertPair(loadPrivateKey(pkiRead(`${name}.key`)), name);
  }
});

test('PKCS#1 and SEC1, PEM and DER, and DER PKCS#8 load', () => {
  const rsa = pkiPath('user-a-rsa.key');
  const ec = pkiPath('user-a-ec.key');
  const pkcs1Pem = openssl('rsa1.pem', ['rsa', '-in', rsa, '-traditional']);
  assert.match(pkcs1Pem.toString(), /BEGIN RSA PRIVATE KEY/);
  assertPair(loadPrivateKey(pkcs1Pem), 'user-a-rsa');
  assertPair(loadPrivateKey(openssl('rsa1.der', ['rsa', '-in', rsa, '-traditional', '-outform', 'DER'])), 'user-a-rsa');
  const sec1Pem = openssl('sec1.pem', ['ec', '-in', ec]);
  assert.match(sec1Pem.toString(), /BEGIN EC PRIVATE KEY/);
  assertPair(loadPrivateKey(sec1Pem), 'user-a-ec');
  assertPair(loadPrivateKey(openssl('sec1.der', ['ec', '-in', ec, '-outform', 'DER'])), 'user-a-ec');
  assertPair(loadPrivateKey(openssl('p8.der', ['pkey', '-in', ec, '-outform', 'DER'])), 'user-a-ec');
  assertPair(loadPrivateKey(openssl('ed.der', ['pkey', '-in', pkiPath('user-ed25519.key'), '-outform', 'DER'])), 'user-ed25519');
});

test('encrypted keys need the right passphrase, which never appears in errors', () => {
  const pass = 'correct horse';
  const encPem = openssl('enc.pem', ['pkcs8', '-topk8', '-v2', 'aes-256-cbc', '-in', pkiPath('user-a-ec.key'), '-passout', `pass:${pass}`]);
  assert.match(encPem.toString(), /BEGIN ENCRYPTED PRIVATE KEY/);
  assertPair(loadPrivateKey(encPem, pass), 'user-a-ec');
  assertKeyError(() => loadPrivateKey(encPem), /passphrase is required/);
  assertKeyError(() => loadPrivateKey(encPem, 'wrong horse'), /wrong passphrase/, 'wrong horse');

  const encDer = openssl('enc.der', ['pkcs8', '-topk8', '-v2', 'aes-256-cbc', '-in', pkiPath('user-a-rsa.key'), '-passout', `pass:${pass}`, '-outform', 'DER']);
  assertPair(loadPrivateKey(encDer, pass), 'user-a-rsa');
  assertKeyError(() => loadPrivateKey(encDer), /passphrase is required/);
  assertKeyError(() => loadPrivateKey(encDer, 'wrong horse'), /wrong passphrase/, 'wrong horse');

  const legacyPem = openssl('rsa1enc.pem', ['rsa', '-in', pkiPath('user-a-rsa.key'), '-traditional', '-aes256', '-passout', `pass:${pass}`]);
  assert.match(legacyPem.toString(), /Proc-Type: 4,ENCRYPTED/);
  assertPair(loadPrivateKey(legacyPem, pass), 'user-a-rsa');
  assertKeyError(() => loadPrivateKey(legacyPem, 'wrong horse'), /wrong passphrase/, 'wrong horse');
});

test('things that are not private keys give a KeyError', () => {
  assertKeyError(() => loadPrivateKey(pkiRead('user-a-rsa.crt')), /no PEM PRIVATE KEY/);
  assertKeyError(() => loadPrivateKey(Buffer.from('hello world')), /not a private key/);
  assertKeyError(() => loadPrivateKey(Buffer.alloc(0)), /not a private key/);
  assertKeyError(() => loadPrivateKey(pkiRead('user-a-rsa.p12'), P12_PASS), /PKCS#12/);
});

// ---------------------------------------------------------------------------
// PKCS#12

test('isPkcs12 tells PFX files from everything else', () => {
  assert.ok(isPkcs12(pkiRead('user-a-rsa.p12')));
  assert.ok(isPkcs12(pkiRead('user-a-rsa.3des.p12')));
  assert.ok(!isPkcs12(pkiRead('user-a-rsa.crt')));
  assert.ok(!isPkcs12(cert('user-a-rsa').der));
  assert.ok(!isPkcs12(pkiRead('user-a-rsa.key')));
  assert.ok(!isPkcs12(Buffer.alloc(0)));
  assert.ok(!isPkcs12(Buffer.from('3003020103', 'hex')));
});

function assertCredentials(c: Credentials, name: string, chain: string[]): void {
  assert.equal(c.cert.fingerprint, cert(name).fingerprint);
  assertPair(c.key, name);
  assert.deepEqual(fingerprints(c.chain).sort(), fingerprints(chain.map(cert)).sort());
}

test('OpenSSL 3 default and legacy 3DES PKCS#12 load for RSA, EC, P-384 and Ed25519', () => {
  for (const suffix of ['.p12', '.3des.p12']) {
    for (const name of ['user-a-rsa', 'gw-b-ec', 'user-p384', 'user-ed25519']) {
      assertCredentials(loadPkcs12(pkiRead(name + suffix), P12_PASS), name, ['ca']);
    }
    assertCredentials(loadPkcs12(pkiRead('user-inter' + suffix), P12_PASS), 'user-inter', ['inter', 'ca']);
  }
});

test('a wrong PKCS#12 passphrase fails the MAC check', () => {
  for (const file of ['user-a-rsa.p12', 'user-a-rsa.3des.p12', 'user-ed25519.p12']) {
    assertKeyError(() => loadPkcs12(pkiRead(file), 'not-the-passphrase'), /wrong passphrase or corrupted file \(MAC check failed\)/, 'not-the-passphrase');
  }
});

const exportP12 = (out: string, pass: string, extra: string[]): Buffer =>
  openssl(out, ['pkcs12', '-export', '-inkey', pkiPath('user-a-ec.key'), '-in', pkiPath('user-a-ec.crt'), '-passout', `pass:${pass}`, ...extra]);

test('a non-ASCII passphrase works (UTF-8 for PBKDF2, BMP for the MAC)', () => {
  const pass = 'tëst€ 密码';
  const p12 = exportP12('unicode.p12', pass, []);
  assertCredentials(loadPkcs12(p12, pass), 'user-a-ec', []);
  assertKeyError(() => loadPkcs12(p12, 'test'), /MAC check failed/);
});

test('an empty passphrase, no MAC, and unencrypted bags all load', () => {
  assertCredentials(loadPkcs12(exportP12('empty.p12', '', []), ''), 'user-a-ec', []);
  const noMac = exportP12('nomac.p12', P12_PASS, ['-nomac']);
  assertCredentials(loadPkcs12(noMac, P12_PASS), 'user-a-ec', []);
  assertKeyError(() => loadPkcs12(noMac, 'wrong'), /wrong passphrase or corrupted file \(decryption failed\)/);
  assertCredentials(loadPkcs12(exportP12('plain.p12', P12_PASS, ['-keypbe', 'NONE', '-certpbe', 'NONE']), P12_PASS), 'user-a-ec', []);
});

test('an empty passphrase written as no octets at all (node-forge, some other tools) loads', () => {
  const key = forge.pki.privateKeyFromPem(pkiRead('user-a-rsa.key').toString());
  const crt = forge.pki.certificateFromPem(pkiRead('user-a-rsa.crt').toString());
  const der = Buffer.from(forge.asn1.toDer(forge.pkcs12.toPkcs12Asn1(key, crt, null)).getBytes(), 'binary');
  assertCredentials(loadPkcs12(der, ''), 'user-a-rsa', []);
  assertKeyError(() => loadPkcs12(der, 'x'), /MAC check failed/);
});

test('OpenSSL 1.x style PKCS#12 (certificates under RC2) loads', (t) => {
  let p12: Buffer;
  try {
    p12 = openssl('rc2.p12', ['pkcs12', '-export', '-legacy', '-inkey', pkiPath('user-a-rsa.key'), '-in', pkiPath('user-a-rsa.crt'),
      '-certfile', pkiPath('ca.crt'), '-passout', `pass:${P12_PASS}`]);
  } catch {
    t.skip('this openssl has no legacy provider to write RC2');
    return;
  }
  assertCredentials(loadPkcs12(p12, P12_PASS), 'user-a-rsa', ['ca']);
  const rc2128 = openssl('rc2-128.p12', ['pkcs12', '-export', '-legacy', '-certpbe', 'PBE-SHA1-RC2-128', '-inkey', pkiPath('user-a-rsa.key'),
    '-in', pkiPath('user-a-rsa.crt'), '-passout', `pass:${P12_PASS}`]);
  assertCredentials(loadPkcs12(rc2128, P12_PASS), 'user-a-rsa', []);
});

test('a PKCS#12 without a key, or without its certificate, is refused clearly', () => {
  const certsOnly = openssl('certs.p12', ['pkcs12', '-export', '-nokeys', '-in', pkiPath('user-a-rsa.crt'), '-passout', `pass:${P12_PASS}`]);
  assertKeyError(() => loadPkcs12(certsOnly, P12_PASS), /no private key/);
  const keyOnly = openssl('key.p12', ['pkcs12', '-export', '-nocerts', '-inkey', pkiPath('user-a-rsa.key'), '-passout', `pass:${P12_PASS}`]);
  assertKeyError(() => loadPkcs12(keyOnly, P12_PASS), /no certificate .* matches/);
});

test('corrupted and truncated PKCS#12 give a KeyError, not a crash', () => {
  const good = pkiRead('user-a-rsa.p12');
  for (const at of [40, Math.floor(good.length / 2), good.length - 30]) {
    const bad = Buffer.from(good);
    bad[at] ^= 0x55;
    assert.throws(() => loadPkcs12(bad, P12_PASS), KeyError);
  }
  for (const length of [0, 10, 100, good.length - 1]) {
    assert.throws(() => loadPkcs12(good.subarray(0, length), P12_PASS), KeyError);
  }
});

// ---------------------------------------------------------------------------
// Credentials for the CLI

test('loadCredentials: certificate and key files', () => {
  assertCredentials(loadCredentials(pkiRead('user-a-rsa.crt'), pkiRead('user-a-rsa.key')), 'user-a-rsa', []);
  assertCredentials(loadCredentials(pkiRead('user-ed25519.crt'), pkiRead('user-ed25519.key')), 'user-ed25519', []);
});

test('loadCredentials: the key picks its certificate from a chain file, the rest is the chain', () => {
  const chainFile = Buffer.concat([pkiRead('ca.crt'), pkiRead('inter.crt'), pkiRead('user-inter.crt')]);
  const c = loadCredentials(chainFile, pkiRead('user-inter.key'));
  assertCredentials(c, 'user-inter', ['inter', 'ca']);
  assert.deepEqual(fingerprints(c.chain), fingerprints([cert('ca'), cert('inter')]), 'file order kept');
});

test('loadCredentials: a key that does not match is refused', () => {
  assertKeyError(() => loadCredentials(pkiRead('user-a-rsa.crt'), pkiRead('gw-b-rsa.key')), /does not match the certificate .*User A \(RSA\)/);
  assertKeyError(() => loadCredentials(pkiRead('user-a-ec.crt'), pkiRead('user-a-rsa.key')), /does not match/);
});

test('loadCredentials: PKCS#12 alone, or as the key of a certificate', () => {
  assertCredentials(loadCredentials(pkiRead('user-inter.p12'), undefined, P12_PASS), 'user-inter', ['inter', 'ca']);
  const c = loadCredentials(pkiRead('user-inter.crt'), pkiRead('user-inter.3des.p12'), P12_PASS);
  assertCredentials(c, 'user-inter', ['inter', 'ca']);
  assertKeyError(() => loadCredentials(pkiRead('user-a-rsa.crt'), pkiRead('user-inter.p12'), P12_PASS), /does not match/);
  assertKeyError(() => loadCredentials(pkiRead('user-a-rsa.p12'), undefined, 'wrong'), /MAC check failed/);
});

test('loadCredentials: one PEM with certificate and key; a missing key is named', () => {
  const combined = Buffer.concat([pkiRead('user-a-ec.crt'), pkiRead('user-a-ec.key')]);
  assertCredentials(loadCredentials(combined), 'user-a-ec', []);
  assertKeyError(() => loadCredentials(pkiRead('user-a-ec.crt')), /no private key given/);
});
