/**
 * Byte constants and small Buffer helpers shared by the MIME modules. Everything here works on
 * Buffers so 8-bit content is never decoded to a JS string on its way through.
 */
import { isAscii, isUtf8 } from 'node:buffer';

export const CR = 0x0d;
export const LF = 0x0a;
export const SP = 0x20;
export const HTAB = 0x09;
export const COLON = 0x3a;
export const DASH = 0x2d;
export const CRLF = Buffer.from('\r\n', 'latin1');

/** RFC 5322 2.1.1: at most 998 octets per line, excluding the CRLF. */
const MAX_LINE = 998;

export function isWsp(byte: number): boolean {
  return byte === SP || byte === HTAB;
}

/** Position of `view` inside `parent`; both must share one ArrayBuffer (subarray views do). */
export function offsetIn(parent: Buffer, view: Buffer): number {
  return view.byteOffset - parent.byteOffset;
}

/**
 * True when no line is longer than MAX_LINE octets. Instead of visiting every line it asks for
 * the last LF within reach of the current line start (memrchr), so each native call jumps over
 * about a thousand bytes however short the lines are.
 */
function linesWithinLimit(data: Buffer): boolean {
  const reach = MAX_LINE + 1; // content, CR, then the LF may sit at most at offset MAX_LINE + 1
  let start = 0;
  while (data.length - start > MAX_LINE) {
    const lf = data.lastIndexOf(LF, start + reach);
    if (lf < start) return false;
    start = lf + 1;
  }
  return true;
}

/**
 * RFC 2045 2.7 "7bit data": US-ASCII, no NUL, lines of at most 998 octets. The input is assumed
 * canonical (CRLF line ends), so CR and LF need no separate check.
 */
export function is7bitSafe(data: Buffer): boolean {
  return isAscii(data) && data.indexOf(0) === -1 && linesWithinLimit(data);
}

/** Header text as a JS string: UTF-8 when it is valid UTF-8 (RFC 6532 headers), Latin-1 otherwise, so no byte is lost. */
export function decodeHeaderBytes(bytes: Buffer): string {
  return isUtf8(bytes) ? bytes.toString('utf8') : bytes.toString('latin1');
}

/** Value of two hex digits (either case), or -1. */
export function hexByte(hi: number, lo: number): number {
  const h = hexDigit(hi);
  const l = hexDigit(lo);
  return h < 0 || l < 0 ? -1 : (h << 4) | l;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}
