/**
 * Multipart bodies (RFC 2046 section 5.1.1). Parts are exact views of the input: for
 * multipart/signed the first part is the signed data, so not one octet may move.
 *
 *   multipart-body := [preamble CRLF] dash-boundary transport-padding CRLF body-part
 *                     *(CRLF dash-boundary transport-padding CRLF body-part)
 *                     CRLF dash-boundary "--" transport-padding [CRLF epilogue]
 *
 * The CRLF before each dash-boundary belongs to the delimiter, not to the part before it.
 */
import { randomBytes } from 'node:crypto';
import { CR, DASH, LF, isWsp } from './bytes';
import { MimeError } from './error';

export interface MultipartParts {
  preamble: Buffer;
  parts: Buffer[];
  epilogue: Buffer;
  /** False when the close delimiter is missing; the last part then runs to the end of the body. */
  closed: boolean;
}

export interface SplitOptions {
  /** Upper bound for the number of parts (default 10,000): a bound on work and memory for hostile input. */
  maxParts?: number;
}

export const DEFAULT_MAX_PARTS = 10_000;

/** RFC 2046 bchars: at most 70 of them; cstp accepts up to 200 to be liberal, but no line breaks. */
const MAX_BOUNDARY = 200;

/**
 * Splits a canonical multipart body. A delimiter is "--boundary" at the start of a line,
 * optionally "--" (close), then only transport padding (spaces, tabs) up to the CRLF or the end
 * of the body. Lines that merely begin with the boundary (e.g. "--abc_1" for boundary "abc") are
 * content, as in Thunderbird and Python, so nested boundaries sharing a prefix stay apart.
 * One forward pass: native substring search, plus one line-end search per near miss, so the
 * work is linear in the body size.
 */
export function splitMultipart(body: Buffer, boundary: string | Buffer, options: SplitOptions = {}): MultipartParts {
  const maxParts = options.maxParts ?? DEFAULT_MAX_PARTS;
  const dashBoundary = Buffer.concat([Buffer.from('--'), boundaryBytes(boundary)]);
  const parts: Buffer[] = [];
  let preamble: Buffer | undefined;
  let partStart = -1;
  let search = 0;
  for (;;) {
    const at = body.indexOf(dashBoundary, search);
    if (at === -1) break;
    const line = delimiterLine(body, at, dashBoundary.length);
    if (!line) {
      // The next delimiter can only start a later line: skip this one whole, which also keeps
      // input like "------..." (a match at every octet) to one search per line.
      const lf = body.indexOf(LF, at);
      if (lf === -1) break;
      search = lf + 1;
      continue;
    }
    const contentEnd = at === 0 ? 0 : at - 2;
    if (partStart === -1) {
      preamble = body.subarray(0, contentEnd);
    } else {
      if (parts.length === maxParts) throw new MimeError(`multipart body has more than ${maxParts} parts`);
      // Two delimiter lines in a row share one CRLF: the part between them is empty.
      parts.push(body.subarray(partStart, Math.max(partStart, contentEnd)));
    }
    if (line.close) return { preamble: preamble!, parts, epilogue: body.subarray(line.next), closed: true };
    partStart = line.next;
    search = line.next;
  }
  const end = body.subarray(body.length); // views even when empty, so callers can locate them in the body
  if (partStart === -1) return { preamble: body, parts, epilogue: end, closed: false };
  if (parts.length === maxParts) throw new MimeError(`multipart body has more than ${maxParts} parts`);
  parts.push(body.subarray(partStart));
  return { preamble: preamble!, parts, epilogue: end, closed: false };
}

function boundaryBytes(boundary: string | Buffer): Buffer {
  const bytes = typeof boundary === 'string' ? Buffer.from(boundary, 'utf8') : boundary;
  if (bytes.length === 0) throw new MimeError('empty multipart boundary');
  if (bytes.length > MAX_BOUNDARY) throw new MimeError(`multipart boundary longer than ${MAX_BOUNDARY} octets`);
  if (bytes.indexOf(CR) !== -1 || bytes.indexOf(LF) !== -1) throw new MimeError('multipart boundary contains a line break');
  return bytes;
}

/**
 * If "--boundary" at `at` is a delimiter line: whether it closes, and where the next line
 * starts. Undefined when it is not at a line start or is followed by anything but padding.
 */
function delimiterLine(body: Buffer, at: number, length: number): { close: boolean; next: number } | undefined {
  if (at !== 0 && !(at >= 2 && body[at - 2] === CR && body[at - 1] === LF)) return undefined;
  let i = at + length;
  const close = body[i] === DASH && body[i + 1] === DASH;
  if (close) i += 2;
  while (i < body.length && isWsp(body[i])) i++;
  if (i === body.length) return { close, next: i };
  if (body[i] === CR && body[i + 1] === LF) return { close, next: i + 2 };
  return undefined;
}

/**
 * A fresh boundary with 128 random bits. "=_" cannot occur in quoted-printable or base64
 * output, so no encoded part can contain it. '=' is a tspecial: quote it in Content-Type.
 */
export function newBoundary(): string {
  return `----=_cstp_${randomBytes(16).toString('hex')}`;
}
