/**
 * RFC 2047 encoded words ("=?charset?B|Q?text?="), decoded for display, e.g. a Subject in a
 * report. Adjacent encoded words are joined without the whitespace between them (RFC 2047 6.2),
 * and their octets are decoded together when they share a charset, since a character may be
 * split across words. A word in an unknown charset is left as it was.
 */
import { hexByte } from './bytes';
import { decodeCharset } from './charset';

const ENCODED_WORD = /=\?([^?\s*]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?\s]*)\?=/g;

interface Run {
  charset: string;
  bytes: Buffer[];
  raw: string;
  /** The whitespace that separated this run from an adjacent encoded word before it. */
  gap: string;
}

export function encodedWordDecode(value: string): string {
  if (!value.includes('=?')) return value;
  let out = '';
  let last = 0;
  let run: Run | undefined;
  let previousFailed = false;
  const flush = (r: Run): void => {
    const text = decodeCharset(Buffer.concat(r.bytes), r.charset);
    // The gap between two words only disappears when both were decoded.
    out += text === undefined ? r.gap + r.raw : (previousFailed ? r.gap : '') + text;
    previousFailed = text === undefined;
  };
  for (const m of value.matchAll(ENCODED_WORD)) {
    const between = value.slice(last, m.index);
    const adjacent = run !== undefined && /^[ \t\r\n]*$/.test(between);
    const charset = m[1].toLowerCase();
    const bytes = decodeWordText(m[2], m[3]);
    if (run && adjacent && run.charset === charset) {
      run.bytes.push(bytes);
      run.raw += between + m[0];
    } else {
      if (run) flush(run);
      if (!adjacent) {
        out += between;
        previousFailed = false;
      }
      run = { charset, bytes: [bytes], raw: m[0], gap: adjacent ? between : '' };
    }
    last = m.index! + m[0].length;
  }
  if (run) flush(run);
  return out + value.slice(last);
}

/** B is base64; Q is quoted-printable with "_" for space (RFC 2047 4.2). */
function decodeWordText(encoding: string, text: string): Buffer {
  if (encoding === 'B' || encoding === 'b') return Buffer.from(text, 'base64');
  const src = Buffer.from(text, 'latin1');
  const out = Buffer.allocUnsafe(src.length);
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    const hex = src[i] === 0x3d && i + 2 < src.length ? hexByte(src[i + 1], src[i + 2]) : -1;
    if (hex >= 0) {
      out[n++] = hex;
      i += 2;
    } else {
      out[n++] = src[i] === 0x5f ? 0x20 : src[i];
    }
  }
  return out.subarray(0, n);
}
