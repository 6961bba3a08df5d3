/**
 * An independent, minimal Ed25519 CMS SignedData signer and verifier (RFC 5652 + RFC 8419 3.1:
 * signed attributes, digestAlgorithm id-sha512, signatureAlgorithm id-Ed25519 with absent
 * parameters, PureEdDSA over the DER of the SET OF signed attributes).
 *
 * It stands in for a peer because none of the installed ones can do Ed25519 CMS: OpenSSL 3.0
 * fails both ways ("no default digest" / "eddsa_digest_signverify_init: invalid digest"), gpgsm
 * 2.2 ("DSA requires the hash length to be a multiple of 8 bits") and NSS 3.87 reject it.
 * Built on a tiny DER reader/writer and node:crypto, sharing nothing with src/.
 */
import { KeyObject, X509Certificate, createHash, sign as edSign, verify as edVerify } from 'node:crypto';

const OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  sha512: '2.16.840.1.101.3.4.2.3',
  ed25519: '1.3.101.112',
};

// --- DER writing --------------------------------------------------------------------------------

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out: number[] = [a * 40 + b];
  for (const n of rest) {
    const chunk: number[] = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
const set = (...c: Buffer[]): Buffer => tlv(0x31, ...sortDer(c));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const int = (n: number): Buffer => tlv(0x02, Buffer.from([n]));
const explicit = (n: number, ...c: Buffer[]): Buffer => tlv(0xa0 + n, ...c);
const algorithm = (o: string): Buffer => seq(oid(o)); // parameters absent (RFC 8419 for both)

/** DER SET OF: elements sorted by their encodings. */
function sortDer(items: Buffer[]): Buffer[] {
  return [...items].sort(Buffer.compare);
}

function utcTime(d: Date): Buffer {
  const p = (n: number): string => String(n).padStart(2, '0');
  const s = `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return tlv(0x17, Buffer.from(s, 'ascii'));
}

// --- DER reading --------------------------------------------------------------------------------

export interface Node {
  tag: number;
  /** Whole TLV. */
  raw: Buffer;
  /** Contents octets. */
  value: Buffer;
}

function readNode(buf: Buffer, offset: number): Node {
  if (offset + 2 > buf.length) throw new Error('DER: truncated');
  const tag = buf[offset];
  let len = buf[offset + 1];
  let header = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error('DER: indefinite or huge length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i];
    header += n;
  }
  const end = offset + header + len;
  if (end > buf.length) throw new Error('DER: length beyond input');
  return { tag, raw: buf.subarray(offset, end), value: buf.subarray(offset + header, end) };
}

export function parse(buf: Buffer): Node {
  const n = readNode(buf, 0);
  if (n.raw.length !== buf.length) throw new Error('DER: trailing bytes');
  return n;
}

export function children(node: Node): Node[] {
  const out: Node[] = [];
  for (let off = 0; off < node.value.length; ) {
    const c = readNode(node.value, off);
    out.push(c);
    off += c.raw.length;
  }
  return out;
}

function oidOf(node: Node): string {
  if (node.tag !== 0x06) throw new Error(`expected OID, got tag ${node.tag}`);
  const b = node.value;
  const parts = [Math.floor(b[0] / 40), b[0] % 40];
  let v = 0;
  for (let i = 1; i < b.length; i++) {
    v = v * 128 + (b[i] & 0x7f);
    if (!(b[i] & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

// --- SignedData ---------------------------------------------------------------------------------

/** DER of the signer certificate's tbs issuer Name and serial INTEGER (for issuerAndSerialNumber). */
function issuerAndSerial(certDer: Buffer): Buffer {
  const tbs = children(children(parse(certDer))[0]);
  const hasVersion = tbs[0].tag === 0xa0;
  const serial = tbs[hasVersion ? 1 : 0];
  const issuer = tbs[hasVersion ? 3 : 2];
  return seq(issuer.raw, serial.raw);
}

/** An Ed25519 SignedData ContentInfo over `content`, detached or with the content inside. */
export function signEd25519(content: Buffer, certDer: Buffer, privateKey: KeyObject, detached: boolean, when = new Date()): Buffer {
  const attrs = [
    seq(oid(OID.contentType), set(oid(OID.data))),
    seq(oid(OID.signingTime), set(utcTime(when))),
    seq(oid(OID.messageDigest), set(octets(createHash('sha512').update(content).digest()))),
  ];
  const signedAttrsSet = set(...attrs);
  const signature = edSign(null, signedAttrsSet, privateKey);
  // In the SignerInfo the same SET is [0] IMPLICIT: only the tag changes.
  const signedAttrs = Buffer.concat([Buffer.from([0xa0]), signedAttrsSet.subarray(1)]);
  const signerInfo = seq(int(1), issuerAndSerial(certDer), algorithm(OID.sha512), signedAttrs, algorithm(OID.ed25519), octets(signature));
  const encap = detached ? seq(oid(OID.data)) : seq(oid(OID.data), explicit(0, octets(content)));
  const signedData = seq(int(1), set(algorithm(OID.sha512)), encap, explicit(0, certDer), set(signerInfo));
  return seq(oid(OID.signedData), explicit(0, signedData));
}

export interface Ed25519Verification {
  content: Buffer;
  signer: X509Certificate;
}

/**
 * Verify an Ed25519 SignedData (one signer, DER). `content` is required for detached signatures.
 * Throws with the reason on any failure. Checks the RFC 8419 algorithm rules, the messageDigest
 * and contentType attributes, the signature, and that the signer certificate was issued by `ca`.
 */
export function verifyEd25519(der: Buffer, ca: X509Certificate, detachedContent?: Buffer): Ed25519Verification {
  const [type, wrapped] = children(parse(der));
  if (oidOf(type) !== OID.signedData) throw new Error('not SignedData');
  const sd = children(children(wrapped)[0]);
  const encap = children(sd[2]);
  if (oidOf(encap[0]) !== OID.data) throw new Error('eContentType is not id-data');
  const inner = encap[1] ? children(encap[1])[0].value : undefined;
  const content = detachedContent ?? inner;
  if (!content) throw new Error('detached signature and no content given');
  const certs = sd.filter((n) => n.tag === 0xa0).flatMap((n) => children(n).map((c) => new X509Certificate(c.raw)));
  const signerInfos = children(sd[sd.length - 1]);
  if (signerInfos.length !== 1) throw new Error(`${signerInfos.length} signers`);
  const si = children(signerInfos[0]);
  const [, sid, digestAlg, signedAttrs, sigAlg, signature] = si;
  if (children(digestAlg).length !== 1 || oidOf(children(digestAlg)[0]) !== OID.sha512) throw new Error('digestAlgorithm must be id-sha512 without parameters');
  if (children(sigAlg).length !== 1 || oidOf(children(sigAlg)[0]) !== OID.ed25519) throw new Error('signatureAlgorithm must be id-Ed25519 without parameters');
  if (signedAttrs.tag !== 0xa0) throw new Error('no signed attributes');

  const attrs = new Map(children(signedAttrs).map((a) => {
    const [t, values] = children(a);
    return [oidOf(t), children(values)] as const;
  }));
  const digest = attrs.get(OID.messageDigest)?.[0]?.value;
  if (!digest || !digest.equals(createHash('sha512').update(content).digest())) throw new Error('messageDigest does not match the content');
  const ct = attrs.get(OID.contentType)?.[0];
  if (!ct || oidOf(ct) !== OID.data) throw new Error('contentType attribute missing or not id-data');

  const serial = children(sid)[1]?.value;
  const signer = serial && certs.find((c) => BigInt(`0x${c.serialNumber}`) === BigInt(`0x${serial.toString('hex')}`));
  if (!signer) throw new Error('signer certificate not in the SignedData');
  const toSign = Buffer.concat([Buffer.from([0x31]), signedAttrs.raw.subarray(1)]);
  if (!edVerify(null, toSign, signer.publicKey, signature.value)) throw new Error('Ed25519 signature does not verify');
  if (!signer.checkIssued(ca) || !signer.verify(ca.publicKey)) throw new Error('signer not issued by the trust anchor');
  return { content, signer };
}
