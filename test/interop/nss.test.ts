/**
 * Interop with NSS 3.x `cmsutil` (Thunderbird's library; raw CMS, converted with mime-der.ts),
 * both directions: RSA and ECDSA signatures (detached and opaque), EnvelopedData with AES-CBC
 * and RSA PKCS#1 v1.5 (NSS always envelopes with AES-128-CBC). NSS cannot decrypt RSA-OAEP,
 * AuthEnvelopedData or ECDH, and cannot envelope to an EC certificate: those paths are covered
 * against openssl only. A representative subset of the corpus keeps this fast.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import * as cli from './cstp';
import { REPRESENTATIVE, message } from './messages';
import { joinSigned, splitSigned } from './mime-der';
import { Nss, Workdir, openssl, skipUnless } from './peers';
import {
  cstpEncryptPeerDecrypt,
  cstpSignEncryptPeerDecryptVerify,
  cstpSignPeerVerify,
  peerEncryptCstpDecrypt,
  peerSignCstpVerify,
  peerSignEncryptCstpUnwrap,
} from './raw-flows';

// openssl too: it checks which algorithms a message uses and makes the bad-noeku signature.
const skip = skipUnless('certutil', 'pk12util', 'cmsutil', 'openssl');
const work = new Workdir('nss');
let nss: Nss | undefined;

before(async () => {
  if (skip) return;
  nss = await Nss.create(work, ['user-a-rsa', 'user-a-ec', 'gw-b-rsa']);
});

after(() => work.remove());

const peer = (): Nss => {
  assert.ok(nss, 'NSS database not set up');
  return nss;
};

async function nssEncrypt(entity: Buffer): Promise<Buffer> {
  const e = await peer().encrypt(entity, 'gw-b-rsa');
  assert.equal(e.rc, 0, e.stderr);
  return e.der;
}

describe('NSS: signatures and encryption, representative corpus', { skip }, () => {
  for (const name of REPRESENTATIVE) {
    const msg = message(name);
    const alsoUntrusted = name === REPRESENTATIVE[0]; // trust does not depend on the content: once per form
    test(`cstp sign (detached) -> NSS verify: ${name}`, () => cstpSignPeerVerify(peer(), msg, { signer: 'user-a-rsa' }));
    test(`cstp sign --opaque -> NSS verify: ${name}`, () => cstpSignPeerVerify(peer(), msg, { signer: 'user-a-rsa', opaque: true }));
    test(`NSS sign RSA (detached) -> cstp verify: ${name}`, () => peerSignCstpVerify(peer(), work, msg, 'user-a-rsa', true, alsoUntrusted));
    test(`NSS sign RSA (opaque) -> cstp verify: ${name}`, () => peerSignCstpVerify(peer(), work, msg, 'user-a-rsa', false, alsoUntrusted));
    test(`cstp encrypt -> NSS decrypt: ${name}`, () => cstpEncryptPeerDecrypt(peer(), msg, 'gw-b-rsa'));
    test(`NSS encrypt (AES-128-CBC) -> cstp decrypt: ${name}`, async () =>
      peerEncryptCstpDecrypt(work, msg, await nssEncrypt(msg.entity), { pem: 'gw-b-rsa' }, `cstp decrypt of NSS "${name}"`));
  }
});

describe('NSS: algorithm and key variants', { skip }, () => {
  const msg = message('eightbit');
  test('cstp sign ECDSA P-256 (detached) -> NSS verify', () => cstpSignPeerVerify(peer(), msg, { signer: 'user-a-ec' }));
  test('cstp sign ECDSA P-256 (opaque) -> NSS verify', () => cstpSignPeerVerify(peer(), msg, { signer: 'user-a-ec', opaque: true }));
  test('NSS sign ECDSA P-256 (detached) -> cstp verify', () => peerSignCstpVerify(peer(), work, msg, 'user-a-ec', true, true));
  test('NSS sign ECDSA P-256 (opaque) -> cstp verify', () => peerSignCstpVerify(peer(), work, msg, 'user-a-ec', false, true));
  // NSS 3.87 also verifies these (checked with openssl-made signatures), so ours must pass too.
  test('cstp sign ECDSA P-384 SHA-384 -> NSS verify', () =>
    cstpSignPeerVerify(peer(), message('eightbit', 'p384@a.example'), { signer: 'user-p384', digest: 'sha384' }));
  test('cstp sign --pss -> NSS verify', () => cstpSignPeerVerify(peer(), msg, { signer: 'user-a-rsa', pss: true }));
  test('cstp sign --digest sha512 --opaque -> NSS verify', () => cstpSignPeerVerify(peer(), msg, { signer: 'user-a-rsa', digest: 'sha512', opaque: true }));

  test('cstp encrypt --cipher aes-128-cbc -> NSS decrypt', () => cstpEncryptPeerDecrypt(peer(), msg, 'gw-b-rsa', { cipher: 'aes-128-cbc' }));
  test('NSS encrypt -> cstp decrypt --key .p12 --pass-env', async () =>
    peerEncryptCstpDecrypt(work, msg, await nssEncrypt(msg.entity), { p12: 'gw-b-rsa', via: 'env' }, 'cstp decrypt (p12) of NSS'));
});

describe('NSS: nested layers', { skip }, () => {
  test('cstp sign | cstp encrypt -> NSS decrypt, then NSS verify', () =>
    cstpSignEncryptPeerDecryptVerify(peer(), message('nested'), 'user-a-rsa', 'gw-b-rsa'));
  test('NSS sign (detached) + encrypt -> cstp unwrap', () =>
    peerSignEncryptCstpUnwrap(peer(), work, message('eightbit'), 'user-a-rsa', true, 'gw-b-rsa', { pem: 'gw-b-rsa' }));
  test('NSS sign ECDSA (opaque) + encrypt -> cstp unwrap with a .p12 key', () =>
    peerSignEncryptCstpUnwrap(peer(), work, message('empty'), 'user-a-ec', false, 'gw-b-rsa', { p12: 'gw-b-rsa', via: 'env' }));
});

describe('NSS: trust and refusal', { skip }, () => {
  test('NSS signature over other content -> cstp verify exits non-zero', async () => {
    const msg = message('plain');
    const s = await peer().sign(msg.entity, 'user-a-ec', true);
    assert.equal(s.rc, 0, s.stderr);
    const other = Buffer.from(msg.entity.toString('latin1').replace('Hello', 'Jello'), 'latin1');
    cli.refused(await cli.verify(work, joinSigned(other, s.der, msg.outer)), 'verify of a signature over other content');
  });

  // NSS verifies for certUsageEmailSigner: a certificate without emailProtection is
  // SEC_ERROR_INADEQUATE_CERT_TYPE. (cmsutil will not even sign with bad-noeku, so the
  // peer-made signature comes from openssl.) cstp must refuse such signatures as well.
  test('bad-noeku: NSS rejects its signatures, so does cstp', async () => {
    const msg = message('plain', 'bad@a.example');
    const s = await openssl.sign(msg.entity, { signer: 'bad-noeku', detached: true });
    assert.equal(s.rc, 0, s.stderr);
    const parts = splitSigned(s.stdout);
    const peerView = await peer().verify(parts.signature, parts.content);
    assert.ok(!peerView.ok, 'peer baseline: NSS rejects bad-noeku');
    cli.refused(await cli.verify(work, joinSigned(parts.content, parts.signature, msg.outer)), 'verify of a bad-noeku signature');

    const ours = await cli.sign(msg.full, { signer: 'bad-noeku' });
    if (ours.rc !== 0) {
      cli.refused(ours, 'sign with bad-noeku'); // refusing to sign is fine too
      return;
    }
    const oursParts = splitSigned(ours.stdout);
    assert.ok(!(await peer().verify(oursParts.signature, oursParts.content)).ok, 'NSS must reject a cstp signature by bad-noeku');
  });
});
