/**
 * CMS SignedData (RFC 5652 section 5) as S/MIME uses it (RFC 8551).
 *
 * Signing writes DER with the signed attributes S/MIME clients expect: contentType,
 * messageDigest, signingTime, SMIMECapabilities and signingCertificateV2 (RFC 5035).
 * Verification reads BER as OpenSSL, gpgsm and NSS write it (indefinite lengths,
 * constructed OCTET STRINGs), hashes the exact bytes received and reports every signer's
 * outcome as data: only a structure that cannot be parsed is an exception (CmsError).
 * Whether the signer's certificate is trustworthy is path validation's job, not this module's.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import {
  Asn1Error, algorithm, children, content, encoding, expect, expectSequence, explicit, header, headerLength, integer, isContext,
  isUniversal, nullValue, octetString, oid, parseExact, readOctetString, readOid, readTime, retag, sequence, set, setOf, tlv, Tag,
  time, type Asn1Node,
} from '../../asn1/der';
import { OID } from '../../asn1/oids';
import { Certificate, CertificateError, certificateFromNode } from '../../pki/certificate';
import { CmsError, parseContentInfo } from './content-info';
import { DIGEST_LENGTH, digestOid, type DigestName } from './digest';
import { knownDigest, signerFor, UnsupportedSignatureError, verifierFor, type Verifier } from './signature-algorithms';

export interface SignerCredentials {
  key: KeyObject;
  cert: Certificate;
  /** Intermediate (and optionally root) certificates to include after the signer's. */
  chain?: Certificate[];
}

export interface SignOptions {
  /** Default sha256; Ed25519 always uses sha512 (RFC 8419). SHA-1 is refused for new signatures. */
  digest?: DigestName;
  /** RSASSA-PSS (RSA keys only) with salt = hash length and MGF1 over the same hash. */
  pss?: boolean;
  /** Default now. */
  signingTime?: Date;
  /** DER SMIMECapabilities value to advertise; default DEFAULT_CAPABILITIES. */
  capabilities?: Buffer;
}

export interface SignerResult {
  /** Signature and messageDigest both check. */
  ok: boolean;
  /** When !ok: one specific line. */
  error?: string;
  /** Found by issuerAndSerialNumber or subjectKeyIdentifier among the SignedData (or caller's) certificates. */
  signer?: Certificate;
  /** The digest algorithm, or its OID when unsupported. */
  digest: DigestName | (string & {});
  /** Readable name (RSA-SHA256, RSASSA-PSS-SHA256, ECDSA-SHA384, Ed25519), or the OID when unsupported. */
  signatureAlgorithm: string;
  signingTime?: Date;
  /** Raw DER SMIMECapabilities attribute value when present (only trust it when ok). */
  capabilities?: Buffer;
}

export interface VerifiedSignedData {
  /** eContentType (id-data for S/MIME). */
  contentType: string;
  /** The encapsulated content, when present (a view into the input when it was one primitive OCTET STRING). */
  content?: Buffer;
  certificates: Certificate[];
  signers: SignerResult[];
}

export interface VerifyOptions {
  /** Further certificates to find signers among (e.g. stored from earlier mail, for -nocerts signatures). */
  certificates?: readonly Certificate[];
}

/** RFC 2634 signingCertificate (ESSCertID with SHA-1), the predecessor some clients still write. */
const OID_SIGNING_CERTIFICATE = '1.2.840.113549.1.9.16.2.12';

/** More SignerInfos than any real message carries; bounds the work a hostile message can ask for. */
export const MAX_SIGNERS = 32;

// ---------------------------------------------------------------------------
// Signing

/** Hash AlgorithmIdentifier with NULL parameters, as RFC 4055 writes them inside RSAES-OAEP-params. */
const hashIdWithNull = (o: string): Buffer => algorithm(o, nullValue());

/**
 * What cstp can decrypt, most preferred first (RFC 8551 2.5.2): content ciphers, then key
 * transport. AES capabilities omit parameters (RFC 3565 5 for CBC; the GCM entries follow suit,
 * readers match on the OID); RSAES-OAEP names SHA-256 with MGF1-SHA-256 (RFC 4055 4.1).
 */
export const DEFAULT_CAPABILITIES: Buffer = sequence(
  algorithm(OID.aes256Gcm),
  algorithm(OID.aes128Gcm),
  algorithm(OID.aes256Cbc),
  algorithm(OID.aes128Cbc),
  algorithm(OID.rsaesOaep, sequence(
    explicit(0, hashIdWithNull(OID.sha256)),
    explicit(1, algorithm(OID.mgf1, hashIdWithNull(OID.sha256))),
  )),
  algorithm(OID.rsaEncryption, nullValue()),
);

/** Attribute { attrType (DER OID), attrValues SET OF } with one value. */
function attribute(type: string | Buffer, value: Buffer): Buffer {
  return sequence(typeof type === 'string' ? oid(type) : type, set(value));
}

// Constant parts of every signature, encoded once.
const DATA_OID = oid(OID.data);
const SIGNING_TIME_OID = oid(OID.signingTime);
const MESSAGE_DIGEST_OID = oid(OID.messageDigest);
const SIGNED_DATA_OID = oid(OID.signedData);
const CONTENT_TYPE_ATTRIBUTE = attribute(OID.contentType, DATA_OID);
const DEFAULT_CAPABILITIES_ATTRIBUTE = attribute(OID.smimeCapabilities, DEFAULT_CAPABILITIES);
const DETACHED_CONTENT_INFO = sequence(DATA_OID);
const VERSION_1 = integer(1);
/** digestAlgorithm with parameters absent (RFC 5754 2), per digest. */
const DIGEST_ALGORITHM_IDS = new Map<DigestName, Buffer>();
function digestAlgorithmId(d: DigestName): Buffer {
  let id = DIGEST_ALGORITHM_IDS.get(d);
  if (!id) DIGEST_ALGORITHM_IDS.set(d, (id = algorithm(digestOid(d))));
  return id;
}

/** The digest the caller must hash detached content with for this signer. */
export function signingDigest(signer: SignerCredentials, opts: SignOptions = {}): DigestName {
  if (signer.key.asymmetricKeyType === 'ed25519') return 'sha512';
  const digest = opts.digest ?? 'sha256';
  if (digest === 'sha1') throw new CmsError('SHA-1 is not accepted for new signatures');
  if (!(digest in DIGEST_LENGTH)) throw new CmsError(`unknown digest ${String(digest)}`);
  return digest;
}

/** DER ContentInfo(SignedData) without eContent, over content the caller hashed with signingDigest(). */
export function signDetached(contentDigest: Buffer, signer: SignerCredentials, opts: SignOptions = {}): Buffer {
  const digest = signingDigest(signer, opts);
  if (contentDigest.length !== DIGEST_LENGTH[digest]) {
    throw new CmsError(`content digest has ${contentDigest.length} octets, ${digest} has ${DIGEST_LENGTH[digest]}`);
  }
  return encodeSignedData(undefined, contentDigest, digest, signer, opts);
}

/** DER ContentInfo(SignedData) with the content encapsulated (opaque signing). */
export function signEncapsulated(content: Buffer, signer: SignerCredentials, opts: SignOptions = {}): Buffer {
  const digest = signingDigest(signer, opts);
  return encodeSignedData(content, createHash(digest).update(content).digest(), digest, signer, opts);
}

/**
 * A DER value under construction as a list of chunks: the content (up to the size of the
 * message) is copied once, into the final buffer, instead of once per enclosing level.
 */
interface Pending {
  parts: Buffer[];
  length: number;
}

function constructed(idOctet: number, ...items: (Buffer | Pending)[]): Pending {
  const parts: Buffer[] = [];
  let length = 0;
  for (const item of items) {
    if (Buffer.isBuffer(item)) parts.push(item);
    else parts.push(...item.parts);
    length += item.length;
  }
  return { parts: [header(idOctet, length), ...parts], length: headerLength(length) + length };
}

function encodeSignedData(
  content: Buffer | undefined, contentDigest: Buffer, digest: DigestName, signer: SignerCredentials, opts: SignOptions,
): Buffer {
  const algo = signerFor(signer.key, digest, opts.pss === true);
  requireKeyMatchesCertificate(signer);
  const fixed = signerConstants(signer.cert);
  const attrs = signedAttributes(contentDigest, fixed.essAttribute, opts);
  const signerInfo = sequence(
    VERSION_1, // sid is issuerAndSerialNumber
    fixed.sid,
    digestAlgorithmId(digest),
    retag(attrs, 0xa0), // [0] IMPLICIT; the signature covers the SET OF encoding (RFC 5652 5.4)
    algo.algorithmId,
    octetString(algo.sign(attrs)),
  );
  const encapsulated = content
    ? constructed(0x30, DATA_OID, constructed(0xa0, header(0x04, content.length), content))
    : DETACHED_CONTENT_INFO;
  const signedData = constructed(0x30,
    VERSION_1, // id-data content, issuerAndSerialNumber, X.509 certificates only
    set(digestAlgorithmId(digest)),
    encapsulated,
    certificateSet(signer),
    set(signerInfo),
  );
  const contentInfo = constructed(0x30, SIGNED_DATA_OID, constructed(0xa0, signedData));
  return Buffer.concat(contentInfo.parts, contentInfo.length);
}

/** Signer certificate first, then the chain without duplicates; in that order because naive readers take the first. */
function certificateSet(signer: SignerCredentials): Buffer {
  const ders: Buffer[] = [signer.cert.der];
  for (const c of signer.chain ?? []) if (!ders.some((d) => d.equals(c.der))) ders.push(c.der);
  return tlv(0xa0, ...ders); // [0] IMPLICIT CertificateSet
}

/** The signed attributes in DER: a SET OF sorted by encoding, tagged 0x31 as the signature requires. */
function signedAttributes(contentDigest: Buffer, essAttribute: Buffer, opts: SignOptions): Buffer {
  return setOf(
    CONTENT_TYPE_ATTRIBUTE,
    attribute(SIGNING_TIME_OID, time(opts.signingTime ?? new Date())),
    attribute(MESSAGE_DIGEST_OID, octetString(contentDigest)),
    opts.capabilities ? attribute(OID.smimeCapabilities, checkedCapabilities(opts.capabilities)) : DEFAULT_CAPABILITIES_ATTRIBUTE,
    essAttribute,
  );
}

function checkedCapabilities(caps: Buffer): Buffer {
  try {
    expectSequence(parseExact(caps), 'SMIMECapabilities');
  } catch (e) {
    if (e instanceof Asn1Error) throw new CmsError(`capabilities must be one DER SMIMECapabilities value: ${e.message}`);
    throw e;
  }
  return caps;
}

interface SignerConstants {
  /** IssuerAndSerialNumber. */
  sid: Buffer;
  /** The signingCertificateV2 attribute. */
  essAttribute: Buffer;
}

/** Per-certificate parts of every signature, computed once per certificate object. */
const constantsCache = new WeakMap<Certificate, SignerConstants>();

function signerConstants(cert: Certificate): SignerConstants {
  let c = constantsCache.get(cert);
  if (!c) {
    const serial = tlv(0x02, cert.serial); // as encoded in the certificate, sign octet and all
    // ESSCertIDv2 with hashAlgorithm omitted (DEFAULT sha256) and IssuerSerial { directoryName [4], serial }.
    const essCertId = sequence(
      octetString(createHash('sha256').update(cert.der).digest()),
      sequence(sequence(explicit(4, cert.issuerDer)), serial),
    );
    c = {
      sid: sequence(cert.issuerDer, serial),
      essAttribute: attribute(OID.signingCertificateV2, sequence(sequence(essCertId))),
    };
    constantsCache.set(cert, c);
  }
  return c;
}

/** Certificate each key was last checked against, so the check costs once per pair, not per message. */
const keyChecked = new WeakMap<KeyObject, Certificate>();

/** A key that does not belong to the certificate would produce signatures nobody can verify. */
function requireKeyMatchesCertificate(signer: SignerCredentials): void {
  if (keyChecked.get(signer.key) === signer.cert) return;
  if (!createPublicKey(signer.key).equals(signer.cert.publicKey)) {
    throw new CmsError(`the signing key does not belong to the certificate ${signer.cert.subject}`);
  }
  keyChecked.set(signer.key, signer.cert);
}

// ---------------------------------------------------------------------------
// Verification

/** A signer-level failure; becomes SignerResult.error. */
class SignerFailure extends Error {}

interface ParsedSignedData {
  contentType: string;
  content?: Buffer;
  certificates: Certificate[];
  signerInfos: Asn1Node[];
}

/**
 * Verifies every SignerInfo of a ContentInfo(SignedData) over the encapsulated content or,
 * for a detached signature, over `detachedContent` exactly as given. Throws CmsError only for
 * malformed structures or a missing/duplicated content; bad signatures are results.
 */
export function verifySignedData(der: Buffer, detachedContent?: Buffer, options: VerifyOptions = {}): VerifiedSignedData {
  try {
    const parsed = parseSignedData(der);
    if (parsed.content && detachedContent) throw new CmsError('content is both encapsulated and supplied separately');
    const signed = parsed.content ?? detachedContent;
    if (!signed) throw new CmsError('detached signature: the signed content was not supplied');
    const candidates = [...parsed.certificates, ...(options.certificates ?? [])];
    const digests = new Map<DigestName, Buffer>();
    const contentDigest = (d: DigestName): Buffer => {
      let v = digests.get(d);
      if (!v) digests.set(d, (v = createHash(d).update(signed).digest()));
      return v;
    };
    const signers = parsed.signerInfos.map((si) => verifySignerInfo(si, parsed.contentType, signed, contentDigest, candidates));
    return { contentType: parsed.contentType, content: parsed.content, certificates: parsed.certificates, signers };
  } catch (e) {
    if (e instanceof Asn1Error || e instanceof CertificateError) throw new CmsError(`malformed SignedData: ${e.message}`);
    throw e;
  }
}

function parseSignedData(der: Buffer): ParsedSignedData {
  const info = parseContentInfo(der);
  if (info.contentType !== OID.signedData) throw new CmsError(`not SignedData: content type ${info.contentType}`);
  const fields = expectSequence(info.content, 'SignedData', 4);
  expect(fields[0], Tag.INTEGER, 'SignedData version');
  expect(fields[1], Tag.SET, 'digestAlgorithms'); // each SignerInfo names its own; nothing to precompute here
  const encap = expectSequence(fields[2], 'EncapsulatedContentInfo', 1);
  const contentType = readOid(encap[0], 'eContentType');
  let content: Buffer | undefined;
  if (encap.length > 1) {
    if (!isContext(encap[1], 0)) throw new CmsError('EncapsulatedContentInfo: eContent is not [0] EXPLICIT');
    const inner = children(encap[1]);
    if (inner.length !== 1) throw new CmsError('EncapsulatedContentInfo: [0] must hold exactly one value');
    content = readOctetString(inner[0], 'eContent'); // joins a BER constructed string; a view otherwise
  }
  const last = fields[fields.length - 1];
  const signerSet = expect(last, Tag.SET, 'signerInfos');
  const signerInfos = children(signerSet);
  // A certs-only SignedData signs nothing; refusing it keeps "every signer ok" from meaning "unsigned".
  if (signerInfos.length === 0) throw new CmsError('SignedData has no SignerInfo (certs-only, nothing is signed)');
  if (signerInfos.length > MAX_SIGNERS) throw new CmsError(`SignedData has ${signerInfos.length} signers, more than ${MAX_SIGNERS}`);
  const certificates: Certificate[] = [];
  for (const field of fields.slice(3, -1)) {
    if (isContext(field, 0)) {
      // CertificateChoices: only plain X.509 (a SEQUENCE); attribute and other certificates are tagged.
      for (const c of children(field)) if (isUniversal(c, Tag.SEQUENCE)) certificates.push(cachedCertificate(c));
    } else if (!isContext(field, 1)) {
      throw new CmsError('SignedData: unexpected field before signerInfos');
    }
  }
  return { contentType, content, certificates, signerInfos };
}

/** Certificates kept parsed; entries are bounded in number and size so hostile mail cannot grow it. */
const CERT_CACHE_ENTRIES = 256;
const CERT_CACHE_MAX_DER = 16 * 1024;
const certCache = new Map<string, Certificate>();

/**
 * Mail from one sender carries the same certificates every time, and parsing one costs about
 * ten RSA signature checks; Certificate is immutable, so equal DER can share one (LRU).
 */
function cachedCertificate(node: Asn1Node): Certificate {
  const der = encoding(node);
  if (der.length > CERT_CACHE_MAX_DER) return certificateFromNode(node);
  const key = der.toString('latin1');
  let cert = certCache.get(key);
  if (cert) certCache.delete(key);
  else cert = certificateFromNode(node);
  certCache.set(key, cert);
  if (certCache.size > CERT_CACHE_ENTRIES) certCache.delete(certCache.keys().next().value as string);
  return cert;
}

interface SignedAttributes {
  /** The signed bytes: the received encoding with the [0] tag replaced by SET OF's 0x31. */
  encoded: Buffer;
  contentType?: string;
  messageDigest?: Buffer;
  signingTime?: Date;
  capabilities?: Buffer;
  essV2?: Asn1Node;
  essV1?: Asn1Node;
}

/** Attributes RFC 5652 11 and RFC 5035 allow only once, with one value. */
const SINGLE_VALUED = new Set<string>([
  OID.contentType, OID.messageDigest, OID.signingTime, OID.smimeCapabilities, OID.signingCertificateV2, OID_SIGNING_CERTIFICATE,
]);

const ATTRIBUTE_NAMES: Record<string, string> = {
  [OID.contentType]: 'contentType', [OID.messageDigest]: 'messageDigest', [OID.signingTime]: 'signingTime',
  [OID.smimeCapabilities]: 'SMIMECapabilities', [OID.signingCertificateV2]: 'signingCertificateV2',
  [OID_SIGNING_CERTIFICATE]: 'signingCertificate',
};

function readSignedAttributes(node: Asn1Node): SignedAttributes {
  const out: SignedAttributes = { encoded: retag(encoding(node), 0x31) };
  const seen = new Set<string>();
  for (const attr of children(node)) {
    const [typeNode, valuesNode] = expectSequence(attr, 'Attribute', 2);
    const type = readOid(typeNode, 'attrType');
    const values = children(expect(valuesNode, Tag.SET, 'attrValues'));
    if (!SINGLE_VALUED.has(type)) continue;
    const name = ATTRIBUTE_NAMES[type];
    if (seen.has(type)) throw new SignerFailure(`signed attribute ${name} appears more than once`);
    if (values.length !== 1) throw new SignerFailure(`signed attribute ${name} must have exactly one value`);
    seen.add(type);
    const [v] = values;
    switch (type) {
      case OID.contentType: out.contentType = readOid(v, 'contentType attribute'); break;
      case OID.messageDigest: out.messageDigest = readOctetString(v, 'messageDigest attribute'); break;
      case OID.signingTime: out.signingTime = readTime(v, 'signingTime attribute'); break;
      case OID.smimeCapabilities: out.capabilities = Buffer.from(encoding(v)); break;
      case OID.signingCertificateV2: out.essV2 = v; break;
      default: out.essV1 = v;
    }
  }
  return out;
}

/** SignerIdentifier: issuerAndSerialNumber (SEQUENCE) or subjectKeyIdentifier ([0] IMPLICIT OCTET STRING). */
function findSigner(sid: Asn1Node, candidates: readonly Certificate[]): Certificate | undefined {
  if (isContext(sid, 0)) {
    const keyId = content(sid);
    return candidates.find((c) => c.subjectKeyId?.equals(keyId));
  }
  const [issuer, serial] = expectSequence(sid, 'IssuerAndSerialNumber', 2);
  const issuerDer = encoding(issuer);
  const serialBytes = content(expect(serial, Tag.INTEGER, 'serialNumber'));
  return candidates.find((c) => c.serial.equals(serialBytes) && c.issuerDer.equals(issuerDer));
}

function verifySignerInfo(
  node: Asn1Node, contentType: string, signed: Buffer, contentDigest: (d: DigestName) => Buffer, candidates: readonly Certificate[],
): SignerResult {
  const f = expectSequence(node, 'SignerInfo', 5);
  expect(f[0], Tag.INTEGER, 'SignerInfo version');
  const digestOidStr = readOid(expectSequence(f[2], 'digestAlgorithm', 1)[0], 'digestAlgorithm');
  const attrsNode = isContext(f[3], 0) ? f[3] : undefined;
  const rest = f.slice(attrsNode ? 4 : 3);
  const sigAlgNode = rest[0];
  const sigAlgOid = readOid(expectSequence(sigAlgNode, 'signatureAlgorithm', 1)[0], 'signatureAlgorithm');
  const signature = readOctetString(rest[1], 'signature');
  const attrs = attrsNode ? readSignedAttributesOrFailure(attrsNode) : undefined;
  const signer = findSigner(f[1], candidates);
  const digest = knownDigest(digestOidStr);
  const result: SignerResult = {
    ok: false, signer, digest: digest ?? digestOidStr, signatureAlgorithm: sigAlgOid,
    signingTime: attrs?.value?.signingTime, capabilities: attrs?.value?.capabilities,
  };
  try {
    if (attrs?.failure) throw new SignerFailure(attrs.failure);
    if (!digest) throw new SignerFailure(`unsupported digest algorithm ${digestOidStr}`);
    const verifier = verifierFor(sigAlgNode, digest);
    result.signatureAlgorithm = verifier.name;
    if (!signer) throw new SignerFailure('signer certificate not included');
    let data = signed;
    if (attrs?.value) {
      checkSignedAttributes(attrs.value, contentType, contentDigest(digest), signer);
      data = attrs.value.encoded;
    } else if (contentType !== OID.data) {
      throw new SignerFailure(`signed attributes are required for content type ${contentType}`); // RFC 5652 5.3
    }
    if (!checkSignature(verifier, data, signature, signer)) throw new SignerFailure('signature does not verify');
    result.ok = true;
  } catch (e) {
    if (!(e instanceof SignerFailure || e instanceof UnsupportedSignatureError)) throw e;
    result.error = e.message;
  }
  return result;
}

/** Node's crypto refuses some hostile parameter and key combinations by throwing; those are bad signatures too. */
function checkSignature(verifier: Verifier, data: Buffer, signature: Buffer, signer: Certificate): boolean {
  try {
    return verifier.verify(data, signature, signer.publicKey);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('ERR_')) throw new SignerFailure(`signature check failed: ${(e as Error).message}`);
    throw e;
  }
}

/** Attribute problems are the signer's failure, reported with its other fields; broken DER still throws. */
function readSignedAttributesOrFailure(node: Asn1Node): { value?: SignedAttributes; failure?: string } {
  try {
    return { value: readSignedAttributes(node) };
  } catch (e) {
    if (e instanceof SignerFailure) return { failure: e.message };
    throw e;
  }
}

function checkSignedAttributes(attrs: SignedAttributes, contentType: string, digest: Buffer, signer: Certificate): void {
  if (attrs.contentType === undefined) throw new SignerFailure('signed attributes lack contentType');
  if (attrs.contentType !== contentType) {
    throw new SignerFailure(`signed contentType ${attrs.contentType} differs from eContentType ${contentType}`);
  }
  if (!attrs.messageDigest) throw new SignerFailure('signed attributes lack messageDigest');
  if (!attrs.messageDigest.equals(digest)) throw new SignerFailure('message digest mismatch (content altered)');
  if (attrs.essV2) checkEssCertId(attrs.essV2, signer, 'sha256', 'signingCertificateV2');
  if (attrs.essV1) checkEssCertId(attrs.essV1, signer, 'sha1', 'signingCertificate');
}

/**
 * SigningCertificate(V2) (RFC 5035): the first ESSCertID(v2) must hash the signer certificate,
 * which binds the signature to that certificate and not another one with the same key.
 */
function checkEssCertId(value: Asn1Node, signer: Certificate, defaultHash: DigestName, name: string): void {
  const [certs] = expectSequence(value, name, 1);
  const [first] = expectSequence(certs, `${name} certs`, 1);
  const fields = expectSequence(first, 'ESSCertID', 1);
  let hash: DigestName | undefined = defaultHash;
  let i = 0;
  if (name === 'signingCertificateV2' && isUniversal(fields[0], Tag.SEQUENCE)) {
    const hashOid = readOid(expectSequence(fields[0], 'ESSCertIDv2 hashAlgorithm', 1)[0]);
    hash = knownDigest(hashOid);
    if (!hash) throw new SignerFailure(`${name} uses unsupported hash ${hashOid}`);
    i = 1;
  }
  const certHash = readOctetString(fields[i], 'certHash');
  if (!createHash(hash).update(signer.der).digest().equals(certHash)) {
    throw new SignerFailure(`${name} does not identify the signer certificate`);
  }
}
