/**
 * Interop with GnuPG gpgsm 2.2 (raw CMS; converted with mime-der.ts), both directions, for what
 * gpgsm supports: RSA PKCS#1 v1.5 SHA-256 signatures (detached and opaque) both ways, ECDSA and
 * PSS verification, EnvelopedData with AES-CBC content and RSA PKCS#1 v1.5 key transport. gpgsm
 * cannot import EC keys (segfaults),
 * cannot decrypt RSA-OAEP or AuthEnvelopedData, and cannot encrypt to EC certificates, so those
 * paths are covered against openssl only. A representative subset of the corpus keeps this fast.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import * as cli from './cstp';
import { REPRESENTATIVE, message } from './messages';
import { joinSigned } from './mime-der';
import { Gpgsm, Workdir, openssl, skipUnless } from './peers';
import {
  cstpEncryptPeerDecrypt,
  cstpSignEncryptPeerDecryptVerify,
  cstpSignPeerVerify,
  peerEncryptCstpDecrypt,
  peerSignCstpVerify,
  peerSignEncryptCstpUnwrap,
} from './raw-flows';

// openssl too: it checks which algorithms a message uses and makes the bad-noeku signature.
const skip = skipUnless('gpgsm', 'gpg-agent', 'gpgconf', 'openssl');
const work = new Workdir('gpgsm');
let gpgsm: Gpgsm | undefined;

before(async () => {
  if (skip) return;
  // One home per file: importing keys is the slow part. Only the legacy 3DES p12 imports.
  gpgsm = await Gpgsm.create(work, ['user-a-rsa', 'gw-b-rsa', 'bad-noeku']);
});

after(async () => {
  // gpg-agent would otherwise outlive the test process (also when before() failed half-way).
  if (!skip) await Gpgsm.killAgent(work);
  work.remove();
});

const peer = (): Gpgsm => {
  assert.ok(gpgsm, 'gpgsm home not set up');
  return gpgsm;
};

describe('gpgsm: signatures and encryption, representative corpus', { skip }, () => {
  for (const name of REPRESENTATIVE) {
    const msg = message(name);
    const alsoUntrusted = name === REPRESENTATIVE[0]; // trust does not depend on the content: once per form
    test(`cstp sign (detached) -> gpgsm verify: ${name}`, () => cstpSignPeerVerify(peer(), msg, { signer: 'user-a-rsa' }));
    test(`cstp sign --opaque -> gpgsm verify: ${name}`, () => cstpSignPeerVerify(peer(), msg, { signer: 'user-a-rsa', opaque: true }));
    test(`gpgsm --detach-sign -> cstp verify: ${name}`, () => peerSignCstpVerify(peer(), work, msg, 'user-a-rsa', true, alsoUntrusted));
    test(`gpgsm --sign (opaque) -> cstp verify: ${name}`, () => peerSignCstpVerify(peer(), work, msg, 'user-a-rsa', false, alsoUntrusted));
    test(`cstp encrypt -> gpgsm decrypt: ${name}`, () => cstpEncryptPeerDecrypt(peer(), msg, 'gw-b-rsa'));
    test(`gpgsm encrypt (default AES-128-CBC) -> cstp decrypt: ${name}`, async () => {
      const e = await peer().encrypt(msg.entity, 'gw-b-rsa');
      assert.equal(e.rc, 0, e.stderr);
      await peerEncryptCstpDecrypt(work, msg, e.der, { pem: 'gw-b-rsa' }, `cstp decrypt of gpgsm AES-128 "${name}"`);
    });
  }
});

describe('gpgsm: algorithm and key variants', { skip }, () => {
  const msg = message('eightbit');
  // gpgsm verifies ECDSA (it only cannot import EC private keys) and RSASSA-PSS when the salt
  // length equals the hash length, the usual S/MIME choice (openssl's default maximum salt is
  // rejected: "PSS hash algorithm 'SHA256' rejected due to salt length 222").
  test('cstp sign ECDSA P-256 -> gpgsm verify', () => cstpSignPeerVerify(peer(), msg, { signer: 'user-a-ec' }));
  test('cstp sign --opaque ECDSA P-384 SHA-384 -> gpgsm verify', () =>
    cstpSignPeerVerify(peer(), message('eightbit', 'p384@a.example'), { signer: 'user-p384', digest: 'sha384', opaque: true }));
  test('cstp sign --pss -> gpgsm verify', () => cstpSignPeerVerify(peer(), msg, { signer: 'user-a-rsa', pss: true }));
  test('cstp sign --digest sha512 -> gpgsm verify', () => cstpSignPeerVerify(peer(), msg, { signer: 'user-a-rsa', digest: 'sha512' }));
  test('cstp encrypt --cipher aes-128-cbc -> gpgsm decrypt', () => cstpEncryptPeerDecrypt(peer(), msg, 'gw-b-rsa', { cipher: 'aes-128-cbc' }));
  test('gpgsm encrypt --cipher-algo AES256 -> cstp decrypt --key .p12 --pass-env', async () => {
    const e = await peer().encrypt(msg.entity, 'gw-b-rsa', 'AES256');
    assert.equal(e.rc, 0, e.stderr);
    await peerEncryptCstpDecrypt(work, msg, e.der, { p12: 'gw-b-rsa', via: 'env' }, 'cstp decrypt (p12) of gpgsm AES256');
  });
  test('gpgsm encrypt --cipher-algo AES256 -> cstp decrypt --cert/--key PEM', async () => {
    const e = await peer().encrypt(msg.entity, 'gw-b-rsa', 'AES256');
    assert.equal(e.rc, 0, e.stderr);
    await peerEncryptCstpDecrypt(work, msg, e.der, { pem: 'gw-b-rsa' }, 'cstp decrypt (PEM) of gpgsm AES256');
  });
});

describe('gpgsm: nested layers', { skip }, () => {
  test('cstp sign | cstp encrypt -> gpgsm decrypt, then gpgsm verify', () =>
    cstpSignEncryptPeerDecryptVerify(peer(), message('nested'), 'user-a-rsa', 'gw-b-rsa'));
  test('gpgsm detach-sign + encrypt (wrapped) -> cstp unwrap', () =>
    peerSignEncryptCstpUnwrap(peer(), work, message('eightbit'), 'user-a-rsa', true, 'gw-b-rsa', { pem: 'gw-b-rsa' }));
  test('gpgsm opaque sign + encrypt (wrapped) -> cstp unwrap', () =>
    peerSignEncryptCstpUnwrap(peer(), work, message('longline'), 'user-a-rsa', false, 'gw-b-rsa', { pem: 'gw-b-rsa' }));
});

describe('gpgsm: trust and refusal', { skip }, () => {
  test('gpgsm signature over other content -> cstp verify exits non-zero', async () => {
    const msg = message('plain');
    const s = await peer().sign(msg.entity, 'user-a-rsa', true);
    assert.equal(s.rc, 0, s.stderr);
    const other = Buffer.from(msg.entity.toString('latin1').replace('Hello', 'Jello'), 'latin1');
    cli.refused(await cli.verify(work, joinSigned(other, s.der, msg.outer)), 'verify of a signature over other content');
  });

  // Documented peer difference: gpgsm does not enforce the emailProtection EKU. It signs with
  // and accepts signatures by bad-noeku (EKU clientAuth only), where openssl and NSS refuse
  // them (RFC 8550 4.4.4). cstp sides with openssl and NSS.
  test('bad-noeku: gpgsm accepts its signature (peer difference), cstp verify refuses it', async () => {
    const msg = message('plain', 'bad@a.example');
    const s = await peer().sign(msg.entity, 'bad-noeku', true);
    assert.equal(s.rc, 0, s.stderr);
    const signed = joinSigned(msg.entity, s.der, msg.outer);
    const v = await peer().verify(s.der, msg.entity);
    assert.ok(v.ok, `peer baseline: gpgsm 2.2 accepts bad-noeku (if this changed, update the comment): ${v.detail}`);
    assert.notEqual((await openssl.verify(signed)).rc, 0, 'peer baseline: openssl rejects the same signature');
    cli.refused(await cli.verify(work, signed), 'verify of a gpgsm signature by bad-noeku');
  });
});

// The same home must be able to read what it wrote to gpgsm itself: a guard that a failure above
// is cstp's and not a broken harness.
describe('gpgsm: harness self-check', { skip }, () => {
  test('gpgsm sign -> gpgsm verify and gpgsm encrypt -> gpgsm decrypt', async () => {
    const msg = message('plain');
    const s = await peer().sign(msg.entity, 'user-a-rsa', false);
    assert.equal(s.rc, 0, s.stderr);
    const v = await peer().verify(s.der);
    assert.ok(v.ok, v.detail);
    assert.ok(v.content.equals(msg.entity));
    const e = await peer().encrypt(msg.entity, 'gw-b-rsa');
    assert.equal(e.rc, 0, e.stderr);
    const d = await peer().decrypt(e.der);
    assert.ok(d.plain.equals(msg.entity), d.stderr);
  });
});
