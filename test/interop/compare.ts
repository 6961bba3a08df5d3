/**
 * Content comparisons for the interop tests.
 *
 * A signer must make the signed entity 7-bit safe (8bit bodies and long lines get re-encoded as
 * quoted-printable or base64), so "the same content" cannot always mean "the same bytes". We
 * compare the decoded MIME tree instead: media types, charsets, dispositions and the decoded body
 * bytes of every leaf. Where bytes must be preserved exactly (a consumer of someone else's
 * message), the tests additionally compare the raw body.
 */
import { strict as assert } from 'node:assert';
import {
  Header,
  contentTypeOf,
  headerValue,
  headerValues,
  multipartParts,
  parseParams,
  splitMessage,
} from './mime-der';
import type { EncryptOptions, SignOptions } from './cstp';
import { TestMessage } from './messages';

export interface MimeNode {
  type: string;
  charset?: string;
  disposition?: string;
  filename?: string;
  /** Decoded body bytes as a latin1 string: byte-exact, and readable in assertion diffs. */
  body?: string;
  parts?: MimeNode[];
}

/** Decode quoted-printable (RFC 2045 6.7): soft breaks removed, transport-added trailing blanks dropped. */
export function decodeQuotedPrintable(text: Buffer): Buffer {
  const s = text
    .toString('latin1')
    .replace(/[ \t]+(?=\r?\n|$)/g, '')
    .replace(/=\r?\n/g, '');
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const hex = s.slice(i + 1, i + 3);
    if (s[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      out.push(parseInt(hex, 16));
      i += 2;
    } else {
      out.push(s.charCodeAt(i));
    }
  }
  return Buffer.from(out);
}

export function decodeTransferEncoding(headers: Header[], body: Buffer): Buffer {
  const cte = (headerValue(headers, 'Content-Transfer-Encoding') ?? '7bit').trim().toLowerCase();
  if (cte === 'base64') return Buffer.from(body.toString('latin1').replace(/\s+/g, ''), 'base64');
  if (cte === 'quoted-printable') return decodeQuotedPrintable(body);
  return body;
}

/** The decoded MIME tree of an entity (or a complete message: non-Content headers are ignored). */
export function mimeTree(entity: Buffer): MimeNode {
  const { headers, body } = splitMessage(entity);
  const ct = contentTypeOf(headers);
  const node: MimeNode = { type: ct.type };
  if (ct.type.startsWith('text/')) node.charset = (ct.params.charset ?? 'us-ascii').toLowerCase();
  const disp = headerValue(headers, 'Content-Disposition');
  if (disp) {
    const d = parseParams(disp);
    node.disposition = d.type;
    if (d.params.filename) node.filename = d.params.filename;
  }
  if (ct.type.startsWith('multipart/')) {
    node.parts = multipartParts(body, ct.params.boundary ?? '').map(mimeTree);
    return node;
  }
  const decoded = decodeTransferEncoding(headers, body);
  node.body = decoded.toString('latin1');
  return node;
}

/** Assert that two entities carry the same content once transfer encodings are decoded. */
export function assertSameContent(actual: Buffer, expected: Buffer, what: string): void {
  assert.deepStrictEqual(mimeTree(actual), mimeTree(expected), `${what}: decoded MIME content differs`);
}

const OUTER_NAMES = ['From', 'To', 'Subject', 'Date', 'Message-ID'];

/** The outer RFC 5322 headers of `msg` are present exactly once each, with the original values. */
export function assertOuterHeaders(output: Buffer, msg: TestMessage, what: string): void {
  const { headers } = splitMessage(output);
  for (const name of OUTER_NAMES) {
    const expected = msg.outer.find(([n]) => n === name)?.[1];
    const got = headerValues(headers, name).map((v) => v.replace(/\s+/g, ' '));
    assert.deepStrictEqual(got, [expected], `${what}: header ${name}`);
  }
}

/** Output of cstp must be canonical: every LF is part of a CRLF. */
export function assertCrlf(output: Buffer, what: string): void {
  const s = output.toString('latin1');
  const bare = s.search(/(^|[^\r])\n/);
  assert.equal(bare, -1, `${what}: bare LF at offset ${bare}: ${JSON.stringify(s.slice(Math.max(0, bare - 40), bare + 2))}`);
}

/**
 * A complete message restored by decrypt / verify --out / unwrap: the outer headers are back,
 * the content is the original's, and it is CRLF. With exactBody the body bytes must also be
 * untouched (the consumer has no reason to re-encode what it received).
 */
export function assertRestored(output: Buffer, msg: TestMessage, what: string, exactBody = true): void {
  assert.ok(output.length > 0, `${what}: empty output`);
  assertCrlf(output, what);
  assertOuterHeaders(output, msg, what);
  assertSameContent(output, msg.entity, what);
  if (exactBody) {
    assert.ok(splitMessage(output).body.equals(splitMessage(msg.entity).body), `${what}: body bytes differ from the original`);
  }
}

/** Headers that cstp added to a message (not in the original message, not content headers). */
export function addedHeaders(output: Buffer, msg: TestMessage): Header[] {
  const original = new Set(splitMessage(msg.full).headers.map((h) => h.name.toLowerCase()));
  return splitMessage(output).headers.filter(
    (h) => !original.has(h.name.toLowerCase()) && !/^content-/i.test(h.name) && h.name.toLowerCase() !== 'mime-version',
  );
}

export type LayerKind = 'signed' | 'encrypted';

/**
 * unwrap must report one status header per S/MIME layer. The header name and wording are the
 * CLI's; we only require one added header per layer, mentioning what the layer was.
 */
export function assertLayerHeaders(output: Buffer, msg: TestMessage, layers: LayerKind[], what: string): void {
  const added = addedHeaders(output, msg);
  const text = added.map((h) => `${h.name}: ${h.value}`);
  assert.ok(added.length >= layers.length, `${what}: expected ${layers.length} status headers, got ${JSON.stringify(text)}`);
  const pattern: Record<LayerKind, RegExp> = { signed: /sign|verif/i, encrypted: /encrypt|decrypt|envelop/i };
  for (const kind of layers) {
    assert.ok(text.some((t) => pattern[kind].test(t)), `${what}: no status header for the ${kind} layer in ${JSON.stringify(text)}`);
  }
  const signedLayers = layers.filter((k) => k === 'signed').length;
  const goodSigned = text.filter((t) => pattern.signed.test(t) && /good|valid|trusted|ok/i.test(t) && !/untrusted|bad|fail/i.test(t));
  assert.ok(goodSigned.length >= signedLayers, `${what}: not every signed layer reported good+trusted: ${JSON.stringify(text)}`);
}

/**
 * RFC 8551 3.1.1: inside multipart/signed the entity must survive any transport unchanged, so
 * cstp has to make it 7-bit: no octet above 127, no NUL, no bare CR or LF, no line over 998.
 */
export function assert7bitSafe(entity: Buffer, what: string): void {
  const s = entity.toString('latin1');
  const high = s.search(/[\x80-\xff\x00]/);
  assert.equal(high, -1, `${what}: 8-bit or NUL octet at ${high}: ${JSON.stringify(s.slice(Math.max(0, high - 30), high + 5))}`);
  assert.equal(s.search(/\r(?!\n)|(^|[^\r])\n/), -1, `${what}: bare CR or LF`);
  const long = s.split('\r\n').findIndex((l) => l.length > 998);
  assert.equal(long, -1, `${what}: line ${long + 1} is over 998 octets`);
}

/** The message is S/MIME of the expected kind (multipart/signed or pkcs7-mime smime-type). */
export function assertSmimeKind(msg: Buffer, kind: 'multipart/signed' | 'signed-data' | 'enveloped-data' | 'authEnveloped-data', what: string): void {
  const ct = contentTypeOf(splitMessage(msg).headers);
  if (kind === 'multipart/signed') {
    assert.equal(ct.type, 'multipart/signed', `${what}: Content-Type`);
    assert.equal(ct.params.protocol?.toLowerCase(), 'application/pkcs7-signature', `${what}: protocol parameter`);
    return;
  }
  assert.match(ct.type, /^application\/(x-)?pkcs7-mime$/, `${what}: Content-Type`);
  assert.equal(ct.params['smime-type']?.toLowerCase(), kind.toLowerCase(), `${what}: smime-type`);
}

/** An encrypted message must not carry the body in clear (only the outer headers stay visible). */
export function assertNoPlaintext(encrypted: Buffer, msg: TestMessage, what: string): void {
  const body = splitMessage(msg.entity).body;
  if (body.length < 16) return; // too short to be a meaningful probe
  const probe = body.subarray(0, Math.min(64, body.length));
  assert.ok(!encrypted.includes(probe), `${what}: plaintext body visible in the encrypted message`);
}

/** Labels in `openssl cms -cmsout -print` output whose next line names the algorithm. */
export type CmsAlgorithmField = 'signatureAlgorithm' | 'digestAlgorithm' | 'keyEncryptionAlgorithm' | 'contentEncryptionAlgorithm';

/** The algorithms openssl reads in `field` (e.g. ["rsassaPss"]), from `openssl cms -cmsout -print` output. */
export function cmsAlgorithms(printed: string, field: CmsAlgorithmField): string[] {
  const re = new RegExp(`\\b${field}:\\s*\\n\\s*algorithm: (\\S+)`, 'g');
  return [...printed.matchAll(re)].map((m) => m[1]);
}

/** Assert that the options given to cstp really reached the CMS (not only that peers can read it). */
export function assertCmsAlgorithm(printed: string, field: CmsAlgorithmField, expected: RegExp, what: string): void {
  const found = cmsAlgorithms(printed, field);
  assert.ok(found.length > 0, `${what}: no ${field} in the CMS`);
  for (const alg of found) assert.match(alg, expected, `${what}: ${field}`);
}

/** cstp's --digest and --pss are in the SignerInfo (default SHA-256). */
export function assertSignOptionsApplied(printed: string, o: SignOptions, what: string): void {
  const digest = o.digest ?? (o.signer === 'user-ed25519' ? 'sha512' : 'sha256');
  assertCmsAlgorithm(printed, 'digestAlgorithm', new RegExp(`^${digest}$`), what);
  if (o.pss) assertCmsAlgorithm(printed, 'signatureAlgorithm', /^rsassaPss$/, what);
}

/** cstp's --cipher and --oaep are in the envelope; EC recipients get ECDH key agreement. */
export function assertEncryptOptionsApplied(printed: string, recipients: string[], o: EncryptOptions, what: string): void {
  assertCmsAlgorithm(printed, 'contentEncryptionAlgorithm', new RegExp(`^${o.cipher ?? 'aes-256-cbc'}$`), what);
  const kinds = new Set(recipients.map((r) => (/-ec$/.test(r) ? 'ec' : 'rsa')));
  const allowed = [
    ...(kinds.has('rsa') ? [o.oaep ? 'rsaesOaep' : 'rsaEncryption'] : []),
    ...(kinds.has('ec') ? ['dhSinglePass-(stdDH|cofactorDH)-sha\\d+kdf-scheme'] : []),
  ];
  assertCmsAlgorithm(printed, 'keyEncryptionAlgorithm', new RegExp(`^(${allowed.join('|')})$`), what);
}
