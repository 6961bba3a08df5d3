/**
 * EnvelopedData (RFC 5652 section 6) and AuthEnvelopedData (RFC 5083, AES-GCM per RFC 5084).
 *
 * Encryption streams: every length is known from the plaintext length, so the definite-length DER
 * header is written first and the ciphertext follows piece by piece as the cipher produces it.
 * Decryption accepts BER (indefinite lengths, chunked encryptedContent) and reports every
 * key, padding, tag or content failure with one message, so a failure reveals nothing about where
 * it happened (RFC 3218).
 */
import {
  createCipheriv, createDecipheriv, randomBytes, type CipherGCM, type CipherGCMTypes, type DecipherGCM, type KeyObject,
} from 'node:crypto';
import {
  algorithm, Asn1Error, children, content, encoding, expectSequence, header, headerLength, integer, isContext,
  isUniversal, oid, readOctetString, readOid, readSmallInt, setOf, Tag, type Asn1Node,
} from '../../asn1/der';
import { OID } from '../../asn1/oids';
import type { Certificate } from '../../pki/certificate';
import {
  ciphertextLength, contentCipherByName, contentCipherByOid, encodeCipherParams, GCM_TAG_LENGTH, parseCipherParams,
  type CipherParams, type ContentCipherSpec,
} from './content-cipher';
import { CmsError, parseContentInfo } from './content-info';
import type { RsaKeyTransport } from './key-transport';
import { describeRid, ridMatches } from './recipient-id';
import { encodeRecipientInfo, parseRecipientInfos, type RecipientEntry } from './recipient-info';

export type { RsaKeyTransport } from './key-transport';
export type ContentCipher = 'aes-128-cbc' | 'aes-256-cbc' | 'aes-128-gcm' | 'aes-256-gcm';

/** What cstp writes; the other ciphers in content-cipher.ts (AES-192, 3DES) are accepted on input only. */
const CONTENT_CIPHERS: readonly string[] = ['aes-128-cbc', 'aes-256-cbc', 'aes-128-gcm', 'aes-256-gcm'];
const RSA_KEY_TRANSPORTS: readonly string[] = ['rsa-pkcs1', 'rsa-oaep'];

export interface EnvelopeOptions {
  /** Default 'aes-256-cbc'; the GCM ciphers produce AuthEnvelopedData. */
  cipher?: ContentCipher;
  /** Default 'rsa-pkcs1'; 'rsa-oaep' is RSAES-OAEP with SHA-256 and MGF1-SHA-256. */
  rsaKeyTransport?: RsaKeyTransport;
  /** Default 'issuerAndSerialNumber'. */
  recipientIdentifier?: 'issuerAndSerialNumber' | 'subjectKeyIdentifier';
}

export interface DecryptionKey {
  key: KeyObject;
  cert: Certificate;
}

export interface OpenedEnvelope {
  content: Buffer;
  /** eContentType, normally id-data. */
  contentType: string;
  /** e.g. 'aes-256-cbc'. */
  cipher: string;
  /** True for AuthEnvelopedData, whose tag was verified. */
  authenticated: boolean;
  /** The certificate whose key opened it. */
  recipient: Certificate;
  /** 'rsa-pkcs1', 'rsa-oaep', 'rsa-oaep-sha1', 'ecdh-p256-sha256kdf', ... */
  keyEncryption: string;
}

/** None of our certificates is named among the RecipientInfos. */
export class NoMatchingRecipientError extends CmsError {
  override name = 'NoMatchingRecipientError';
}

/** The message is for us but does not decrypt; deliberately the same message for every cause. */
export class DecryptionError extends CmsError {
  override name = 'DecryptionError';
}

const DECRYPTION_FAILED = 'decryption failed: wrong key or corrupted message';

/** Upper bound on the plaintext fed to the cipher at once, which bounds every yielded piece. */
export const MAX_PIECE = 64 * 1024;

// ---------------------------------------------------------------------------
// Encryption

/** RFC 5652 6.1: version 0 when every RecipientInfo is version 0 (and no originatorInfo/attributes), else 2. */
function envelopedDataVersion(recipientVersions: number[]): number {
  return recipientVersions.every((v) => v === 0) ? 0 : 2;
}

/** The plaintext in slices of at most MAX_PIECE octets, checked against the declared length. */
function* slices(plaintext: Iterable<Buffer>, declared: number): Generator<Buffer> {
  let seen = 0;
  for (const chunk of plaintext) {
    seen += chunk.length;
    if (seen > declared) throw new CmsError(`plaintext is longer than the declared ${declared} octets`);
    for (let off = 0; off < chunk.length; off += MAX_PIECE) yield chunk.subarray(off, off + MAX_PIECE);
  }
  if (seen !== declared) throw new CmsError(`plaintext has ${seen} octets, ${declared} were declared`);
}

/**
 * Encrypts to every certificate in `recipients` and yields the DER ContentInfo as consecutive
 * pieces: the header (through the encryptedContent length), then the ciphertext as produced, then
 * the final block and, for GCM, the mac. The plaintext is read once and never copied whole.
 */
export function* envelope(
  plaintext: Iterable<Buffer>, plaintextLength: number, recipients: Certificate[], opts: EnvelopeOptions = {},
): Generator<Buffer> {
  if (recipients.length === 0) throw new CmsError('no recipients');
  if (!Number.isSafeInteger(plaintextLength) || plaintextLength < 0) throw new CmsError(`bad plaintext length ${plaintextLength}`);
  const { cipher: name = 'aes-256-cbc', rsaKeyTransport = 'rsa-pkcs1', recipientIdentifier = 'issuerAndSerialNumber' } = opts;
  // Checked at run time too: the options may come from configuration, not just typed code.
  if (!CONTENT_CIPHERS.includes(name)) throw new CmsError(`unsupported content cipher ${name}`);
  if (!RSA_KEY_TRANSPORTS.includes(rsaKeyTransport)) throw new CmsError(`unsupported RSA key transport ${rsaKeyTransport}`);
  const spec = contentCipherByName(name);
  const authenticated = spec.mode === 'gcm';
  const cek = randomBytes(spec.keyLength);
  const iv = randomBytes(spec.ivLength);
  const infos = recipients.map((cert) => encodeRecipientInfo(cert, cek, { rsaKeyTransport, recipientIdentifier }));

  // RFC 5083: AuthEnvelopedData is always version 0.
  const version = integer(authenticated ? 0 : envelopedDataVersion(infos.map((i) => i.version)));
  const recipientInfos = setOf(...infos.map((i) => i.der));
  const ctLength = ciphertextLength(spec, plaintextLength);
  const eciPrefix = Buffer.concat([oid(OID.data), algorithm(spec.oid, encodeCipherParams(spec, iv)), header(0x80, ctLength)]);
  const eciLength = eciPrefix.length + ctLength;
  const macLength = authenticated ? headerLength(GCM_TAG_LENGTH) + GCM_TAG_LENGTH : 0;
  const bodyLength = version.length + recipientInfos.length + headerLength(eciLength) + eciLength + macLength;
  const explicitLength = headerLength(bodyLength) + bodyLength;
  const contentType = oid(authenticated ? OID.authEnvelopedData : OID.envelopedData);
  const total = contentType.length + headerLength(explicitLength) + explicitLength;
  yield Buffer.concat([
    header(0x30, total), contentType, header(0xa0, explicitLength), header(0x30, bodyLength), version,
    recipientInfos, header(0x30, eciLength), eciPrefix,
  ]);

  const cipher = authenticated
    ? createCipheriv(spec.name as CipherGCMTypes, cek, iv, { authTagLength: GCM_TAG_LENGTH })
    : createCipheriv(spec.name, cek, iv);
  for (const slice of slices(plaintext, plaintextLength)) {
    const out = cipher.update(slice);
    if (out.length > 0) yield out;
  }
  const last = cipher.final();
  yield authenticated ? Buffer.concat([last, header(0x04, GCM_TAG_LENGTH), (cipher as CipherGCM).getAuthTag()]) : last;
}

export function envelopeToBuffer(plaintext: Buffer, recipients: Certificate[], opts?: EnvelopeOptions): Buffer {
  return Buffer.concat([...envelope([plaintext], plaintext.length, recipients, opts)]);
}

// ---------------------------------------------------------------------------
// Decryption

interface EnvelopeFields {
  authenticated: boolean;
  recipientInfos: Asn1Node;
  contentType: string;
  spec: ContentCipherSpec;
  params: CipherParams;
  /** The primitive segments of encryptedContent, in order (one unless BER chunked it). */
  segments: Buffer[];
  /** AuthEnvelopedData: the DER SET OF authAttrs (the AAD), if present. */
  aad?: Buffer;
  mac?: Buffer;
}

/** The content octets of every primitive piece of a possibly constructed string, without joining them. */
function segmentsOf(node: Asn1Node): Buffer[] {
  if (!node.constructed) return [content(node)];
  return children(node).flatMap(segmentsOf);
}

/** RFC 5083 2.2: the AAD is the DER of authAttrs with the SET OF tag instead of [1] IMPLICIT. */
function authAttrsAad(node: Asn1Node): Buffer {
  const der = Buffer.from(encoding(node));
  der[0] = 0x31;
  return der;
}

function parseEncryptedContentInfo(node: Asn1Node | undefined): Pick<EnvelopeFields, 'contentType' | 'spec' | 'params' | 'segments'> {
  const [type, alg, encrypted] = expectSequence(node, 'EncryptedContentInfo', 2);
  const [algOid, algParams] = expectSequence(alg, 'contentEncryptionAlgorithm', 1);
  const spec = contentCipherByOid(readOid(algOid, 'contentEncryptionAlgorithm'));
  if (!encrypted || !isContext(encrypted, 0)) throw new CmsError('encryptedContent is absent (detached content is not supported)');
  return {
    contentType: readOid(type, 'contentType'),
    spec,
    params: parseCipherParams(spec, algParams),
    segments: segmentsOf(encrypted),
  };
}

function parseEnvelope(der: Buffer): EnvelopeFields {
  const ci = parseContentInfo(der);
  const authenticated = ci.contentType === OID.authEnvelopedData;
  if (!authenticated && ci.contentType !== OID.envelopedData) {
    throw new CmsError(`not an enveloped message (content type ${ci.contentType})`);
  }
  const fields = expectSequence(ci.content, authenticated ? 'AuthEnvelopedData' : 'EnvelopedData', 3);
  readSmallInt(fields[0], 'version');
  let i = 1;
  if (isContext(fields[i], 0)) i++; // originatorInfo: certificates cstp has no use for
  const recipientInfos = fields[i++];
  const eci = parseEncryptedContentInfo(fields[i++]);
  if (authenticated !== (eci.spec.mode === 'gcm')) {
    // RFC 5083/5084: GCM belongs in AuthEnvelopedData; a CBC one there would be unauthenticated.
    throw new CmsError(`${eci.spec.name} is not allowed in ${authenticated ? 'AuthEnvelopedData' : 'EnvelopedData'}`);
  }
  if (!authenticated) return { authenticated, recipientInfos, ...eci };
  const aad = fields[i] && isContext(fields[i], 1) ? authAttrsAad(fields[i++]) : undefined;
  const macNode = fields[i];
  if (!macNode || !isUniversal(macNode, Tag.OCTET_STRING)) throw new CmsError('AuthEnvelopedData: missing mac');
  return { authenticated, recipientInfos, ...eci, aad, mac: readOctetString(macNode, 'mac') };
}

/**
 * Decrypts the content with `cek`, or returns undefined on any failure. The whole ciphertext is
 * processed and, for GCM, the tag checked before the plaintext is returned; on failure the
 * partial plaintext is wiped and never leaves this function.
 */
function decryptContent(f: EnvelopeFields, cek: Buffer): Buffer | undefined {
  const total = f.segments.reduce((n, s) => n + s.length, 0);
  const out = Buffer.alloc(total + f.spec.blockSize);
  let length = 0;
  try {
    const decipher = f.authenticated
      ? createDecipheriv(f.spec.name as CipherGCMTypes, cek, f.params.iv, { authTagLength: f.params.tagLength })
      : createDecipheriv(f.spec.name, cek, f.params.iv);
    if (f.authenticated) {
      if (f.mac?.length !== f.params.tagLength) return undefined;
      (decipher as DecipherGCM).setAuthTag(f.mac);
      if (f.aad) (decipher as DecipherGCM).setAAD(f.aad);
    }
    for (const segment of f.segments) {
      for (let off = 0; off < segment.length; off += MAX_PIECE) {
        length += decipher.update(segment.subarray(off, off + MAX_PIECE)).copy(out, length);
      }
    }
    length += decipher.final().copy(out, length);
    return out.subarray(0, length);
  } catch {
    out.fill(0);
    return undefined;
  }
}

interface Candidate {
  entry: RecipientEntry;
  key: DecryptionKey;
}

function candidates(entries: RecipientEntry[], keys: DecryptionKey[]): Candidate[] {
  return entries.flatMap((entry) => keys.filter((key) => ridMatches(entry.rid, key.cert)).map((key) => ({ entry, key })));
}

/** Which of `certs` the envelope names among its RecipientInfos; nothing is decrypted. */
export function envelopeRecipients(der: Buffer, certs: Certificate[]): Certificate[] {
  try {
    const entries = parseRecipientInfos(parseEnvelope(der).recipientInfos);
    return certs.filter((cert) => entries.some((e) => ridMatches(e.rid, cert)));
  } catch (e) {
    if (e instanceof Asn1Error) throw new CmsError(`malformed CMS: ${e.message}`);
    throw e;
  }
}

/**
 * Opens an EnvelopedData or AuthEnvelopedData ContentInfo with whichever of `keys` it is
 * addressed to. Throws NoMatchingRecipientError when none is, DecryptionError when it does not
 * decrypt, and CmsError when it is malformed or uses an unsupported algorithm.
 */
export function openEnvelope(der: Buffer, keys: DecryptionKey[]): OpenedEnvelope {
  try {
    const f = parseEnvelope(der);
    const entries = parseRecipientInfos(f.recipientInfos);
    const matching = candidates(entries, keys);
    if (matching.length === 0) {
      const named = entries.map((e) => describeRid(e.rid)).join(', ') || 'no usable RecipientInfo';
      throw new NoMatchingRecipientError(`none of our certificates is a recipient (recipients: ${named})`);
    }
    // Each candidate is tried to the end: a wrong key gives a random CEK that fails only here.
    for (const { entry, key } of matching) {
      const { cek, keyEncryption } = entry.recover(key.key, f.spec.keyLength);
      const plaintext = decryptContent(f, cek);
      if (plaintext) {
        return {
          content: plaintext, contentType: f.contentType, cipher: f.spec.name, authenticated: f.authenticated,
          recipient: key.cert, keyEncryption,
        };
      }
    }
    throw new DecryptionError(DECRYPTION_FAILED);
  } catch (e) {
    if (e instanceof Asn1Error) throw new CmsError(`malformed CMS: ${e.message}`);
    throw e;
  }
}
