/**
 * S/MIME wrapping of a spooled message (src/smime/stream/spool.ts) without ever holding it: the header section
 * is parsed from memory, the body is read from disk. One read pass computes the signing digest and checks that
 * the entity is 7-bit safe; every output is then a generator that reads the body from disk again, through the
 * signature frame, the content cipher and base64, so a delivery (and each retry of it) costs a few 64 KB pieces
 * of memory whatever the message size. The bytes are those of the in-memory functions of src/smime/message.ts
 * (same structure, same fields), except for the random parts (boundary, key, IV, signing time).
 *
 * What is not streamed (the caller falls back to the in-memory engine): a message whose top level is S/MIME
 * already, a header section over 1 MiB, and signing content that first has to be made 7-bit safe.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { isAscii } from 'node:buffer';
import type { Certificate } from '../../pki/certificate';
import type { DigestName } from '../cms/digest';
import type { EnvelopeOptions } from '../cms/enveloped-data';
import { signingDigest, type SignerCredentials, type SignOptions } from '../cms/signed-data';
import {
  checkRecipients, claimsSmime, encryptEntity, multipartSignedFrame, outerHeaderChunks, requireUsable, withoutStatusHeaders,
} from '../message';
import { splitHeaders, type HeaderField } from '../mime';
import { parseLayout } from '../mime/entity';
import type { SpooledMessage } from './spool';

const CRLF = Buffer.from('\r\n');
const LF = 0x0a;
/** RFC 5322 2.1.1: 998 octets of content, then CR, before each LF. */
const MAX_LINE_BEFORE_LF = 999;
const DIGEST_PIECE = 1024 * 1024;

/** A spooled message split into its parsed header section and the body's place in the file. */
export interface SpooledEntity {
  spool: SpooledMessage;
  headers: HeaderField[];
  /** Header fields that stay outside a wrapping. */
  outer: HeaderField[];
  /** The content header fields (or the explicit RFC 2045 default) and the empty line: the protected entity's head. */
  innerHead: Buffer;
  /** Offset of the body in the message. */
  bodyStart: number;
}

/**
 * The spooled message's header section, or undefined when it cannot be streamed: a header section the parser
 * refuses (over 1 MiB, too many fields), or a top level that is S/MIME already (decrypting and verifying run in
 * memory).
 */
export function spooledEntity(spool: SpooledMessage): SpooledEntity | undefined {
  let layout: ReturnType<typeof parseLayout>;
  try {
    layout = parseLayout(spool.head);
  } catch {
    return undefined;
  }
  if (claimsSmime(layout.headers)) return undefined;
  const { outer, content } = splitHeaders(layout.headers);
  const head = content.length ? content.map((h) => h.raw) : [Buffer.from('Content-Type: text/plain; charset=us-ascii\r\n')];
  return {
    spool,
    headers: layout.headers,
    outer,
    innerHead: Buffer.concat([...head, CRLF]),
    bodyStart: layout.body.byteOffset - spool.head.byteOffset,
  };
}

export interface EntityDigests {
  /** Digest of the protected entity (innerHead + body) per algorithm asked for. */
  digests: Map<DigestName, Buffer>;
  /** RFC 2045 7bit data throughout: can be signed in multipart/signed as it is. */
  sevenBit: boolean;
}

/** One asynchronous read of the body (1 MiB pieces, the event loop keeps turning): digests and 7-bit check. */
export async function digestEntity(e: SpooledEntity, algorithms: Iterable<DigestName>): Promise<EntityDigests> {
  const hashes = [...new Set(algorithms)].map((name) => ({ name, hash: createHash(name) }));
  for (const { hash } of hashes) hash.update(e.innerHead);
  let sevenBit = isAscii(e.innerHead) && e.innerHead.indexOf(0) === -1;
  let line = 0;
  const { head, path, bodyLength } = e.spool;
  const pieces: AsyncIterable<Buffer> = (async function* () {
    if (e.bodyStart < head.length) yield head.subarray(e.bodyStart);
    if (!path || bodyLength === 0) return;
    // One buffer for the whole pass: each piece is hashed and checked before the next is read.
    const file = await open(path, 'r');
    try {
      const buffer = Buffer.allocUnsafe(Math.min(DIGEST_PIECE, bodyLength));
      for (let pos = 0; pos < bodyLength; ) {
        const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, bodyLength - pos), pos);
        if (bytesRead === 0) throw new Error(`spool file ${path} is shorter than ${bodyLength} octets`);
        pos += bytesRead;
        yield buffer.subarray(0, bytesRead);
      }
    } finally {
      await file.close();
    }
  })();
  {
    for await (const chunk of pieces) {
      for (const { hash } of hashes) hash.update(chunk);
      if (!sevenBit) continue;
      if (!isAscii(chunk) || chunk.indexOf(0) !== -1) {
        sevenBit = false;
        continue;
      }
      let pos = 0;
      for (;;) {
        const lf = chunk.indexOf(LF, pos);
        line += (lf === -1 ? chunk.length : lf) - pos;
        if (line > MAX_LINE_BEFORE_LF) {
          sevenBit = false;
          break;
        }
        if (lf === -1) break;
        line = 0;
        pos = lf + 1;
      }
    }
  }
  // A last line without a line end may hold 998 octets of content.
  if (line > MAX_LINE_BEFORE_LF - 1) sevenBit = false;
  return { digests: new Map(hashes.map(({ name, hash }) => [name, hash.digest()])), sevenBit };
}

/** A message made from a spooled one: call chunks() once per delivery attempt; it reads the spool again. */
export interface StreamedMessage {
  chunks(): Iterable<Buffer>;
  /** Octets chunks() yields, when known without producing them. */
  length?: number;
}

/** The body from disk; `reuse` for a consumer done with each piece before the next (the content cipher). */
function body(e: SpooledEntity, reuse = false): Iterable<Buffer> {
  return e.spool.read(e.bodyStart, e.spool.length, reuse);
}

function bodyLength(e: SpooledEntity): number {
  return e.spool.length - e.bodyStart;
}

/** The multipart/signed entity: content header fields, and its body as a generator with its length. */
function signedEntity(e: SpooledEntity, digest: Buffer, signer: SignerCredentials, opts: SignOptions, reuse = false) {
  const frame = multipartSignedFrame(digest, signer, opts);
  const fixed = frame.head.length + e.innerHead.length + frame.tail.reduce((n, b) => n + b.length, 0);
  return {
    contentHeaders: frame.contentHeaders,
    length: fixed + bodyLength(e),
    *parts(): Generator<Buffer> {
      yield frame.head;
      yield e.innerHead;
      yield* body(e, reuse);
      yield* frame.tail;
    },
  };
}

/** The digest this signer signs with (digestEntity must have computed it). */
export function digestFor(signer: SignerCredentials, opts: SignOptions = {}): DigestName {
  return signingDigest(signer, opts);
}

function requireDigest(d: EntityDigests, signer: SignerCredentials, opts: SignOptions): Buffer {
  if (!d.sevenBit) throw new Error('the content is not 7-bit safe: sign it in memory (make7bit) instead');
  const digest = d.digests.get(signingDigest(signer, opts));
  if (!digest) throw new Error(`no ${signingDigest(signer, opts)} digest of the content was computed`);
  return digest;
}

/** As signMessage() (detached, multipart/signed). The signature is made now. */
export function signSpooled(e: SpooledEntity, d: EntityDigests, signer: SignerCredentials, opts: SignOptions = {}): StreamedMessage {
  requireUsable(signer.cert, 'sign');
  const signed = signedEntity(e, requireDigest(d, signer, opts), signer, opts);
  const head = [...outerHeaderChunks(e.outer, signed.contentHeaders)];
  return {
    length: head.reduce((n, b) => n + b.length, 0) + signed.length,
    *chunks() {
      yield* head;
      yield* signed.parts();
    },
  };
}

/** As signAndEncryptMessage() (detached signature inside). The signature is made now; each chunks() call encrypts anew. */
export function signAndEncryptSpooled(
  e: SpooledEntity, d: EntityDigests, signer: SignerCredentials, recipients: Certificate[], opts: SignOptions & EnvelopeOptions = {},
): StreamedMessage {
  requireUsable(signer.cert, 'sign');
  checkRecipients(recipients);
  // The envelope encrypts each piece before it asks for the next: the body can be read into one buffer.
  const signed = signedEntity(e, requireDigest(d, signer, opts), signer, opts, true);
  const head = Buffer.from(`${signed.contentHeaders.join('\r\n')}\r\n\r\n`);
  const inner = function* (): Generator<Buffer> {
    yield head;
    yield* signed.parts();
  };
  // Fail now (unusable certificate, bad options) rather than at the first delivery.
  encryptEntity(e.outer, inner(), head.length + signed.length, recipients, opts);
  return { chunks: () => encryptEntity(e.outer, inner(), head.length + signed.length, recipients, opts) };
}

/** As encryptMessage(). */
export function encryptSpooled(e: SpooledEntity, recipients: Certificate[], opts: EnvelopeOptions = {}): StreamedMessage {
  checkRecipients(recipients);
  const inner = function* (): Generator<Buffer> {
    yield e.innerHead;
    yield* body(e, true);
  };
  const length = e.innerHead.length + bodyLength(e);
  encryptEntity(e.outer, inner(), length, recipients, opts);
  return { chunks: () => encryptEntity(e.outer, inner(), length, recipients, opts) };
}

/** As stripStatusHeaders(): the message as it came, without any X-Cstp-Security field. */
export function unalteredSpooled(e: SpooledEntity): StreamedMessage {
  const kept = withoutStatusHeaders(e.headers);
  if (kept.length === e.headers.length) return { length: e.spool.length, chunks: () => e.spool.read() };
  const head = Buffer.concat([...kept.map((h) => h.raw), CRLF]);
  return {
    length: head.length + bodyLength(e),
    *chunks() {
      yield head;
      yield* body(e);
    },
  };
}
