/** Content-Transfer-Encoding (RFC 2045 section 6): naming and decoding. */
import { decodeBase64Body } from './base64';
import { MimeError } from './error';
import { decodeQuotedPrintable } from './quoted-printable';

/** The encodings that leave the body as it is; RFC 2045 6.1 makes 7bit the default. */
export const IDENTITY_ENCODINGS: ReadonlySet<string> = new Set(['7bit', '8bit', 'binary']);

/**
 * The mechanism named by a Content-Transfer-Encoding value: its first token, lowercase, so a
 * trailing comment or junk is ignored; "7bit" when absent or empty (RFC 2045 6.1).
 */
export function transferEncodingName(value: string | undefined): string {
  const name = /^[ \t]*([^ \t(;]*)/.exec(value ?? '')![1].toLowerCase();
  return name === '' ? '7bit' : name;
}

/** The body with its transfer encoding removed; identity encodings return the same Buffer. */
export function decodeTransferEncoding(body: Buffer, cte: string | undefined): Buffer {
  const name = transferEncodingName(cte);
  if (IDENTITY_ENCODINGS.has(name)) return body;
  if (name === 'base64') return decodeBase64Body(body);
  if (name === 'quoted-printable') return decodeQuotedPrintable(body);
  throw new MimeError(`unsupported Content-Transfer-Encoding: ${name.slice(0, 40)}`);
}
