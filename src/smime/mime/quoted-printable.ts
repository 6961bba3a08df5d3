/**
 * Quoted-printable (RFC 2045 section 6.7) on Buffers. The encoder treats CRLF as a hard line
 * break and encodes everything else that is not safe on a 7-bit, line-length-limited transport,
 * plus two things some transports mangle: a line starting "From " (mbox) and a line starting
 * with "." (SMTP), as RFC 2049 section 3 and RFC 3676 suggest.
 */
import { CR, CRLF, HTAB, LF, SP, hexByte } from './bytes';

const EQUALS = 0x3d;
const DOT = 0x2e;
const MAX_ENCODED_LINE = 76;
const PIECE = 64 * 1024;
const HEX = Buffer.from('0123456789ABCDEF', 'latin1');

/** 1: may stand for itself (printable except "="); 2: likewise, but not at the end of a line (SP, HTAB); 0: escaped. */
const LITERAL = (() => {
  const table = new Uint8Array(256);
  for (let c = 33; c <= 126; c++) table[c] = 1;
  table[EQUALS] = 0;
  table[SP] = 2;
  table[HTAB] = 2;
  return table;
})();

/** Input is taken in segments whose worst-case encoding (3 octets each, plus soft breaks) fits the room checked. */
const SEGMENT = 4096;
const SEGMENT_ROOM = SEGMENT * 4 + 8;

/**
 * Encodes `data` as quoted-printable and returns the encoding as chunks of about 64 KB. Lines
 * are found natively; inside a line a printable octet that is neither first nor near the end of
 * an output line takes the short path. This is the hot loop when a large 8-bit text is signed.
 */
export function quotedPrintableChunks(data: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  const n = data.length;
  let out = Buffer.allocUnsafe(PIECE);
  let w = 0;
  let lineStart = 0;
  while (lineStart < n) {
    const crlf = data.indexOf(CRLF, lineStart);
    const lineEnd = crlf === -1 ? n : crlf;
    let column = 0;
    for (let segment = lineStart; segment < lineEnd; segment += SEGMENT) {
      if (w > PIECE - SEGMENT_ROOM) {
        chunks.push(out.subarray(0, w));
        out = Buffer.allocUnsafe(PIECE);
        w = 0;
      }
      const segmentEnd = Math.min(lineEnd, segment + SEGMENT);
      for (let i = segment; i < segmentEnd; i++) {
        const c = data[i];
        const kind = LITERAL[c];
        const last = i + 1 === lineEnd;
        if (kind !== 0 && column > 0 && column < MAX_ENCODED_LINE - 1 && (kind === 1 || !last)) {
          out[w++] = c;
          column++;
          continue;
        }
        // Whitespace before a line end would be stripped in transit (RFC 2045 6.7 rule 3).
        let escape = kind === 0 || (kind === 2 && last);
        if (column === 0 && riskyLineStart(data, i)) escape = true;
        if (column + (escape ? 3 : 1) > (last ? MAX_ENCODED_LINE : MAX_ENCODED_LINE - 1)) {
          out[w++] = EQUALS;
          out[w++] = CR;
          out[w++] = LF;
          column = 0;
          if (riskyLineStart(data, i)) escape = true;
        }
        if (escape) {
          out[w++] = EQUALS;
          out[w++] = HEX[c >> 4];
          out[w++] = HEX[c & 15];
          column += 3;
        } else {
          out[w++] = c;
          column++;
        }
      }
    }
    if (crlf === -1) break;
    if (w > PIECE - 2) {
      chunks.push(out.subarray(0, w));
      out = Buffer.allocUnsafe(PIECE);
      w = 0;
    }
    out[w++] = CR;
    out[w++] = LF;
    lineStart = crlf + 2;
  }
  if (w) chunks.push(out.subarray(0, w));
  return chunks;
}

export function encodeQuotedPrintable(data: Buffer): Buffer {
  return Buffer.concat(quotedPrintableChunks(data));
}

/** A line beginning "From " or "." is at risk from mbox writers and naive SMTP relays. */
function riskyLineStart(data: Buffer, i: number): boolean {
  const c = data[i];
  return c === DOT || (c === 0x46 && i + 4 < data.length && data[i + 1] === 0x72 && data[i + 2] === 0x6f && data[i + 3] === 0x6d && data[i + 4] === SP);
}

/**
 * Decodes quoted-printable liberally, as RFC 2045 6.7 recommends: "=XX" in either case, soft
 * breaks "=" CRLF (whitespace allowed before the CRLF), trailing whitespace on a line removed
 * (it was added in transit), and any "=" that starts neither is kept as a literal.
 */
export function decodeQuotedPrintable(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(body.length);
  const n = body.length;
  let w = 0;
  let i = 0;
  while (i < n) {
    const c = body[i];
    if (c === EQUALS) {
      const value = i + 2 < n ? hexByte(body[i + 1], body[i + 2]) : -1;
      if (value >= 0) {
        out[w++] = value;
        i += 3;
        continue;
      }
      const afterBreak = softBreakEnd(body, i + 1);
      if (afterBreak >= 0) {
        i = afterBreak;
        continue;
      }
      out[w++] = c;
      i++;
    } else if (c === SP || c === HTAB) {
      let j = i;
      while (j < n && (body[j] === SP || body[j] === HTAB)) j++;
      if (!(j === n || body[j] === CR || body[j] === LF)) while (i < j) out[w++] = body[i++];
      i = j;
    } else {
      out[w++] = c;
      i++;
    }
  }
  return out.subarray(0, w);
}

/** After "=" at i-1: the offset following a soft line break (optional whitespace, then CRLF, LF or the end), or -1. */
function softBreakEnd(body: Buffer, i: number): number {
  let j = i;
  while (j < body.length && (body[j] === SP || body[j] === HTAB)) j++;
  if (j === body.length) return j;
  if (body[j] === CR && body[j + 1] === LF) return j + 2;
  if (body[j] === LF) return j + 1;
  return -1;
}
