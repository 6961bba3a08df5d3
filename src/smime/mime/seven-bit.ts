/**
 * 7-bit safety for signed entities (RFC 8551 3.1.2 and 3.1.3): a relay that downgrades 8-bit
 * mail re-encodes it and so breaks a signature. Before signing, every part that is not already
 * 7-bit is re-encoded: text/* as quoted-printable, anything else as base64. Unchanged bytes are
 * never re-serialised: the result is the input with only the changed ranges spliced out, and an
 * entity that needs no change is returned as the very same Buffer.
 */
import { isAscii } from 'node:buffer';
import { base64Lines, decodeBase64Body } from './base64';
import { CRLF, is7bitSafe, offsetIn } from './bytes';
import { parseContentType, type ContentType } from './content-type';
import { parseLayout, type EntityLayout } from './entity';
import { MimeError } from './error';
import { endsWithLineBreak, headerValue } from './header';
import { splitMultipart } from './multipart';
import { decodeQuotedPrintable, quotedPrintableChunks } from './quoted-printable';
import { IDENTITY_ENCODINGS, transferEncodingName } from './transfer-encoding';

export interface SevenBitOptions {
  /** Deepest MIME nesting followed (default 32); deeper input is a MimeError, not a stack overflow. */
  maxDepth?: number;
}

export const DEFAULT_MAX_DEPTH = 32;

/**
 * The entity (header section + body, canonical CRLF) with every part 7-bit safe. Also relabels
 * a part declared 8bit/binary whose content is already 7-bit, since relays act on the label.
 * Left alone: multipart/signed and multipart/encrypted (re-encoding would break them) and
 * 8-bit octets in header fields (no lossless fix; see needs8bitHeaders). What cannot be fixed
 * losslessly is a MimeError: a base64 part holding 8-bit octets, 8-bit data under an unknown
 * transfer encoding, an 8-bit multipart whose boundary never occurs. (A caller can still sign
 * such a message opaquely: application/pkcs7-mime is base64 and so always 7-bit.)
 */
export function make7bit(entity: Buffer, options: SevenBitOptions = {}): Buffer {
  const result = rewriteEntity(entity, { depth: 0, maxDepth: options.maxDepth ?? DEFAULT_MAX_DEPTH, inDigest: false, top: true });
  return result.chunks ? Buffer.concat(result.chunks) : entity;
}

/** Whether any header section in the entity tree holds octets outside US-ASCII. */
export function needs8bitHeaders(entity: Buffer, options: SevenBitOptions = {}): boolean {
  return hasNonAsciiHeaders(entity, { depth: 0, maxDepth: options.maxDepth ?? DEFAULT_MAX_DEPTH, inDigest: false, top: true });
}

interface Walk {
  depth: number;
  maxDepth: number;
  /** Inside multipart/digest the default type is message/rfc822 (RFC 2046 5.1.5). */
  inDigest: boolean;
  /** Only the outermost entity may start with an mbox From_ line. */
  top: boolean;
}

/** What an entity is, as far as the walk is concerned. */
interface Described {
  layout: EntityLayout;
  contentType: ContentType;
  cte: string;
  kind: 'multipart' | 'message' | 'leaf';
}

function describe(buf: Buffer, walk: Walk): Described {
  if (walk.depth > walk.maxDepth) throw new MimeError(`MIME nesting deeper than ${walk.maxDepth} levels`);
  const layout = parseLayout(buf, { mboxFrom: walk.top });
  const declared = headerValue(layout.headers, 'content-type');
  const contentType = parseContentType(declared === undefined && walk.inDigest ? 'message/rfc822' : declared);
  const cte = transferEncodingName(headerValue(layout.headers, 'content-transfer-encoding'));
  // Composite types may only use identity encodings (RFC 2045 6.4); otherwise the body is opaque data.
  let kind: Described['kind'] = 'leaf';
  if (IDENTITY_ENCODINGS.has(cte)) {
    if (contentType.type === 'multipart' && contentType.params.boundary) kind = 'multipart';
    else if (contentType.mimeType === 'message/rfc822') kind = 'message';
  }
  return { layout, contentType, cte, kind };
}

function child(walk: Walk, inDigest: boolean): Walk {
  return { depth: walk.depth + 1, maxDepth: walk.maxDepth, inDigest, top: false };
}

function hasNonAsciiHeaders(buf: Buffer, walk: Walk): boolean {
  const d = describe(buf, walk);
  if (!d.layout.headers.every((h) => isAscii(h.raw))) return true;
  if (d.kind === 'message') return hasNonAsciiHeaders(d.layout.body, child(walk, false));
  if (d.kind !== 'multipart') return false;
  const inDigest = d.contentType.subtype === 'digest';
  return splitMultipart(d.layout.body, d.contentType.params.boundary).parts.some((part) => hasNonAsciiHeaders(part, child(walk, inDigest)));
}

/** A replacement for buf[start, end). */
interface Edit {
  start: number;
  end: number;
  chunks: Buffer[];
}

interface Rewritten {
  /** The new entity, or undefined when it stays byte-identical. */
  chunks: Buffer[] | undefined;
  /** Whether the entity (header section and body) is now 7-bit, so a parent may be labelled 7bit. */
  clean: boolean;
}

interface BodyRewrite {
  /** New body, when it changed. */
  body?: Buffer[];
  /** New Content-Transfer-Encoding label, when it changed. */
  cte?: string;
  clean: boolean;
}

function rewriteEntity(buf: Buffer, walk: Walk): Rewritten {
  const d = describe(buf, walk);
  const headersClean = d.layout.headers.every((h) => isAscii(h.raw));
  const result = d.kind === 'multipart' ? rewriteMultipart(d, walk) : d.kind === 'message' ? rewriteMessage(d, walk) : rewriteLeaf(d);
  const edits: Edit[] = [];
  if (result.cte) edits.push(...relabel(buf, d.layout, result.cte));
  if (result.body) {
    const start = offsetIn(buf, d.layout.body);
    edits.push({ start, end: start + d.layout.body.length, chunks: result.body });
  }
  return { chunks: edits.length ? splice(buf, edits) : undefined, clean: headersClean && result.clean };
}

/** After rewriting the content, an 8bit/binary label becomes 7bit if everything inside is 7-bit now. */
function relabelIfClean(cte: string, clean: boolean): string | undefined {
  return clean && (cte === '8bit' || cte === 'binary') ? '7bit' : undefined;
}

function rewriteMultipart(d: Described, walk: Walk): BodyRewrite {
  const body = d.layout.body;
  const { subtype, params } = d.contentType;
  // Their parts are covered by a signature or are ciphertext: any change would break them.
  if (subtype === 'signed' || subtype === 'encrypted') return { clean: is7bitSafe(body) };
  const split = splitMultipart(body, params.boundary);
  // Without a single delimiter everything is "preamble"; dropping it would lose the content.
  if (split.parts.length === 0) {
    if (is7bitSafe(body)) return { cte: relabelIfClean(d.cte, true), clean: true };
    throw new MimeError(`multipart/${subtype} body has no delimiter for its boundary and holds 8-bit data`);
  }
  const edits: Edit[] = [];
  let clean = true;
  for (const part of split.parts) {
    const r = rewriteEntity(part, child(walk, subtype === 'digest'));
    clean &&= r.clean;
    if (r.chunks) edits.push({ start: offsetIn(body, part), end: offsetIn(body, part) + part.length, chunks: r.chunks });
  }
  // Preamble and epilogue are invisible by definition (RFC 2046 5.1.1); 8-bit ones are dropped rather than left to break the signature.
  for (const filler of [split.preamble, split.epilogue]) {
    if (!is7bitSafe(filler)) edits.push({ start: offsetIn(body, filler), end: offsetIn(body, filler) + filler.length, chunks: [] });
  }
  return { body: edits.length ? splice(body, edits) : undefined, cte: relabelIfClean(d.cte, clean), clean };
}

function rewriteMessage(d: Described, walk: Walk): BodyRewrite {
  // RFC 2046 5.2.1: message/rfc822 may not be base64 or quoted-printable, so its inner parts are re-encoded instead.
  const inner = rewriteEntity(d.layout.body, child(walk, false));
  return { body: inner.chunks, cte: relabelIfClean(d.cte, inner.clean), clean: inner.clean };
}

function rewriteLeaf(d: Described): BodyRewrite {
  const body = d.layout.body;
  if (is7bitSafe(body)) return { cte: relabelIfClean(d.cte, true), clean: true };
  if (d.cte === 'base64') return { body: [...base64Lines([decodeBase64Body(body)])], clean: true };
  if (d.cte === 'quoted-printable') return { body: quotedPrintableChunks(decodeQuotedPrintable(body)), clean: true };
  if (!IDENTITY_ENCODINGS.has(d.cte)) throw new MimeError(`cannot make 8-bit data in Content-Transfer-Encoding ${d.cte.slice(0, 40)} 7-bit safe`);
  if (d.contentType.type === 'text') return { body: quotedPrintableChunks(body), cte: 'quoted-printable', clean: true };
  return { body: [...base64Lines([body])], cte: 'base64', clean: true };
}

/**
 * Edits that set Content-Transfer-Encoding: the first such field is replaced, any duplicates
 * (ambiguous anyway) removed; without one, the field is added at the end of the header section.
 */
function relabel(buf: Buffer, layout: EntityLayout, cte: string): Edit[] {
  const field = Buffer.from(`Content-Transfer-Encoding: ${cte}\r\n`, 'latin1');
  const existing = layout.headers.filter((h) => h.name.toLowerCase() === 'content-transfer-encoding');
  if (existing.length) {
    return existing.map((h, i) => ({ start: offsetIn(buf, h.raw), end: offsetIn(buf, h.raw) + h.raw.length, chunks: i === 0 ? [field] : [] }));
  }
  const last = layout.headers[layout.headers.length - 1];
  const chunks = [field];
  if (last && !endsWithLineBreak(last.raw)) chunks.unshift(CRLF);
  if (!layout.headers.length && !layout.separated) chunks.push(CRLF); // header-less entity: the body needs its empty line now
  return [{ start: layout.headerEnd, end: layout.headerEnd, chunks }];
}

/** `buf` with the (non-overlapping) edits applied, as chunks that are views of `buf` between the edits. */
function splice(buf: Buffer, edits: Edit[]): Buffer[] {
  edits.sort((a, b) => a.start - b.start || a.end - b.end);
  const out: Buffer[] = [];
  let cursor = 0;
  for (const edit of edits) {
    if (edit.start > cursor) out.push(buf.subarray(cursor, edit.start));
    for (const chunk of edit.chunks) out.push(chunk);
    cursor = edit.end;
  }
  if (cursor < buf.length) out.push(buf.subarray(cursor));
  return out;
}
