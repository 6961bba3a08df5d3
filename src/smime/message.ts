/**
 * S/MIME on whole RFC 5322 messages (RFC 8551): the layer the CLI and the gateway call.
 *
 * Wrapping keeps the message's own header fields (From, To, Subject, Date, Message-ID,
 * trace fields...) outside and moves the content header fields (Content-*) into the
 * protected entity; unwrapping puts the outer fields back around the protected content.
 * Inputs are complete messages held once in memory; outputs are chunk iterables, so a
 * large message is never copied again while it is signed or encrypted.
 */
import { createHash } from 'node:crypto';
import type { Certificate } from '../pki/certificate';
import { checkEndEntity, validatePath, type Purpose } from '../pki/path';
import { parseAddressList } from './address';
import { CmsError, parseContentInfo } from './cms/content-info';
import { micalg } from './cms/digest';
import {
  envelope, envelopeRecipients, openEnvelope, type DecryptionKey, type EnvelopeOptions, type OpenedEnvelope,
} from './cms/enveloped-data';
import {
  signDetached, signEncapsulated, signingDigest, verifySignedData, type SignerCredentials, type SignerResult,
  type SignOptions,
} from './cms/signed-data';
import { OID } from '../asn1/oids';
import {
  base64Lines, canonicalize, decodeTransferEncoding, headerValue, is7bitSafe, make7bit, MimeError, newBoundary,
  parseContentType, parseEntity, parseLayout, splitHeaders, splitMultipart, type Entity, type HeaderField,
} from './mime';

/** The one header cstp writes to report what it did; any incoming copy is removed first. */
export const STATUS_HEADER = 'X-Cstp-Security';

export class SmimeError extends Error {
  override name = 'SmimeError';
}

export type Chunks = Iterable<Buffer>;

// ---------------------------------------------------------------------------
// Shared helpers

const CRLF = Buffer.from('\r\n');

interface Split {
  entity: Entity;
  /** Header fields that stay outside the S/MIME object. */
  outer: HeaderField[];
  /** The protected entity (content header fields + body) as chunks, and its length. */
  inner: Buffer[];
  innerLength: number;
}

/** Splits a message into the fields that stay outside and the entity to protect. */
function splitForWrapping(input: Buffer): Split {
  const entity = parseEntity(canonicalize(input));
  const { outer, content } = splitHeaders(entity.headers);
  const head = content.length
    ? content.map((h) => h.raw)
    : [Buffer.from('Content-Type: text/plain; charset=us-ascii\r\n')]; // RFC 2045 5.2 default, made explicit
  const inner = [...head, CRLF, entity.body];
  return { entity, outer, inner, innerLength: inner.reduce((n, b) => n + b.length, 0) };
}

/** The outer header fields, MIME-Version and the new content header fields, then the empty line. */
export function* outerHeaderChunks(outer: HeaderField[], contentHeaders: string[]): Generator<Buffer> {
  for (const h of outer) yield h.raw;
  yield Buffer.from(['MIME-Version: 1.0', ...contentHeaders, ''].join('\r\n'));
  yield CRLF;
}

export function pkcs7MimeHeaders(smimeType: string): string[] {
  return [
    `Content-Type: application/pkcs7-mime; smime-type=${smimeType}; name="smime.p7m"`,
    'Content-Transfer-Encoding: base64',
    'Content-Disposition: attachment; filename="smime.p7m"',
  ];
}

/**
 * Puts the outer header fields back around decrypted or verified content. A field the
 * protected entity carries itself (e.g. a signed Subject) wins over the outer copy.
 */
function restoreOuterHeaders(outer: HeaderField[], content: Buffer): Buffer {
  const inner = parseEntity(canonicalize(content));
  const innerNames = new Set(inner.headers.map((h) => h.name.toLowerCase()));
  const kept = outer.filter((h) => !innerNames.has(h.name.toLowerCase()));
  const needsMimeVersion = inner.headers.some((h) => /^content-/i.test(h.name)) && !innerNames.has('mime-version');
  const head = kept.map((h) => h.raw);
  if (needsMimeVersion) head.push(Buffer.from('MIME-Version: 1.0\r\n'));
  const headerBytes = inner.headers.map((h) => h.raw);
  return Buffer.concat([...head, ...headerBytes, CRLF, inner.body]);
}

/**
 * Refuses certificates peers would reject (RFC 8550: validity, key usage, emailProtection,
 * RSA >= 2048): a message they cannot accept is worse than an error now. The sender address
 * is not checked, since a gateway signs for its whole domain (RFC 3183).
 */
export function requireUsable(cert: Certificate, purpose: Purpose): void {
  const check = checkEndEntity(cert, { purpose });
  if (!check.ok) throw new SmimeError(`cannot ${purpose} with ${cert.subject}: ${check.reason}`);
}

export function withoutStatusHeaders(headers: HeaderField[]): HeaderField[] {
  return headers.filter((h) => h.name.toLowerCase() !== STATUS_HEADER.toLowerCase());
}

/**
 * The message without any status header field claiming a cstp result (forged or stale). When a line that is no
 * header field ended the header section, the empty line is written out after the fields: a lenient reader would
 * otherwise take the lines after it, a forged status field among them, for header fields.
 */
export function stripStatusHeaders(message: Buffer): Buffer {
  const entity = parseLayout(canonicalize(message));
  const kept = withoutStatusHeaders(entity.headers);
  if (kept.length === entity.headers.length && (entity.separated || entity.body.length === 0)) return message;
  return Buffer.concat([...kept.map((h) => h.raw), CRLF, entity.body]);
}

// ---------------------------------------------------------------------------
// Sign

export interface SignMessageOptions extends SignOptions {
  /** application/pkcs7-mime signed-data instead of multipart/signed. */
  opaque?: boolean;
}

/** A MIME entity produced by signing: its content header fields and its body, as chunks. */
interface SignedEntity {
  contentHeaders: string[];
  body: Buffer[];
}

/**
 * Signs a message. Detached (default): multipart/signed whose first part is the content
 * entity made 7-bit safe, so relays cannot alter the signed bytes (RFC 8551 3.1.3).
 * The signature is made now, so errors come before any output.
 */
export function signMessage(input: Buffer, signer: SignerCredentials, opts: SignMessageOptions = {}): Chunks {
  requireUsable(signer.cert, 'sign');
  const split = splitForWrapping(input);
  const signed = signEntity(split, signer, opts);
  return (function* (): Generator<Buffer> {
    yield* outerHeaderChunks(split.outer, signed.contentHeaders);
    yield* signed.body;
  })();
}

function signEntity(split: Split, signer: SignerCredentials, opts: SignMessageOptions): SignedEntity {
  return opts.opaque ? signOpaque(split, signer, opts) : signMultipart(split, signer, opts);
}

function signOpaque(split: Split, signer: SignerCredentials, opts: SignOptions): SignedEntity {
  const der = signEncapsulated(Buffer.concat(split.inner, split.innerLength), signer, opts);
  return { contentHeaders: pkcs7MimeHeaders('signed-data'), body: [...base64Lines([der])] };
}

function sevenBitEntity(split: Split): Buffer {
  try {
    return make7bit(Buffer.concat(split.inner, split.innerLength));
  } catch (e) {
    if (!(e instanceof MimeError)) throw e;
    throw new SmimeError(`cannot make the content 7-bit safe for multipart/signed (${e.message}); sign it opaque instead`);
  }
}

function signMultipart(split: Split, signer: SignerCredentials, opts: SignOptions): SignedEntity {
  // Most mail is already 7-bit (base64 attachments): then the body is hashed in place, uncopied.
  const signed = split.inner.every(is7bitSafe) ? split.inner : [sevenBitEntity(split)];
  const digestName = signingDigest(signer, opts);
  const hash = createHash(digestName);
  for (const chunk of signed) hash.update(chunk);
  const frame = multipartSignedFrame(hash.digest(), signer, opts);
  return { contentHeaders: frame.contentHeaders, body: [frame.head, ...signed, ...frame.tail] };
}

/**
 * Everything of a multipart/signed entity except the signed part itself, for a signed part whose
 * digest (signingDigest()) the caller computed: its content header fields, the body before the
 * signed part, and the body after it (the signature part and the closing delimiter).
 */
export interface MultipartSignedFrame {
  contentHeaders: string[];
  head: Buffer;
  tail: Buffer[];
}

export function multipartSignedFrame(contentDigest: Buffer, signer: SignerCredentials, opts: SignOptions = {}): MultipartSignedFrame {
  const digestName = signingDigest(signer, opts);
  const signature = signDetached(contentDigest, signer, opts);
  const boundary = newBoundary();
  return {
    contentHeaders: [
      `Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=${micalg(digestName)};`,
      ` boundary="${boundary}"`,
    ],
    head: Buffer.from(`This is an S/MIME signed message\r\n\r\n--${boundary}\r\n`),
    tail: [
      Buffer.from(
        `\r\n--${boundary}\r\n` +
          'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n' +
          'Content-Transfer-Encoding: base64\r\n' +
          'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n',
      ),
      ...base64Lines([signature]),
      Buffer.from(`--${boundary}--\r\n`),
    ],
  };
}

// ---------------------------------------------------------------------------
// Encrypt

/**
 * Encrypts a message to the given certificates. AES-GCM ciphers give AuthEnvelopedData
 * (smime-type=authEnveloped-data); the default AES-256-CBC + RSA PKCS#1 v1.5 is what every
 * mainstream client reads.
 */
export function encryptMessage(input: Buffer, recipients: Certificate[], opts: EnvelopeOptions = {}): Chunks {
  checkRecipients(recipients);
  const split = splitForWrapping(input);
  return encryptEntity(split.outer, split.inner, split.innerLength, recipients, opts);
}

/**
 * Signs, then encrypts the signed entity (RFC 8551 3.6 order), in one pass: the signed entity
 * goes into the envelope as chunks, never serialised and re-parsed as a message in between.
 * Output is the same as `sign | encrypt`.
 */
export function signAndEncryptMessage(
  input: Buffer, signer: SignerCredentials, recipients: Certificate[], opts: SignMessageOptions & EnvelopeOptions = {},
): Chunks {
  requireUsable(signer.cert, 'sign');
  checkRecipients(recipients);
  const split = splitForWrapping(input);
  const signed = signEntity(split, signer, opts);
  const inner = [Buffer.from(`${signed.contentHeaders.join('\r\n')}\r\n\r\n`), ...signed.body];
  return encryptEntity(split.outer, inner, inner.reduce((n, b) => n + b.length, 0), recipients, opts);
}

export function checkRecipients(recipients: Certificate[]): void {
  if (recipients.length === 0) throw new SmimeError('no recipient certificate given');
  for (const r of recipients) requireUsable(r, 'encrypt');
}

/**
 * The outer header fields around an application/pkcs7-mime envelope of `inner` (innerLength octets, read once).
 * The envelope is started before returning, so an unusable certificate fails before any output.
 */
export function encryptEntity(
  outer: HeaderField[], inner: Iterable<Buffer>, innerLength: number, recipients: Certificate[], opts: EnvelopeOptions,
): Chunks {
  const authenticated = /gcm$/.test(opts.cipher ?? '');
  const der = envelope(inner, innerLength, recipients, opts);
  // Start the envelope now: an unusable certificate fails here, before any output is written.
  const first = der.next();
  return (function* (): Generator<Buffer> {
    yield* outerHeaderChunks(outer, pkcs7MimeHeaders(authenticated ? 'authEnveloped-data' : 'enveloped-data'));
    yield* base64Lines((function* () {
      if (!first.done) yield first.value;
      yield* der;
    })());
  })();
}

// ---------------------------------------------------------------------------
// Recognising S/MIME

type Layer =
  | { kind: 'multipart-signed'; boundary: string }
  | { kind: 'cms'; der: Buffer; contentType: string }
  | { kind: 'plain' };

const PKCS7_MIME = new Set(['application/pkcs7-mime', 'application/x-pkcs7-mime']);
const PKCS7_SIGNATURE = new Set(['application/pkcs7-signature', 'application/x-pkcs7-signature']);

/** What the top level of a message is. Only a whole-body S/MIME object counts (EFAIL). */
function classify(entity: Entity): Layer {
  const ct = parseContentType(headerValue(entity.headers, 'content-type'));
  if (ct.mimeType === 'multipart/signed') {
    const protocol = (ct.params.protocol ?? '').toLowerCase();
    if (!PKCS7_SIGNATURE.has(protocol)) return { kind: 'plain' }; // e.g. PGP/MIME: not ours
    const boundary = ct.params.boundary;
    if (!boundary) throw new SmimeError('multipart/signed without a boundary parameter');
    return { kind: 'multipart-signed', boundary };
  }
  const isP7m =
    PKCS7_MIME.has(ct.mimeType) ||
    (ct.mimeType === 'application/octet-stream' && /\.p7m$/i.test(ct.params.name ?? ''));
  if (!isP7m) return { kind: 'plain' };
  const der = decodeTransferEncoding(entity.body, headerValue(entity.headers, 'content-transfer-encoding'));
  return { kind: 'cms', der, contentType: parseContentInfo(der).contentType };
}

/**
 * Decoded CMS layers by the canonical message they were read from: the gateway asks what a message is
 * (topLevel), whom it is for (addressedTo) and then unwraps it, and each would otherwise decode the whole
 * base64 body again (for a 100 MB message, 100 MB of garbage and a second apiece each time).
 */
const decoded = new WeakMap<Buffer, Layer>();

/** classify() of the message `canonical`, decoded once per message Buffer. */
function classifyMessage(canonical: Buffer, entity: Entity = parseEntity(canonical)): Layer {
  const known = decoded.get(canonical);
  if (known) return known;
  const layer = classify(entity);
  if (layer.kind === 'cms') decoded.set(canonical, layer);
  return layer;
}

/**
 * Whether a header section makes the body an S/MIME object that classify() would open (the Content-Type
 * alone decides; the body is not looked at). False means topLevel() is 'plain'.
 */
export function claimsSmime(headers: HeaderField[]): boolean {
  const ct = parseContentType(headerValue(headers, 'content-type'));
  if (ct.mimeType === 'multipart/signed') return PKCS7_SIGNATURE.has((ct.params.protocol ?? '').toLowerCase());
  return PKCS7_MIME.has(ct.mimeType) || (ct.mimeType === 'application/octet-stream' && /\.p7m$/i.test(ct.params.name ?? ''));
}

export type TopLevel = 'plain' | 'signed' | 'encrypted' | 'unreadable';

/** What the whole body of a message is, as unwrapping will see it. */
export function topLevel(message: Buffer): TopLevel {
  let layer: Layer;
  try {
    layer = classifyMessage(canonicalize(message));
  } catch {
    return 'unreadable';
  }
  if (layer.kind === 'plain') return 'plain';
  if (layer.kind === 'multipart-signed' || layer.contentType === OID.signedData) return 'signed';
  return layer.contentType === OID.envelopedData || layer.contentType === OID.authEnvelopedData ? 'encrypted' : 'unreadable';
}

/**
 * For a message whose whole body is encrypted: those of `certs` its RecipientInfos name, so
 * that only keys it is addressed to are tried. Any other message: all of `certs`.
 */
export function addressedTo(message: Buffer, certs: Certificate[]): Certificate[] {
  try {
    const layer = classifyMessage(canonicalize(message));
    if (layer.kind !== 'cms' || (layer.contentType !== OID.envelopedData && layer.contentType !== OID.authEnvelopedData)) return certs;
    return envelopeRecipients(layer.der, certs);
  } catch {
    return certs; // unreadable: unwrapping reports it
  }
}

// ---------------------------------------------------------------------------
// Decrypt

export interface DecryptedMessage {
  message: Buffer;
  envelope: OpenedEnvelope;
}

/** Decrypts an application/pkcs7-mime enveloped or authEnveloped message. */
export function decryptMessage(input: Buffer, keys: DecryptionKey[]): DecryptedMessage {
  const entity = parseEntity(canonicalize(input));
  const layer = classify(entity);
  if (layer.kind !== 'cms' || (layer.contentType !== OID.envelopedData && layer.contentType !== OID.authEnvelopedData)) {
    throw new SmimeError('not an S/MIME encrypted message (no application/pkcs7-mime enveloped-data body)');
  }
  return decryptLayer(entity, layer.der, keys);
}

function decryptLayer(entity: Entity, der: Buffer, keys: DecryptionKey[]): DecryptedMessage {
  const opened = openEnvelope(der, keys);
  const { outer } = splitHeaders(entity.headers);
  return { message: restoreOuterHeaders(outer, opened.content), envelope: opened };
}

// ---------------------------------------------------------------------------
// Verify

export type Verdict = 'good-trusted' | 'good-untrusted' | 'bad-signature' | 'cert-unusable';

export interface TrustOptions {
  anchors: Certificate[];
  intermediates?: Certificate[];
  /** Validation time; default now. */
  at?: Date;
  /**
   * Vouches for a domain signer (RFC 3183) whose certificate names neither the From nor the
   * Sender address, e.g. the gateway certificate a store holds for the sender's domain.
   */
  isDomainSigner?: (signer: Certificate, senders: string[]) => boolean;
}

/** RFC 3183 3.1.1: a domain signature's certificate names domain-signing-authority@<domain>. */
function domainSignerFor(signer: Certificate, senders: string[]): string | undefined {
  return senders
    .map((a) => a.slice(a.lastIndexOf('@') + 1))
    .find((domain) => signer.hasEmail(`domain-signing-authority@${domain}`));
}

export interface SignatureReport {
  verdict: Verdict;
  /** One line: why this verdict. */
  reason: string;
  signer?: Certificate;
  /** Path to the anchor when trusted. */
  chain?: Certificate[];
  signingTime?: Date;
  digest: string;
  signatureAlgorithm: string;
  /** SMIMECapabilities DER, only when the signature verified. */
  capabilities?: Buffer;
}

export interface VerifiedMessage {
  /** The signed content with the outer header fields restored. */
  message: Buffer;
  /** The best verdict among the signers. */
  verdict: Verdict;
  reason: string;
  signers: SignatureReport[];
  /** Every certificate the SignedData carried (for harvesting into an untrusted store). */
  certificates: Certificate[];
  detached: boolean;
}

const RANK: Record<Verdict, number> = { 'good-trusted': 3, 'good-untrusted': 2, 'cert-unusable': 1, 'bad-signature': 0 };

/** Verifies a multipart/signed or opaque signed-data message on its exact received bytes. */
export function verifyMessage(input: Buffer, trust: TrustOptions): VerifiedMessage {
  const entity = parseEntity(canonicalize(input));
  const layer = classify(entity);
  if (layer.kind === 'multipart-signed') return verifyDetachedLayer(entity, layer.boundary, trust);
  if (layer.kind === 'cms' && layer.contentType === OID.signedData) return verifyOpaqueLayer(entity, layer.der, trust);
  throw new SmimeError('not an S/MIME signed message (neither multipart/signed nor signed-data)');
}

function verifyDetachedLayer(entity: Entity, boundary: string, trust: TrustOptions): VerifiedMessage {
  const { parts } = splitMultipart(entity.body, boundary);
  if (parts.length !== 2) throw new SmimeError(`multipart/signed must have 2 parts, found ${parts.length}`);
  const [signedPart, signaturePart] = parts;
  const sigEntity = parseEntity(signaturePart);
  const sigType = parseContentType(headerValue(sigEntity.headers, 'content-type')).mimeType;
  if (!PKCS7_SIGNATURE.has(sigType)) throw new SmimeError(`second part of multipart/signed is ${sigType}, not a PKCS#7 signature`);
  const der = decodeTransferEncoding(sigEntity.body, headerValue(sigEntity.headers, 'content-transfer-encoding'));
  const result = verifySignedData(der, signedPart);
  return judge(entity, result.signers, result.certificates, signedPart, trust, true);
}

function verifyOpaqueLayer(entity: Entity, der: Buffer, trust: TrustOptions): VerifiedMessage {
  const result = verifySignedData(der);
  if (!result.content) throw new SmimeError('signed-data without encapsulated content and no detached content');
  return judge(entity, result.signers, result.certificates, result.content, trust, false);
}

function judge(
  entity: Entity, signers: SignerResult[], certificates: Certificate[], content: Buffer, trust: TrustOptions, detached: boolean,
): VerifiedMessage {
  if (signers.length === 0) throw new SmimeError('signed-data has no signers');
  const { outer } = splitHeaders(entity.headers);
  const message = restoreOuterHeaders(outer, content);
  // The sender the reader will see: a From inside the signed content wins over the outer one.
  const shown = parseEntity(message).headers;
  const from = [...parseAddressList(headerValue(shown, 'from')), ...parseAddressList(headerValue(shown, 'sender'))];
  const reports = signers.map((s) => judgeSigner(s, certificates, trust, from));
  const best = reports.reduce((a, b) => (RANK[b.verdict] > RANK[a.verdict] ? b : a));
  return { message, verdict: best.verdict, reason: best.reason, signers: reports, certificates, detached };
}

function judgeSigner(s: SignerResult, certificates: Certificate[], trust: TrustOptions, from: string[]): SignatureReport {
  const base = { signer: s.signer, signingTime: s.signingTime, digest: s.digest, signatureAlgorithm: s.signatureAlgorithm };
  if (!s.ok || !s.signer) return { ...base, verdict: 'bad-signature', reason: s.error ?? 'signature does not verify' };
  const signer = s.signer;
  const good = { ...base, capabilities: s.capabilities };
  const path = validatePath(signer, {
    purpose: 'sign', anchors: trust.anchors, intermediates: [...certificates, ...(trust.intermediates ?? [])], at: trust.at,
  });
  if (!path.ok && path.code !== 'untrusted') return { ...good, verdict: 'cert-unusable', reason: path.reason };
  // RFC 8550 3: the From or Sender address must be one the certificate names, unless the
  // signature is a domain signature (RFC 3183) for the sender's domain.
  let kind = 'certificate';
  if (from.length > 0 && !from.some((a) => signer.hasEmail(a))) {
    const domain = domainSignerFor(signer, from);
    if (domain) kind = `domain signature for ${domain}`;
    else if (trust.isDomainSigner?.(signer, from)) kind = `domain signature for ${from.join(', ')}`;
    else {
      return {
        ...good, verdict: 'cert-unusable',
        reason: `signer certificate names ${signer.emailAddresses.join(', ') || 'no e-mail address'}, not the sender ${from.join(', ')}`,
      };
    }
  }
  if (!path.ok) return { ...good, verdict: 'good-untrusted', reason: `${path.reason} (${kind})` };
  return { ...good, verdict: 'good-trusted', reason: `good signature, trusted ${kind}`, chain: path.chain };
}

// ---------------------------------------------------------------------------
// Unwrap ("Autodeenvelope")

export interface UnwrapOptions {
  keys: DecryptionKey[];
  trust: TrustOptions;
  /** Most S/MIME layers undone before giving up; default 16. */
  maxDepth?: number;
  /** Largest input accepted, in octets; default 256 MiB. */
  maxSize?: number;
}

export type LayerResult =
  | { type: 'encrypted'; status: 'decrypted'; envelope: OpenedEnvelope }
  | { type: 'encrypted'; status: 'no-key' | 'failed'; reason: string }
  | { type: 'signed'; report: VerifiedMessage };

export interface UnwrappedMessage {
  /** The innermost message with outer header fields and one status header per layer. */
  message: Buffer;
  layers: LayerResult[];
}

export const DEFAULT_MAX_DEPTH = 16;
export const DEFAULT_MAX_SIZE = 256 * 1024 * 1024;

/**
 * Undoes nested S/MIME layers (signed inside encrypted inside signed ...) down to the plain
 * message, recording each layer's result. Stops at a layer it cannot open (no key), leaving
 * that layer in place. Incoming status headers are removed so only cstp's own remain.
 */
export function unwrapMessage(input: Buffer, opts: UnwrapOptions): UnwrappedMessage {
  const maxDepth = opts.maxDepth ?? DEFAULT_MAX_DEPTH;
  const maxSize = opts.maxSize ?? DEFAULT_MAX_SIZE;
  if (input.length > maxSize) throw new SmimeError(`message of ${input.length} octets exceeds the ${maxSize}-octet limit`);
  const layers: LayerResult[] = [];
  let current = canonicalize(input);
  for (;;) {
    const entity = parseEntity(current);
    const layer = classifyMessage(current, entity);
    decoded.delete(current); // the decoded layer lives no longer than this step needs it
    if (layer.kind === 'plain') break;
    if (layers.length >= maxDepth) throw new SmimeError(`S/MIME nesting deeper than ${maxDepth} layers`);
    if (layer.kind === 'multipart-signed') {
      const report = verifyDetachedLayer(entity, layer.boundary, opts.trust);
      layers.push({ type: 'signed', report });
      current = report.message;
    } else if (layer.contentType === OID.signedData) {
      const report = verifyOpaqueLayer(entity, layer.der, opts.trust);
      layers.push({ type: 'signed', report });
      current = report.message;
    } else if (layer.contentType === OID.envelopedData || layer.contentType === OID.authEnvelopedData) {
      const result = tryDecrypt(entity, layer.der, opts.keys);
      layers.push(result.layer);
      if (!result.message) break;
      current = result.message;
    } else {
      throw new SmimeError(`unsupported CMS content type ${layer.contentType}`);
    }
  }
  return { message: addStatusHeaders(current, layers), layers };
}

function tryDecrypt(entity: Entity, der: Buffer, keys: DecryptionKey[]): { layer: LayerResult; message?: Buffer } {
  try {
    const { message, envelope: opened } = decryptLayer(entity, der, keys);
    return { layer: { type: 'encrypted', status: 'decrypted', envelope: opened }, message };
  } catch (e) {
    if (!(e instanceof CmsError)) throw e;
    const noKey = e.name === 'NoMatchingRecipientError';
    return { layer: { type: 'encrypted', status: noKey ? 'no-key' : 'failed', reason: e.message } };
  }
}

/** A status header value, e.g. `layer=1; type=signed; verdict=good-trusted; signer="user@a.example"`. */
export function describeLayer(layer: LayerResult, index: number): string {
  const q = (s: string): string => `"${s.replace(/[\\"]/g, '\\$&').replace(/[\r\n]+/g, ' ')}"`;
  const parts = [`layer=${index + 1}`, `type=${layer.type}`];
  if (layer.type === 'signed') {
    const r = layer.report;
    const signer = r.signers.find((s) => s.verdict === r.verdict)?.signer;
    parts.push(`verdict=${r.verdict}`);
    if (signer) parts.push(`signer=${q(signer.emailAddresses[0] ?? signer.subject)}`);
    parts.push(`reason=${q(r.reason)}`);
  } else if (layer.status === 'decrypted') {
    const e = layer.envelope;
    parts.push('status=decrypted', `cipher=${e.cipher}`, `key=${e.keyEncryption}`);
    // CBC has no integrity of its own (EFAIL): say so unless a verified signature is inside.
    parts.push(`integrity=${e.authenticated ? 'authenticated' : 'none'}`);
  } else {
    parts.push(`status=${layer.status}`, `reason=${q(layer.reason)}`);
  }
  return parts.join('; ');
}

function addStatusHeaders(message: Buffer, layers: LayerResult[]): Buffer {
  const entity = parseEntity(message);
  const status = layers.map((l, i) => Buffer.from(`${STATUS_HEADER}: ${describeLayer(l, i)}\r\n`));
  const kept = withoutStatusHeaders(entity.headers).map((h) => h.raw);
  return Buffer.concat([...status, ...kept, CRLF, entity.body]);
}
