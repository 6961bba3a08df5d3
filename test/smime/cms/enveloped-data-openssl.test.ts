/** EnvelopedData/AuthEnvelopedData interop with `openssl cms`, both directions. */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from '../../../src/asn1/der';
import {
  envelope, envelopeToBuffer, openEnvelope, type EnvelopeOptions,
} from '../../../src/smime/cms/enveloped-data';
import { pkiPath } from '../../helpers/pki';
import { cert, key, layout, tempDir } from './envelope-fixtures';

const dir = tempDir();
const BODY = Buffer.concat([
  Buffer.from('Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n'),
  randomBytes(3000),
  Buffer.from('\r\nFrom the end\r\n.\r\n'),
]);
const bodyFile = join(dir, 'body.bin');
writeFileSync(bodyFile, BODY);

function openssl(args: string[]): Buffer {
  return execFileSync('openssl', args, { maxBuffer: 64 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** `openssl cms -decrypt` of our DER with recipient `name`. */
function opensslDecrypt(der: Buffer, name: string, file = 'ours.der'): Buffer {
  const path = join(dir, file);
  writeFileSync(path, der);
  return openssl(['cms', '-decrypt', '-inform', 'DER', '-in', path, '-recip', pkiPath(`${name}.crt`), '-inkey', pkiPath(`${name}.key`), '-binary']);
}

/** `openssl cms -encrypt -binary -outform DER` of BODY (or `input`) to the named certificates; -keyopt applies to the last one. */
function opensslEncrypt(args: string[], names: string[], input = bodyFile): Buffer {
  const out = join(dir, 'theirs.der');
  const recips = names.flatMap((n) => ['-recip', pkiPath(`${n}.crt`)]);
  openssl(['cms', '-encrypt', '-binary', '-outform', 'DER', '-in', input, '-out', out, ...recips, ...args]);
  return readFileSync(out);
}

// ---------------------------------------------------------------------------
// cstp -> openssl

const OURS: Array<{ to: string[]; opts: EnvelopeOptions }> = [
  { to: ['gw-b-rsa'], opts: {} },
  { to: ['gw-b-rsa'], opts: { cipher: 'aes-128-cbc' } },
  { to: ['gw-b-rsa'], opts: { cipher: 'aes-128-gcm' } },
  { to: ['gw-b-rsa'], opts: { cipher: 'aes-256-gcm' } },
  { to: ['gw-b-rsa'], opts: { rsaKeyTransport: 'rsa-oaep' } },
  { to: ['gw-b-rsa'], opts: { rsaKeyTransport: 'rsa-oaep', cipher: 'aes-256-gcm' } },
  { to: ['gw-b-rsa'], opts: { recipientIdentifier: 'subjectKeyIdentifier' } },
  { to: ['gw-b-ec'], opts: { cipher: 'aes-128-cbc' } },
  { to: ['gw-b-ec'], opts: { cipher: 'aes-256-cbc' } },
  { to: ['gw-b-ec'], opts: { cipher: 'aes-256-gcm' } },
  { to: ['gw-b-ec'], opts: { recipientIdentifier: 'subjectKeyIdentifier', cipher: 'aes-128-gcm' } },
  { to: ['user-p384'], opts: {} },
  { to: ['gw-b-ec', 'gw-b-rsa', 'user-p384'], opts: { rsaKeyTransport: 'rsa-oaep' } },
];

for (const { to, opts } of OURS) {
  test(`openssl decrypts ours: ${JSON.stringify(opts)} to ${to.join(', ')}`, () => {
    const der = envelopeToBuffer(BODY, to.map(cert), opts);
    for (const name of to) assert.deepEqual(opensslDecrypt(der, name), BODY, `as ${name}`);
  });
}

test('openssl decrypts a streamed 3 MB envelope() output', () => {
  const chunk = randomBytes(64 * 1024);
  const chunks = Array.from({ length: 48 }, () => chunk);
  for (const cipher of ['aes-256-cbc', 'aes-128-gcm'] as const) {
    const der = Buffer.concat([...envelope(chunks, 48 * chunk.length, [cert('gw-b-rsa')], { cipher })]);
    assert.ok(!parse(der).indefinite, 'definite-length DER');
    assert.deepEqual(opensslDecrypt(der, 'gw-b-rsa'), Buffer.concat(chunks));
  }
});

// ---------------------------------------------------------------------------
// openssl -> cstp

interface Theirs {
  what: string;
  args: string[];
  to: string[];
  cipher: string;
  keyEncryption: string;
}

const OAEP = ['-keyopt', 'rsa_padding_mode:oaep'];
const THEIRS: Theirs[] = [
  { what: 'AES-128-CBC', args: ['-aes-128-cbc'], to: ['gw-b-rsa'], cipher: 'aes-128-cbc', keyEncryption: 'rsa-pkcs1' },
  { what: 'AES-192-CBC', args: ['-aes-192-cbc'], to: ['gw-b-rsa'], cipher: 'aes-192-cbc', keyEncryption: 'rsa-pkcs1' },
  { what: 'AES-256-CBC', args: ['-aes-256-cbc'], to: ['gw-b-rsa'], cipher: 'aes-256-cbc', keyEncryption: 'rsa-pkcs1' },
  { what: 'AES-128-GCM', args: ['-aes-128-gcm'], to: ['gw-b-rsa'], cipher: 'aes-128-gcm', keyEncryption: 'rsa-pkcs1' },
  { what: 'AES-192-GCM', args: ['-aes-192-gcm'], to: ['gw-b-rsa'], cipher: 'aes-192-gcm', keyEncryption: 'rsa-pkcs1' },
  { what: 'AES-256-GCM', args: ['-aes-256-gcm'], to: ['gw-b-rsa'], cipher: 'aes-256-gcm', keyEncryption: 'rsa-pkcs1' },
  { what: '3DES (legacy)', args: ['-des3'], to: ['gw-b-rsa'], cipher: 'des-ede3-cbc', keyEncryption: 'rsa-pkcs1' },
  { what: 'OAEP SHA-1 default', args: ['-aes-256-cbc', ...OAEP], to: ['gw-b-rsa'], cipher: 'aes-256-cbc', keyEncryption: 'rsa-oaep-sha1' },
  {
    what: 'OAEP SHA-256', args: ['-aes-256-cbc', ...OAEP, '-keyopt', 'rsa_oaep_md:sha256', '-keyopt', 'rsa_mgf1_md:sha256'],
    to: ['gw-b-rsa'], cipher: 'aes-256-cbc', keyEncryption: 'rsa-oaep',
  },
  {
    what: 'OAEP SHA-512 + GCM', args: ['-aes-256-gcm', ...OAEP, '-keyopt', 'rsa_oaep_md:sha512', '-keyopt', 'rsa_mgf1_md:sha512'],
    to: ['gw-b-rsa'], cipher: 'aes-256-gcm', keyEncryption: 'rsa-oaep-sha512',
  },
  { what: 'subjectKeyIdentifier rid', args: ['-aes-256-cbc', '-keyid'], to: ['gw-b-rsa'], cipher: 'aes-256-cbc', keyEncryption: 'rsa-pkcs1' },
  { what: 'ECDH default sha1kdf', args: ['-aes-128-cbc'], to: ['gw-b-ec'], cipher: 'aes-128-cbc', keyEncryption: 'ecdh-p256-sha1kdf' },
  { what: 'ECDH aes256-wrap', args: ['-aes-256-cbc'], to: ['gw-b-ec'], cipher: 'aes-256-cbc', keyEncryption: 'ecdh-p256-sha1kdf' },
  { what: 'ECDH aes192-wrap + GCM', args: ['-aes-192-gcm'], to: ['gw-b-ec'], cipher: 'aes-192-gcm', keyEncryption: 'ecdh-p256-sha1kdf' },
  ...(['sha224', 'sha256', 'sha384', 'sha512'] as const).map((md) => ({
    what: `ECDH ${md}kdf`, args: ['-aes-256-cbc', '-keyopt', `ecdh_kdf_md:${md}`], to: ['gw-b-ec'], cipher: 'aes-256-cbc',
    keyEncryption: `ecdh-p256-${md}kdf`,
  })),
  { what: 'ECDH P-384', args: ['-aes-256-gcm'], to: ['user-p384'], cipher: 'aes-256-gcm', keyEncryption: 'ecdh-p384-sha1kdf' },
  { what: 'ECDH subjectKeyIdentifier rid', args: ['-aes-128-cbc', '-keyid'], to: ['gw-b-ec'], cipher: 'aes-128-cbc', keyEncryption: 'ecdh-p256-sha1kdf' },
  { what: '-stream CBC (indefinite lengths)', args: ['-aes-256-cbc', '-stream'], to: ['gw-b-rsa'], cipher: 'aes-256-cbc', keyEncryption: 'rsa-pkcs1' },
  { what: '-stream GCM (indefinite lengths)', args: ['-aes-128-gcm', '-stream'], to: ['gw-b-rsa'], cipher: 'aes-128-gcm', keyEncryption: 'rsa-pkcs1' },
  { what: '-stream ECDH', args: ['-aes-128-cbc', '-stream'], to: ['gw-b-ec'], cipher: 'aes-128-cbc', keyEncryption: 'ecdh-p256-sha1kdf' },
];

for (const t of THEIRS) {
  test(`we decrypt openssl's ${t.what}`, () => {
    const der = opensslEncrypt(t.args, t.to);
    if (t.args.includes('-stream')) assert.ok(parse(der).indefinite, 'openssl wrote indefinite lengths');
    const opened = openEnvelope(der, [key(t.to[0])]);
    assert.deepEqual(opened.content, BODY);
    assert.equal(opened.cipher, t.cipher);
    assert.equal(opened.keyEncryption, t.keyEncryption);
    assert.equal(opened.authenticated, t.cipher.endsWith('gcm'));
  });
}

test("we decrypt openssl's multi-recipient message as either recipient", () => {
  const der = opensslEncrypt(['-aes-256-cbc'], ['gw-b-ec', 'user-p384', 'gw-b-rsa']);
  for (const name of ['gw-b-ec', 'user-p384', 'gw-b-rsa']) assert.deepEqual(openEnvelope(der, [key(name)]).content, BODY);
});

test("we decrypt openssl's -stream output of a large body (chunked encryptedContent)", () => {
  const big = join(dir, 'big.bin');
  const body = randomBytes(1024 * 1024 + 5);
  writeFileSync(big, body);
  const der = opensslEncrypt(['-aes-256-cbc', '-stream'], ['gw-b-rsa'], big);
  const ct = layout(der).encryptedContent;
  assert.ok(ct.constructed && ct.indefinite, 'openssl -stream writes a constructed, indefinite encryptedContent');
  assert.deepEqual(openEnvelope(der, [key('gw-b-rsa')]).content, body);
});
