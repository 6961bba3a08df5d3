/**
 * Ed25519 S/MIME signatures (RFC 8419), both directions, against the independent implementation
 * in rfc8419.ts: none of the installed peers can do Ed25519 CMS (OpenSSL 3.0, gpgsm 2.2 and
 * NSS 3.87 all fail on it), so this is the only outside check of cstp's Ed25519 path.
 */
import { strict as assert } from 'node:assert';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { pkiRead } from '../helpers/pki';
import * as cli from './cstp';
import { assert7bitSafe, assertCrlf, assertOuterHeaders, assertRestored, assertSameContent, assertSmimeKind } from './compare';
import { REPRESENTATIVE, message } from './messages';
import { joinSigned, splitSigned, unwrapPkcs7Mime, wrapPkcs7Mime } from './mime-der';
import { Workdir } from './peers';
import { signEd25519, verifyEd25519 } from './rfc8419';

const work = new Workdir('ed25519');
after(() => work.remove());

const FROM = 'ed@a.example'; // the address in user-ed25519's certificate
const ca = new X509Certificate(pkiRead('ca.crt'));
const edCert = new X509Certificate(pkiRead('user-ed25519.crt'));
const edKey = createPrivateKey(pkiRead('user-ed25519.key'));

describe('Ed25519 (RFC 8419) against an independent implementation', () => {
  test('harness self-check: the independent signer and verifier agree, and catch tampering', () => {
    const msg = message('plain', FROM);
    const sig = signEd25519(msg.entity, edCert.raw, edKey, true);
    assert.ok(verifyEd25519(sig, ca, msg.entity).signer.subject.includes('Ed25519'));
    const opaque = signEd25519(msg.entity, edCert.raw, edKey, false);
    assert.ok(verifyEd25519(opaque, ca).content.equals(msg.entity));
    assert.throws(() => verifyEd25519(sig, ca, Buffer.concat([msg.entity, Buffer.from('x')])), /messageDigest/);
    const flipped = Buffer.from(sig);
    flipped[flipped.length - 5] ^= 1; // inside the signature value
    assert.throws(() => verifyEd25519(flipped, ca, msg.entity), /does not verify/);
    assert.throws(() => verifyEd25519(sig, new X509Certificate(pkiRead('other-ca.crt')), msg.entity), /trust anchor/);
  });

  for (const name of REPRESENTATIVE) {
    const msg = message(name, FROM);
    test(`cstp sign Ed25519 (detached) -> independent verify: ${name}`, async () => {
      const signed = cli.ok(await cli.sign(msg.full, { signer: 'user-ed25519' }), 'sign Ed25519');
      assertCrlf(signed, 'signed');
      assertOuterHeaders(signed, msg, 'signed');
      assertSmimeKind(signed, 'multipart/signed', 'signed');
      const parts = splitSigned(signed);
      assert.equal(parts.micalg?.toLowerCase(), 'sha-512', 'micalg for Ed25519 (RFC 8419: SHA-512)');
      assert7bitSafe(parts.content, 'signed entity');
      verifyEd25519(parts.signature, ca, parts.content);
      assertSameContent(parts.content, msg.entity, 'signed content');
    });

    test(`cstp sign --opaque Ed25519 -> independent verify: ${name}`, async () => {
      const signed = cli.ok(await cli.sign(msg.full, { signer: 'user-ed25519', opaque: true }), 'sign --opaque Ed25519');
      assertSmimeKind(signed, 'signed-data', 'signed');
      const { content } = verifyEd25519(unwrapPkcs7Mime(signed), ca);
      assertSameContent(content, msg.entity, 'signed content');
    });
  }

  test('independent Ed25519 (detached) -> cstp verify', async () => {
    const msg = message('nested', FROM);
    const signed = joinSigned(msg.entity, signEd25519(msg.entity, edCert.raw, edKey, true), msg.outer, 'sha-512');
    const v = await cli.verify(work, signed);
    cli.ok(v, 'verify of an independent Ed25519 signature');
    assertRestored(v.content, msg, 'cstp verify --out');
  });

  test('independent Ed25519 (opaque) -> cstp verify', async () => {
    const msg = message('eightbit', FROM);
    const signed = wrapPkcs7Mime(signEd25519(msg.entity, edCert.raw, edKey, false), 'signed-data', msg.outer);
    const v = await cli.verify(work, signed);
    cli.ok(v, 'verify of an independent opaque Ed25519 signature');
    assertRestored(v.content, msg, 'cstp verify --out');
  });

  test('independent Ed25519 signature over other content -> cstp verify exits non-zero', async () => {
    const msg = message('plain', FROM);
    const sig = signEd25519(msg.entity, edCert.raw, edKey, true);
    const other = Buffer.from(msg.entity.toString('latin1').replace('Hello', 'Jello'), 'latin1');
    cli.refused(await cli.verify(work, joinSigned(other, sig, msg.outer, 'sha-512')), 'verify of a mismatched Ed25519 signature');
  });
});
