/**
 * A MIME entity (RFC 2045 section 2.4): header section and body, split at the first empty line
 * (RFC 5322 2.1). Parsing never copies: fields and body are views of the input. It is liberal
 * in what it reads (no body, no empty line, no headers, obs-fold, an mbox From_ line) but every
 * scan is bounded by the header size limit.
 */
import { CR, CRLF, LF, isWsp, COLON } from './bytes';
import { MimeError } from './error';
import { endsWithLineBreak, type HeaderField } from './header';

export interface Entity {
  headers: HeaderField[];
  /** A view (subarray) of the input, never a copy. */
  body: Buffer;
}

export interface ParseOptions {
  /** Upper bound for the whole header section, in octets (default 1 MiB). */
  maxHeaderBytes?: number;
  /** Upper bound for the number of header fields (default 10,000). */
  maxHeaderFields?: number;
  /** Drop a first line "From sender date" (mbox separator); default true. Body parts pass false. */
  mboxFrom?: boolean;
}

export const DEFAULT_MAX_HEADER_BYTES = 1024 * 1024;
export const DEFAULT_MAX_HEADER_FIELDS = 10_000;

/** Where the pieces of an entity sit in its buffer; make7bit needs this to splice in new fields. */
export interface EntityLayout extends Entity {
  /** Offset just after the last header field: new fields are inserted here. */
  headerEnd: number;
  /** Whether an empty line separates header and body (false: no body, or a header-less entity). */
  separated: boolean;
}

/** Parses a canonical (CRLF) entity or message. */
export function parseEntity(message: Buffer, options: ParseOptions = {}): Entity {
  const { headers, body } = parseLayout(message, options);
  return { headers, body };
}

export function parseLayout(message: Buffer, options: ParseOptions = {}): EntityLayout {
  const maxBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const maxFields = options.maxHeaderFields ?? DEFAULT_MAX_HEADER_FIELDS;
  const start = options.mboxFrom === false ? 0 : afterMboxFromLine(message);
  const limit = start + maxBytes;
  const headers: HeaderField[] = [];
  let pos = start;
  while (pos < message.length) {
    if (message[pos] === CR && message[pos + 1] === LF) {
      return { headers, body: message.subarray(pos + 2), headerEnd: pos, separated: true };
    }
    const nameEnd = fieldNameEnd(message, pos);
    // Like Postfix: a line that is no header field ends the header section and starts the body.
    if (nameEnd === -1) return { headers, body: message.subarray(pos), headerEnd: pos, separated: false };
    const end = fieldEnd(message, pos, limit);
    if (end > limit) throw new MimeError(`header section exceeds ${maxBytes} octets`);
    if (headers.length === maxFields) throw new MimeError(`header section has more than ${maxFields} fields`);
    headers.push({ name: message.toString('latin1', pos, nameEnd), raw: message.subarray(pos, end) });
    pos = end;
  }
  return { headers, body: message.subarray(message.length), headerEnd: message.length, separated: false };
}

/**
 * An mbox separator "From addr date" is not a header field (no colon after the name); the
 * obsolete form "From : addr" (RFC 5322 4.5.3, whitespace before the colon) is, and is kept.
 */
function afterMboxFromLine(message: Buffer): number {
  if (message.length < 5 || message.toString('latin1', 0, 5) !== 'From ') return 0;
  let i = 5;
  while (i < message.length && isWsp(message[i])) i++;
  if (message[i] === COLON) return 0;
  const lf = message.indexOf(LF, i);
  return lf === -1 ? message.length : lf + 1;
}

/** A name cannot be longer than a line (RFC 5322 2.1.1); the cap keeps a huge first body line cheap to reject. */
const MAX_NAME = 998;

/**
 * End of the field name if a header field starts at `pos`: RFC 5322 ftext (printable ASCII
 * except colon), then optional whitespace (obs-optional), then a colon. -1 otherwise.
 */
function fieldNameEnd(message: Buffer, pos: number): number {
  const stop = Math.min(message.length, pos + MAX_NAME);
  let i = pos;
  while (i < stop && message[i] > 32 && message[i] < 127 && message[i] !== COLON) i++;
  if (i === pos) return -1;
  let j = i;
  while (j < message.length && isWsp(message[j])) j++;
  return message[j] === COLON ? i : -1;
}

/**
 * Offset after the field's last line: its first line plus every following line that starts
 * with whitespace. Stops early once past `limit`, so endless folds cost no more than the limit.
 */
function fieldEnd(message: Buffer, pos: number, limit: number): number {
  let lineStart = pos;
  do {
    const lf = message.indexOf(LF, lineStart);
    if (lf === -1) return message.length;
    lineStart = lf + 1;
  } while (lineStart < message.length && lineStart <= limit && isWsp(message[lineStart]));
  return lineStart;
}

/**
 * Serialises header fields and a body as chunks; the body is never copied. String fields are
 * "Name: value" (UTF-8, CRLF added; folds inside must be CRLF + whitespace). A line break that
 * would start a new field is refused, so values taken from input cannot inject header fields.
 */
export function buildEntity(headers: (HeaderField | string)[], body: Buffer | Buffer[]): Buffer[] {
  const head = headers.map((h) => (typeof h === 'string' ? headerLine(h) : completeField(h.raw)));
  return [Buffer.concat([...head, CRLF]), ...(Array.isArray(body) ? body : [body])];
}

function completeField(raw: Buffer): Buffer {
  return endsWithLineBreak(raw) ? raw : Buffer.concat([raw, CRLF]);
}

function headerLine(text: string): Buffer {
  const line = text.endsWith('\r\n') ? text.slice(0, -2) : text;
  if (!/^[!-9;-~]+[ \t]*:/.test(line)) throw new MimeError(`not a header field: ${JSON.stringify(line.slice(0, 40))}`);
  if (/\r(?!\n[ \t])|(?<!\r)\n/.test(line)) {
    throw new MimeError(`header field ${JSON.stringify(line.slice(0, line.indexOf(':')))} contains a line break that is not a fold`);
  }
  return Buffer.from(`${line}\r\n`, 'utf8');
}
