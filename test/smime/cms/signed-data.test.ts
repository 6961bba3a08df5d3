import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, createSign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  algorithm, children, content, encoding, expectSequence, integer, isContext, nullValue, octetString, oid, parse, readOid, retag, sequence,
  set, setOf, tlv, type Asn1Node,
} from '../../../src/asn1/der';
import { OID } from '../../../src/asn1/oids';
import { Certificate } from '../../../src/pki/certificate';
import { CmsError, parseContentInfo } from '../../../src/smime/cms/content-info';
import type { DigestName } from '../../../src/smime/cms/digest';
import { UnsupportedSignatureError, verifierFor } from '../../../src/smime/cms/signature-algorithms';
import {
  DEFAULT_CAPABILITIES, signDetached, signEncapsulated, signingDigest, verifySignedData, type SignerCredentials, type SignOptions,
} from '../../../src/smime/cms/signed-data';
import { pkiPath, pkiRead } from '../../helpers/pki';

const work = mkdtempSync(join(tmpdir(), 'cstp-signed-data-'));
after(() => rmSync(work, { recursive: true, force: true }));
let fileNo = 0;
function tempFile(data: Buffer): string {
  const path = join(work, `f${fileNo++}`);
  writeFileSync(path, data);
  return path;
}

const cert = (name: string): Certificate => Certificate.fromPem(pkiRead(`${name}.crt`))[0];
const signerOf = (name: string, chain?: string[]): SignerCredentials => ({
  key: createPrivateKey(pkiRead(`${name}.key`)),
  cert: cert(name),
  chain: chain?.map(cert),
});

/** A ~10 KB CRLF MIME entity with 8-bit text, a "From " line and binary bytes: the content must be signed as is. */
const MESSAGE = Buffer.concat([
  Buffer.from('Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\nFrom the start\r\n.\r\nGrüße\r\n'),
  Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7919) & 0xff)),
]);

interface Run {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

function openssl(args: string[]): Run {
  const r = spawnSync('openssl', args, { maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

/** `openssl cms -verify` against the test root; detached when content is given. */
function opensslVerifies(der: Buffer, detached?: Buffer): Run {
  const args = ['cms', '-verify', '-inform', 'DER', '-in', tempFile(der), '-binary', '-CAfile', pkiPath('ca.crt'), '-purpose', 'any'];
  const out = join(work, `out${fileNo++}`);
  const r = openssl([...args, ...(detached ? ['-content', tempFile(detached)] : []), '-out', out]);
  if (r.status === 0 && !detached) r.stdout = readFileSync(out);
  return r;
}

function opensslSigns(name: string, extra: string[], data = MESSAGE): Buffer {
  const r = openssl(['cms', '-sign', '-binary', '-outform', 'DER', '-in', tempFile(data), '-signer', pkiPath(`${name}.crt`),
    '-inkey', pkiPath(`${name}.key`), ...extra]);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

// ---------------------------------------------------------------------------
// Structure helpers (to reach into what we produce; the verifier is tested separately)

function signerInfos(der: Buffer): Asn1Node[] {
  const fields = expectSequence(parseContentInfo(der).content, 'SignedData');
  return children(fields[fields.length - 1]);
}

function signedAttrsOf(der: Buffer): Map<string, Asn1Node> {
  const attrs = expectSequence(signerInfos(der)[0], 'test').find((n) => isContext(n, 0))!;
  return new Map(children(attrs).map((a) => {
    const [type, values] = children(a);
    return [readOid(type), children(values)[0]];
  }));
}

/** Flips one bit of the last occurrence of `needle` (the signature or sid come after the certificates). */
function flipLast(der: Buffer, needle: Buffer, at = 0): Buffer {
  const i = der.lastIndexOf(needle);
  assert.ok(i >= 0, 'needle not found');
  const out = Buffer.from(der);
  out[i + at] ^= 0x01;
  return out;
}

/** Replaces the last occurrence of `from` with `to` (same length). */
function replaceLast(der: Buffer, from: Buffer, to: Buffer): Buffer {
  const i = der.lastIndexOf(from);
  assert.ok(i >= 0, `${from.toString('hex')} not found`);
  const out = Buffer.from(der);
  to.copy(out, i);
  return out;
}

function assertOneGoodSigner(der: Buffer, detached: Buffer | undefined, expect: { digest: string; alg: string; subject: string }): void {
  const v = verifySignedData(der, detached);
  assert.equal(v.contentType, OID.data);
  assert.equal(v.signers.length, 1);
  const [s] = v.signers;
  assert.equal(s.error, undefined);
  assert.equal(s.ok, true);
  assert.equal(s.digest, expect.digest);
  assert.equal(s.signatureAlgorithm, expect.alg);
  assert.equal(s.signer?.subject, cert(expect.subject).subject);
  if (!detached) assert.ok(v.content?.equals(MESSAGE), 'encapsulated content returned byte for byte');
}

// ---------------------------------------------------------------------------

interface Case {
  name: string;
  key: string;
  opts: SignOptions;
  digest: DigestName;
  alg: string;
}

const CASES: Case[] = [
  { name: 'RSA SHA-256', key: 'user-a-rsa', opts: {}, digest: 'sha256', alg: 'RSA-SHA256' },
  { name: 'RSA SHA-384', key: 'user-a-rsa', opts: { digest: 'sha384' }, digest: 'sha384', alg: 'RSA-SHA384' },
  { name: 'RSA SHA-512', key: 'user-a-rsa', opts: { digest: 'sha512' }, digest: 'sha512', alg: 'RSA-SHA512' },
  { name: 'RSASSA-PSS SHA-256', key: 'user-a-rsa', opts: { pss: true }, digest: 'sha256', alg: 'RSASSA-PSS-SHA256' },
  { name: 'RSASSA-PSS SHA-512', key: 'user-a-rsa', opts: { pss: true, digest: 'sha512' }, digest: 'sha512', alg: 'RSASSA-PSS-SHA512' },
  { name: 'ECDSA P-256', key: 'user-a-ec', opts: {}, digest: 'sha256', alg: 'ECDSA-SHA256' },
  { name: 'ECDSA P-384', key: 'user-p384', opts: { digest: 'sha384' }, digest: 'sha384', alg: 'ECDSA-SHA384' },
  { name: 'Ed25519', key: 'user-ed25519', opts: { digest: 'sha256' }, digest: 'sha512', alg: 'Ed25519' },
];

/** OpenSSL 3.0 has no EdDSA in CMS ("eddsa_digest_signverify_init:invalid digest"); 3.2+ does. */
const opensslCmsEd25519 = openssl(['cms', '-sign', '-binary', '-outform', 'DER', '-md', 'sha512', '-in', tempFile(Buffer.from('x')),
  '-signer', pkiPath('user-ed25519.crt'), '-inkey', pkiPath('user-ed25519.key')]).status === 0;

/**
 * Checks an Ed25519 SignerInfo with the openssl CLI's own EdDSA: the signature over the
 * SET OF signed attributes, and messageDigest = SHA-512 of the content.
 */
function opensslChecksEd25519(der: Buffer, signed: Buffer): void {
  const si = expectSequence(signerInfos(der)[0], 'test');
  const attrs = si.find((n) => isContext(n, 0))!;
  const signature = content(si[si.length - 1]);
  const pub = tempFile(Buffer.from(createPublicKey(createPrivateKey(pkiRead('user-ed25519.key'))).export({ type: 'spki', format: 'pem' })));
  const r = openssl(['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', tempFile(retag(encoding(attrs), 0x31)),
    '-sigfile', tempFile(signature)]);
  assert.equal(r.status, 0, `openssl pkeyutl rejects the Ed25519 signature: ${r.stderr}`);
  const dgst = openssl(['dgst', '-sha512', '-binary', tempFile(signed)]).stdout;
  assert.ok(content(signedAttrsOf(der).get(OID.messageDigest)!).equals(dgst), 'messageDigest is SHA-512 of the content');
}

describe('sign, verify ourselves, and openssl cms -verify accepts', () => {
  for (const c of CASES) {
    test(`${c.name} detached`, () => {
      const signer = signerOf(c.key);
      const digest = signingDigest(signer, c.opts);
      assert.equal(digest, c.digest);
      const der = signDetached(createHash(digest).update(MESSAGE).digest(), signer, c.opts);
      assertOneGoodSigner(der, MESSAGE, { digest: c.digest, alg: c.alg, subject: c.key });
      assert.equal(verifySignedData(der, MESSAGE).content, undefined, 'detached: no eContent');
      if (c.key === 'user-ed25519' && !opensslCmsEd25519) opensslChecksEd25519(der, MESSAGE);
      else {
        const r = opensslVerifies(der, MESSAGE);
        assert.equal(r.status, 0, r.stderr);
      }
    });

    test(`${c.name} encapsulated`, () => {
      const der = signEncapsulated(MESSAGE, signerOf(c.key), c.opts);
      assertOneGoodSigner(der, undefined, { digest: c.digest, alg: c.alg, subject: c.key });
      if (c.key === 'user-ed25519' && !opensslCmsEd25519) opensslChecksEd25519(der, MESSAGE);
      else {
        const r = opensslVerifies(der);
        assert.equal(r.status, 0, r.stderr);
        assert.ok(r.stdout.equals(MESSAGE), 'openssl extracts the exact content');
      }
    });
  }

  test('RSASSA-PSS parameters are explicit: hash, MGF1 with the same hash, salt = hash length', () => {
    const der = signEncapsulated(MESSAGE, signerOf('user-a-rsa'), { pss: true, digest: 'sha384' });
    const si = expectSequence(signerInfos(der)[0], 'test');
    const sigAlg = si[si.length - 2];
    const sha384 = algorithm(OID.sha384, nullValue());
    const expected = algorithm(OID.rsassaPss, sequence(
      Buffer.concat([Buffer.from([0xa0, sha384.length]), sha384]),
      Buffer.concat([Buffer.from([0xa1, sha384.length + 13]), algorithm(OID.mgf1, sha384)]),
      Buffer.from('a203020130', 'hex'),
    ));
    assert.equal(encoding(sigAlg).toString('hex'), expected.toString('hex'));
  });
});

describe('what we produce', () => {
  const when = new Date('2026-03-04T05:06:07Z');
  const der = signEncapsulated(MESSAGE, signerOf('user-inter', ['inter']), { signingTime: when });

  test('carries the signed attributes S/MIME needs, as openssl reads them', () => {
    const printed = openssl(['cms', '-cmsout', '-print', '-inform', 'DER', '-in', tempFile(der)]).stdout.toString();
    for (const name of ['contentType', 'signingTime', 'messageDigest', 'S/MIME Capabilities', 'id-smime-aa-signingCertificateV2']) {
      assert.ok(printed.includes(`object: ${name}`), `${name} missing from:\n${printed}`);
    }
    const attrs = signedAttrsOf(der);
    assert.equal(readOid(attrs.get(OID.contentType)), OID.data);
    assert.ok(content(attrs.get(OID.messageDigest)!).equals(createHash('sha256').update(MESSAGE).digest()));
    assert.equal(content(attrs.get(OID.signingTime)!).toString(), '260304050607Z');
    assert.ok(encoding(attrs.get(OID.smimeCapabilities)!).equals(DEFAULT_CAPABILITIES));
    const v = verifySignedData(der);
    assert.equal(v.signers[0].signingTime?.toISOString(), when.toISOString());
    assert.ok(v.signers[0].capabilities?.equals(DEFAULT_CAPABILITIES));
  });

  test('signingCertificateV2 is an ESSCertIDv2 with the default hash omitted, SHA-256 of the signer certificate', () => {
    const value = signedAttrsOf(der).get(OID.signingCertificateV2)!;
    const [certs] = expectSequence(value, 'test');
    const [essCertId] = expectSequence(certs, 'test');
    const [certHash, issuerSerial] = expectSequence(essCertId, 'test');
    assert.equal(certHash.tag, 4, 'first field is certHash: hashAlgorithm omitted');
    assert.ok(content(certHash).equals(createHash('sha256').update(cert('user-inter').der).digest()));
    const [, serial] = expectSequence(issuerSerial, 'test');
    assert.ok(content(serial).equals(cert('user-inter').serial));
  });

  test('signed attributes are a DER SET OF, sorted, and the signature covers them with the SET tag', () => {
    const si = expectSequence(signerInfos(der)[0], 'test');
    const attrsNode = si.find((n) => isContext(n, 0))!;
    const asSet = retag(encoding(attrsNode), 0x31);
    assert.ok(asSet.equals(setOf(...children(attrsNode).map((n) => Buffer.from(encoding(n))))), 'already in DER order');
    assert.equal(readOid(children(si[2])[0]), OID.sha256);
    assert.equal(children(si[2]).length, 1, 'digestAlgorithm parameters absent');
  });

  test('version 1, sid is issuerAndSerialNumber, signer certificate first then the chain', () => {
    const fields = expectSequence(parseContentInfo(der).content, 'test');
    assert.equal(content(fields[0])[0], 1);
    const si = expectSequence(signerInfos(der)[0], 'test');
    assert.equal(content(si[0])[0], 1);
    const [issuer, serial] = expectSequence(si[1], 'test');
    assert.ok(encoding(issuer).equals(cert('user-inter').issuerDer));
    assert.ok(content(serial).equals(cert('user-inter').serial));
    assert.deepEqual(verifySignedData(der).certificates.map((c) => c.subject), [cert('user-inter').subject, cert('inter').subject]);
  });

  test('the chain lets openssl build the path to the root it trusts', () => {
    const r = opensslVerifies(der);
    assert.equal(r.status, 0, r.stderr);
    const withoutChain = signEncapsulated(MESSAGE, signerOf('user-inter'));
    assert.notEqual(opensslVerifies(withoutChain).status, 0, 'without the intermediate the path cannot be built');
  });

  test('advertises the capabilities the caller passes', () => {
    const caps = sequence(algorithm(OID.aes128Cbc));
    const v = verifySignedData(signEncapsulated(MESSAGE, signerOf('user-a-rsa'), { capabilities: caps }));
    assert.ok(v.signers[0].capabilities?.equals(caps));
    assert.throws(() => signEncapsulated(MESSAGE, signerOf('user-a-rsa'), { capabilities: Buffer.from('3003', 'hex') }), CmsError);
  });
});

describe('signing refuses what would produce a bad or weak signature', () => {
  const rsa = signerOf('user-a-rsa');
  test('a digest of the wrong length', () => {
    assert.throws(() => signDetached(Buffer.alloc(20), rsa), /content digest has 20 octets, sha256 has 32/);
  });
  test('SHA-1', () => {
    assert.throws(() => signEncapsulated(MESSAGE, rsa, { digest: 'sha1' }), /SHA-1 is not accepted/);
  });
  test('PSS with an EC key', () => {
    assert.throws(() => signEncapsulated(MESSAGE, signerOf('user-a-ec'), { pss: true }), /RSASSA-PSS needs an RSA key, not ec/);
  });
  test('a key that does not belong to the certificate', () => {
    assert.throws(() => signEncapsulated(MESSAGE, { key: rsa.key, cert: cert('gw-b-rsa') }), /does not belong to the certificate/);
  });
});

describe('verifies what openssl cms -sign produces', () => {
  const variants: { name: string; key: string; args: string[]; digest: string; alg: string }[] = [
    { name: 'RSA', key: 'user-a-rsa', args: [], digest: 'sha256', alg: 'RSA-SHA256' },
    { name: 'RSA -md sha384', key: 'user-a-rsa', args: ['-md', 'sha384'], digest: 'sha384', alg: 'RSA-SHA384' },
    { name: 'RSA -md sha512', key: 'user-a-rsa', args: ['-md', 'sha512'], digest: 'sha512', alg: 'RSA-SHA512' },
    { name: 'RSA -md sha1 (reported)', key: 'user-a-rsa', args: ['-md', 'sha1'], digest: 'sha1', alg: 'RSA-SHA1' },
    { name: 'RSASSA-PSS (max salt)', key: 'user-a-rsa', args: ['-keyopt', 'rsa_padding_mode:pss'], digest: 'sha256', alg: 'RSASSA-PSS-SHA256' },
    { name: 'RSASSA-PSS sha512 salt 64', key: 'user-a-rsa', args: ['-md', 'sha512', '-keyopt', 'rsa_padding_mode:pss', '-keyopt', 'rsa_pss_saltlen:64'], digest: 'sha512', alg: 'RSASSA-PSS-SHA512' },
    { name: 'ECDSA P-256', key: 'user-a-ec', args: [], digest: 'sha256', alg: 'ECDSA-SHA256' },
    { name: 'ECDSA P-384 -md sha384', key: 'user-p384', args: ['-md', 'sha384'], digest: 'sha384', alg: 'ECDSA-SHA384' },
    { name: 'RSA -noattr', key: 'user-a-rsa', args: ['-noattr'], digest: 'sha256', alg: 'RSA-SHA256' },
    { name: 'ECDSA -noattr', key: 'user-a-ec', args: ['-noattr'], digest: 'sha256', alg: 'ECDSA-SHA256' },
    { name: 'RSA -keyid (sid subjectKeyIdentifier)', key: 'user-a-rsa', args: ['-keyid'], digest: 'sha256', alg: 'RSA-SHA256' },
  ];
  for (const v of variants) {
    test(`${v.name} detached`, () => {
      const der = opensslSigns(v.key, v.args);
      assertOneGoodSigner(der, MESSAGE, { digest: v.digest, alg: v.alg, subject: v.key });
      const s = verifySignedData(der, MESSAGE).signers[0];
      if (v.args.includes('-noattr')) assert.equal(s.signingTime, undefined);
      else assert.ok(s.signingTime && Math.abs(s.signingTime.getTime() - Date.now()) < 120_000, 'signingTime read');
    });
    test(`${v.name} -nodetach`, () => {
      assertOneGoodSigner(opensslSigns(v.key, [...v.args, '-nodetach']), undefined, { digest: v.digest, alg: v.alg, subject: v.key });
    });
  }

  test('Ed25519', { skip: opensslCmsEd25519 ? false : 'this OpenSSL cannot sign CMS with Ed25519 (needs 3.2+)' }, () => {
    const der = opensslSigns('user-ed25519', ['-md', 'sha512', '-nodetach']);
    assertOneGoodSigner(der, undefined, { digest: 'sha512', alg: 'Ed25519', subject: 'user-ed25519' });
  });

  test('Ed25519 signature made by the openssl CLI over signed attributes built by hand', () => {
    // Independent of signEncapsulated: the SignedData is assembled here and openssl pkeyutl signs.
    const signer = cert('user-ed25519');
    const attrs = setOf(
      sequence(oid(OID.contentType), Buffer.from([0x31, 11]), oid(OID.data)),
      sequence(oid(OID.messageDigest), Buffer.from([0x31, 66, 0x04, 64]), createHash('sha512').update(MESSAGE).digest()),
    );
    const r = openssl(['pkeyutl', '-sign', '-inkey', pkiPath('user-ed25519.key'), '-rawin', '-in', tempFile(attrs)]);
    assert.equal(r.status, 0, r.stderr);
    const der = handBuiltSignedData(signer, OID.sha512, retag(attrs, 0xa0), algorithm(OID.ed25519), r.stdout);
    assertOneGoodSigner(der, MESSAGE, { digest: 'sha512', alg: 'Ed25519', subject: 'user-ed25519' });
    assert.equal(verifySignedData(der, flipLast(MESSAGE, MESSAGE.subarray(-1))).signers[0].error, 'message digest mismatch (content altered)');
  });

  test('several signers each get a result', () => {
    const der = opensslSigns('user-a-rsa', ['-signer', pkiPath('user-a-ec.crt'), '-inkey', pkiPath('user-a-ec.key'), '-nodetach']);
    const v = verifySignedData(der);
    const outcomes = v.signers.map((s) => [s.ok, s.signatureAlgorithm, s.signer?.subject]).sort(); // a DER SET: openssl sorts them
    assert.deepEqual(outcomes, [[true, 'ECDSA-SHA256', cert('user-a-ec').subject], [true, 'RSA-SHA256', cert('user-a-rsa').subject]]);
    const oneBad = flipLast(der, der.subarray(-8), 3); // the last SignerInfo's signature
    assert.deepEqual(verifySignedData(oneBad).signers.map((s) => s.ok).sort(), [false, true]);
  });

  test('BER indefinite lengths and a chunked eContent (openssl -stream)', () => {
    const der = opensslSigns('user-a-ec', ['-stream', '-nodetach']);
    const outer = parse(der);
    assert.ok(outer.indefinite, 'openssl -stream writes indefinite lengths');
    const encap = children(children(children(outer)[1])[0])[2];
    const eContent = children(children(encap)[1])[0];
    assert.ok(eContent.constructed && children(eContent).length > 1, 'eContent is a constructed OCTET STRING of several chunks');
    assertOneGoodSigner(der, undefined, { digest: 'sha256', alg: 'ECDSA-SHA256', subject: 'user-a-ec' });
  });

  test('BER detached signatures and chunked eContent as gpgsm and NSS write them (converted by hand)', () => {
    const detached = toIndefinite(opensslSigns('user-a-rsa', []));
    assert.ok(parse(detached).indefinite);
    assertOneGoodSigner(detached, MESSAGE, { digest: 'sha256', alg: 'RSA-SHA256', subject: 'user-a-rsa' });
    const opaque = toIndefinite(signEncapsulated(MESSAGE, signerOf('user-a-ec')));
    assertOneGoodSigner(opaque, undefined, { digest: 'sha256', alg: 'ECDSA-SHA256', subject: 'user-a-ec' });
    const altered = flipLast(opaque, MESSAGE.subarray(5100, 5120), 10);
    assert.equal(verifySignedData(altered).signers[0].error, 'message digest mismatch (content altered)');
  });
});

/** ContentInfo(SignedData) around one SignerInfo, detached, with the signer's certificate. */
function handBuiltSignedData(signer: Certificate, digestOid: string, signedAttrs: Buffer | undefined, sigAlg: Buffer, sig: Buffer): Buffer {
  const signerInfo = sequence(
    integer(1), sequence(signer.issuerDer, tlv(0x02, signer.serial)), algorithm(digestOid),
    ...(signedAttrs ? [signedAttrs] : []), sigAlg, octetString(sig),
  );
  const signedData = sequence(integer(1), set(algorithm(digestOid)), sequence(oid(OID.data)), tlv(0xa0, signer.der), set(signerInfo));
  return sequence(oid(OID.signedData), tlv(0xa0, signedData));
}

const EOC = Buffer.from([0, 0]);
const indefinite = (idOctet: number, parts: Buffer[]): Buffer => Buffer.concat([Buffer.from([idOctet | 0x20, 0x80]), ...parts, EOC]);
const verbatim = (n: Asn1Node): Buffer => Buffer.from(encoding(n));

/**
 * BER re-encoding of a DER SignedData: every enclosing level with indefinite length, eContent
 * as a constructed OCTET STRING of 1000-octet chunks. Certificates and signed attributes stay
 * DER, as every encoder keeps them (they are hashed as encoded).
 */
function toIndefinite(der: Buffer): Buffer {
  const [type, wrapped] = children(parse(der));
  const fields = children(children(wrapped)[0]);
  const rebuilt = fields.map((n, i) => {
    if (i === 2) {
      const [eType, eContent] = children(n);
      if (!eContent) return indefinite(0x30, [verbatim(eType)]);
      const data = content(children(eContent)[0]);
      const chunks: Buffer[] = [];
      for (let at = 0; at < data.length; at += 1000) chunks.push(octetString(data.subarray(at, at + 1000)));
      return indefinite(0x30, [verbatim(eType), indefinite(0xa0, [indefinite(0x04, chunks)])]);
    }
    if (i === fields.length - 1) return indefinite(0x31, children(n).map((si) => indefinite(0x30, children(si).map(verbatim))));
    return n.constructed && i > 0 ? indefinite(n.buf[n.start], children(n).map(verbatim)) : verbatim(n);
  });
  return indefinite(0x30, [verbatim(type), indefinite(0xa0, [indefinite(0x30, rebuilt)])]);
}

/** Re-points the first SignerInfo's sid at another certificate of the same issuer (serials of equal length). */
function withSidSerial(der: Buffer, other: Certificate): Buffer {
  const [issuer, serial] = expectSequence(expectSequence(signerInfos(der)[0], 'test')[1], 'test');
  assert.ok(encoding(issuer).equals(other.issuerDer) && serial.contentEnd - serial.contentStart === other.serial.length);
  const out = Buffer.from(der);
  other.serial.copy(out, serial.contentStart);
  return out;
}

describe('verification failures are specific results', () => {
  const ours = signEncapsulated(MESSAGE, signerOf('user-a-rsa'));
  const oursDetached = signDetached(createHash('sha256').update(MESSAGE).digest(), signerOf('user-a-rsa'));
  const tampered = Buffer.from(MESSAGE);
  tampered[5000] ^= 0x20;

  const only = (der: Buffer, content?: Buffer, certs?: Certificate[]) =>
    verifySignedData(der, content, { certificates: certs }).signers[0];

  test('tampered content: message digest mismatch (detached and encapsulated)', () => {
    assert.equal(only(oursDetached, tampered).error, 'message digest mismatch (content altered)');
    assert.equal(only(oursDetached, tampered).ok, false);
    assert.equal(only(flipLast(ours, MESSAGE.subarray(4990, 5010), 10)).error, 'message digest mismatch (content altered)');
    assert.equal(only(opensslSigns('user-a-ec', []), tampered).error, 'message digest mismatch (content altered)');
  });

  test('tampered signature: signature does not verify (RSA, PSS, ECDSA, Ed25519)', () => {
    for (const [key, opts] of [['user-a-rsa', {}], ['user-a-rsa', { pss: true }], ['user-a-ec', {}], ['user-ed25519', {}]] as const) {
      const der = signEncapsulated(MESSAGE, signerOf(key), opts);
      const s = only(flipLast(der, der.subarray(-8), 3));
      assert.equal(s.ok, false, key);
      assert.equal(s.error, 'signature does not verify', key);
      assert.equal(s.signer?.subject, cert(key).subject, 'the signer is still reported');
    }
  });

  test('without signed attributes the signature covers the content itself', () => {
    const der = opensslSigns('user-a-rsa', ['-noattr']);
    assert.equal(only(der, tampered).error, 'signature does not verify');
  });

  test('signer certificate missing (-nocerts), found when the caller supplies it', () => {
    const der = opensslSigns('user-a-rsa', ['-nocerts']);
    assert.deepEqual(verifySignedData(der, MESSAGE).certificates, []);
    const s = only(der, MESSAGE);
    assert.equal(s.ok, false);
    assert.equal(s.error, 'signer certificate not included');
    assert.equal(s.signer, undefined);
    assert.equal(only(der, MESSAGE, [cert('gw-b-rsa'), cert('user-a-rsa')]).ok, true);
  });

  test('signed contentType must equal eContentType', () => {
    // id-data (…07 01) in EncapsulatedContentInfo becomes id-digestedData (…07 05); the attribute still says data.
    const dataOid = oid(OID.data);
    const i = ours.indexOf(dataOid, ours.indexOf(oid(OID.signedData)) + 11);
    const bad = Buffer.from(ours);
    bad[i + dataOid.length - 1] = 0x05;
    assert.equal(only(bad).error, 'signed contentType 1.2.840.113549.1.7.1 differs from eContentType 1.2.840.113549.1.7.5');
  });

  test('signingCertificateV2 must name the certificate sid points to', () => {
    // Point sid at user-a-ec (same issuer) and offer that certificate: the signature is RSA's, the ESS hash user-a-rsa's.
    const bad = withSidSerial(ours, cert('user-a-ec'));
    assert.equal(only(bad, undefined, [cert('user-a-ec')]).error, 'signingCertificateV2 does not identify the signer certificate');
  });

  test('public key type must match the signature algorithm', () => {
    // An RSA signature whose sid names the EC certificate (no attributes, so only the key type check stands between).
    const der = opensslSigns('user-a-rsa', ['-noattr', '-nocerts']);
    const bad = withSidSerial(der, cert('user-a-ec'));
    assert.equal(only(bad, MESSAGE, [cert('user-a-ec')]).error, 'public key type ec does not match signature algorithm RSA-SHA256');
    const rsaSig = parse(algorithm(OID.rsaEncryption, nullValue()));
    assert.throws(() => verifierFor(rsaSig, 'sha256').verify(MESSAGE, Buffer.alloc(64), cert('user-ed25519').publicKey), UnsupportedSignatureError);
  });

  test('unsupported and inconsistent algorithms are reported, not thrown', () => {
    const signer = cert('user-a-rsa');
    const sig = Buffer.alloc(256);
    const md5 = handBuiltSignedData(signer, '1.2.840.113549.2.5', undefined, algorithm(OID.rsaEncryption, nullValue()), sig);
    assert.equal(only(md5, MESSAGE).error, 'unsupported digest algorithm 1.2.840.113549.2.5');
    assert.equal(only(md5, MESSAGE).digest, '1.2.840.113549.2.5');
    const dsa = handBuiltSignedData(signer, OID.sha256, undefined, algorithm('1.2.840.10040.4.3'), sig);
    assert.equal(only(dsa, MESSAGE).error, 'unsupported signature algorithm 1.2.840.10040.4.3');
    assert.equal(only(dsa, MESSAGE).signatureAlgorithm, '1.2.840.10040.4.3');
    const mixed = handBuiltSignedData(signer, OID.sha256, undefined, algorithm(OID.sha512WithRSAEncryption, nullValue()), sig);
    assert.equal(only(mixed, MESSAGE).error, 'signature algorithm RSA-SHA512 does not match digest algorithm sha256');
  });

  test('the older signingCertificate (ESSCertID, SHA-1) is checked too', () => {
    const rsa = signerOf('user-a-rsa');
    const withEssV1 = (certHash: Buffer): Buffer => {
      const attrs = setOf(
        sequence(oid(OID.contentType), set(oid(OID.data))),
        sequence(oid(OID.messageDigest), set(octetString(createHash('sha256').update(MESSAGE).digest()))),
        sequence(oid('1.2.840.113549.1.9.16.2.12'), set(sequence(sequence(sequence(octetString(certHash)))))),
      );
      const sig = createSign('sha256').update(attrs).sign(rsa.key);
      return handBuiltSignedData(rsa.cert, OID.sha256, retag(attrs, 0xa0), algorithm(OID.rsaEncryption, nullValue()), sig);
    };
    assert.equal(only(withEssV1(createHash('sha1').update(rsa.cert.der).digest()), MESSAGE).ok, true);
    const other = only(withEssV1(createHash('sha1').update(cert('gw-b-rsa').der).digest()), MESSAGE);
    assert.equal(other.error, 'signingCertificate does not identify the signer certificate');
  });

  test('a signature algorithm named by its hash (sha256WithRSAEncryption) is accepted', () => {
    const der = opensslSigns('user-a-rsa', ['-noattr', '-nocerts']);
    const withSigOid = replaceLast(der, oid(OID.rsaEncryption), oid(OID.sha256WithRSAEncryption));
    assert.equal(only(withSigOid, MESSAGE, [cert('user-a-rsa')]).ok, true);
  });
});

describe('malformed input is a CmsError, never a crash', () => {
  const der = signEncapsulated(MESSAGE.subarray(0, 300), signerOf('user-a-ec'));

  test('content missing or given twice', () => {
    const detached = signDetached(createHash('sha256').update(MESSAGE).digest(), signerOf('user-a-rsa'));
    assert.throws(() => verifySignedData(detached), /signed content was not supplied/);
    assert.throws(() => verifySignedData(der, MESSAGE), /both encapsulated and supplied/);
  });

  test('not SignedData', () => {
    const enveloped = sequence(oid(OID.envelopedData), Buffer.from('a0023000', 'hex'));
    assert.throws(() => verifySignedData(enveloped), (e: Error) => e instanceof CmsError && /not SignedData/.test(e.message));
  });

  test('every truncation', () => {
    for (let n = 0; n < der.length; n++) {
      assert.throws(() => verifySignedData(der.subarray(0, n)), CmsError, `truncated to ${n}`);
    }
  });

  test('5,000 random corruptions: a CmsError or results, nothing else', () => {
    let seed = 0x2545f491;
    const rand = (n: number): number => {
      seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    let results = 0;
    for (let i = 0; i < 5000; i++) {
      const bad = Buffer.from(der);
      for (let k = 1 + rand(3); k > 0; k--) bad[rand(bad.length)] = rand(256);
      try {
        const v = verifySignedData(bad);
        results++;
        for (const s of v.signers) assert.ok(s.ok || (typeof s.error === 'string' && s.error.length > 0));
      } catch (e) {
        assert.ok(e instanceof CmsError, `iteration ${i}: ${(e as Error).stack}`);
      }
    }
    assert.ok(results > 0, 'some corruptions (e.g. in the certificate body) still parse');
  });
});
