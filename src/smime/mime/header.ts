/**
 * Header fields as RFC 5322 section 2.2 defines them, kept as the exact input bytes so that
 * fields cstp does not change are passed on byte for byte (signed entities depend on it).
 */
import { COLON, CR, HTAB, LF, SP, decodeHeaderBytes } from './bytes';

export interface HeaderField {
  /** Field name as written (case kept, surrounding whitespace removed). */
  name: string;
  /**
   * The complete field as in the input, folded lines included, CRLF-terminated (only a last
   * field that ends the input without a line end lacks it; buildEntity adds it back).
   */
  raw: Buffer;
}

/** The field body: unfolded (RFC 5322 2.2.3), trimmed, UTF-8 if valid (RFC 6532) else Latin-1. */
export function fieldValue(field: HeaderField): string {
  const colon = field.raw.indexOf(COLON);
  const text = decodeHeaderBytes(field.raw.subarray(colon + 1));
  return trimWhitespace(stripLineBreaks(text));
}

/**
 * Text without leading and trailing SP, HTAB, CR and LF. Written out because the regex
 * /[ \t]+$/ backtracks quadratically on a long run of blanks followed by anything else.
 */
export function trimWhitespace(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isBlank(text.charCodeAt(start))) start++;
  while (end > start && isBlank(text.charCodeAt(end - 1))) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

function isBlank(c: number): boolean {
  return c === SP || c === HTAB || c === CR || c === LF;
}

/** Unfolding removes the CRLF of each fold and keeps the whitespace after it. */
function stripLineBreaks(text: string): string {
  return text.indexOf('\r') === -1 && text.indexOf('\n') === -1 ? text : text.replace(/[\r\n]/g, '');
}

/** Value of the first field called `name` (case-insensitive), or undefined when there is none. */
export function headerValue(headers: HeaderField[], name: string): string | undefined {
  const wanted = name.toLowerCase();
  const field = headers.find((h) => h.name.toLowerCase() === wanted);
  return field && fieldValue(field);
}

/** RFC 2045 section 9: every MIME content header field is named Content-*. */
export function isContentHeader(name: string): boolean {
  return name.length > 8 && name.slice(0, 8).toLowerCase() === 'content-';
}

/**
 * Splits a message's fields into those describing the content (they move into a protected
 * entity) and all others (they stay outside). MIME-Version is in neither list: it belongs to
 * whichever side is written out as a MIME message, so the writer adds it to both.
 */
export function splitHeaders(headers: HeaderField[]): { outer: HeaderField[]; content: HeaderField[] } {
  const outer: HeaderField[] = [];
  const content: HeaderField[] = [];
  for (const h of headers) {
    if (isContentHeader(h.name)) content.push(h);
    else if (h.name.toLowerCase() !== 'mime-version') outer.push(h);
  }
  return { outer, content };
}

/** True when `raw` ends in CRLF, i.e. is a complete field that can be followed by another. */
export function endsWithLineBreak(raw: Buffer): boolean {
  return raw.length >= 2 && raw[raw.length - 2] === CR && raw[raw.length - 1] === LF;
}
