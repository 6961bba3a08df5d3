/**
 * Base64 content transfer encoding (RFC 2045 section 6.8) on Buffers: a streaming encoder with
 * 76-character lines and a strict-alphabet, whitespace-tolerant decoder.
 */
import { CR, LF } from './bytes';
import { MimeError } from './error';

const LINE_BYTES = 57; // 57 octets encode to exactly one 76-character line
const LINE_CHARS = 76;
const LINE_OUT = LINE_CHARS + 2;
const LINES_PER_PIECE = 840; // pieces of 65,520 octets
const PIECE_IN = LINE_BYTES * LINES_PER_PIECE;

/**
 * Encodes a stream of chunks as base64 lines of 76 characters, each ending in CRLF (the last,
 * shorter one too). Input is consumed in whole lines; the partial line left over from one chunk
 * is carried into the next. Output comes in pieces of about 64 KB, however small the chunks.
 */
export function* base64Lines(chunks: Iterable<Buffer>): Generator<Buffer> {
  const out = new PieceWriter();
  let carry = Buffer.alloc(0);
  for (const chunk of chunks) {
    let data = chunk;
    if (carry.length) {
      const need = LINE_BYTES - carry.length;
      if (data.length < need) {
        carry = Buffer.concat([carry, data]);
        continue;
      }
      yield* out.encode(Buffer.concat([carry, data.subarray(0, need)]));
      data = data.subarray(need);
    }
    const whole = data.length - (data.length % LINE_BYTES);
    for (let i = 0; i < whole; i += PIECE_IN) yield* out.encode(data.subarray(i, Math.min(whole, i + PIECE_IN)));
    carry = Buffer.from(data.subarray(whole)); // copied: the caller may reuse its chunk after we move on
  }
  if (carry.length) yield* out.encode(carry);
  yield* out.flush();
}

/**
 * Collects encoded lines into ~64 KB buffers; a buffer is never written again once yielded.
 * Only the first buffer is sized to the need at hand (at least 64 lines), so a small signature
 * does not cost a 64 KB allocation while a stream of tiny chunks still gives full pieces.
 */
class PieceWriter {
  private buf = Buffer.alloc(0);
  private used = 0;
  private started = false;

  /** Encodes at most PIECE_IN octets (whole lines, except for the very last call). */
  *encode(data: Buffer): Generator<Buffer> {
    const lines = Math.ceil(data.length / LINE_BYTES);
    if (this.used + lines * LINE_OUT > this.buf.length) {
      yield* this.flush();
      const pieceLines = this.started ? LINES_PER_PIECE : Math.min(LINES_PER_PIECE, Math.max(lines, 64));
      this.buf = Buffer.allocUnsafe(pieceLines * LINE_OUT);
      this.started = true;
    }
    const chars = this.buf.write(data.toString('base64'), this.used, 'latin1');
    // Spread the lines out from the last one backwards, so no line is overwritten before it moves.
    for (let line = lines - 1; line >= 0; line--) {
      const from = this.used + line * LINE_CHARS;
      const to = this.used + line * LINE_OUT;
      const length = Math.min(LINE_CHARS, chars - line * LINE_CHARS);
      this.buf.copyWithin(to, from, from + length);
      this.buf[to + length] = CR;
      this.buf[to + length + 1] = LF;
    }
    this.used += chars + lines * 2;
  }

  *flush(): Generator<Buffer> {
    if (this.used === 0) return;
    yield this.buf.subarray(0, this.used);
    this.buf = Buffer.alloc(0);
    this.used = 0;
  }
}

/**
 * What each octet counts for in a base64 body: 1 for an alphabet character, 0 for whitespace
 * (skipped), negative for padding and for anything else. Adding the entry up with a single sign
 * test keeps the validating loop branch-light.
 */
const SYMBOL = 1;
const PAD = -1;
const BAD = -2;
const KIND = (() => {
  const table = new Int8Array(256).fill(BAD);
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < chars.length; i++) table[chars.charCodeAt(i)] = SYMBOL;
  table[0x3d] = PAD;
  for (const ws of [0x20, 0x09, 0x0d, 0x0a, 0x0b, 0x0c]) table[ws] = 0;
  return table;
})();

/** Input octets handed to the native decoder at a time; blocks are cut after a whole 4-character group. */
const DECODE_BLOCK = 256 * 1024;

/**
 * Decodes a base64 body. Whitespace and line breaks anywhere are ignored; missing final padding
 * is accepted. Any other character, or data after the padding, is a MimeError: silently
 * skipping it (as Buffer.from(s, 'base64') does) would hide corruption. The JS loops only
 * validate and count; decoding is native, block by block (each cut after a whole 4-character
 * group), and the native decoder skips the whitespace itself, so nothing is copied twice.
 */
export function decodeBase64Body(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil(body.length / 4) * 3);
  const n = body.length;
  let written = 0;
  let blockStart = 0;
  let symbols = 0;
  let i = 0;
  while (i < n) {
    const end = Math.min(n, i + DECODE_BLOCK);
    for (; i < end; i++) {
      const kind = KIND[body[i]];
      if (kind < 0) break;
      symbols += kind;
    }
    if (i < end) break; // padding or an invalid character: the tail below sorts it out
    for (; (symbols & 3) !== 0 && i < n; i++) {
      const kind = KIND[body[i]];
      if (kind < 0) break;
      symbols += kind;
    }
    if ((symbols & 3) !== 0) break;
    written += out.write(body.toString('latin1', blockStart, i), written, 'base64');
    blockStart = i;
  }
  let padding = 0;
  for (; i < n; i++) {
    const kind = KIND[body[i]];
    if (kind === PAD) padding++;
    else if (kind === BAD) throw new MimeError(`invalid character 0x${body[i].toString(16).padStart(2, '0')} in base64 at offset ${i}`);
    else if (kind === SYMBOL) throw new MimeError(`base64 data after padding at offset ${i}`);
  }
  // Padding is only checked where it matters: a lone final character cannot encode any octet.
  if (symbols % 4 === 1 || padding > 2) throw new MimeError('base64 data is truncated or wrongly padded');
  written += out.write(body.toString('latin1', blockStart, n), written, 'base64');
  return out.subarray(0, written);
}
