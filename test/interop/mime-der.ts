/**
 * A small converter between S/MIME MIME messages and raw CMS DER, written independently of
 * src/ so the interop tests do not trust the code under test to build their inputs.
 *
 * openssl speaks full S/MIME messages; gpgsm and NSS cmsutil speak raw CMS only. These helpers
 * bridge the two:
 *   unwrapPkcs7Mime   application/pkcs7-mime message -> CMS DER
 *   splitSigned       multipart/signed -> exact signed bytes + detached signature DER
 *   wrapPkcs7Mime     CMS DER -> application/pkcs7-mime message with given outer headers
 *   joinSigned        signed bytes + signature DER -> multipart/signed message
 *
 * Everything works on 'latin1' strings so that byte offsets equal string offsets and binary
 * bodies survive untouched. Both CRLF and bare LF input are accepted (openssl without -crlfeol
 * mixes them); output is always CRLF.
 */

export type HeaderList = Array<[name: string, value: string]>;

export interface Header {
  name: string;
  /** Value with folding removed (CRLF + WSP -> WSP), leading/trailing blanks trimmed. */
  value: string;
}

export interface SplitMessage {
  headers: Header[];
  /** Raw header block (without the empty line). */
  headerBlock: string;
  body: Buffer;
}

const toLatin1 = (b: Buffer | string): string => (typeof b === 'string' ? b : b.toString('latin1'));

/** Split an RFC 5322 message / MIME entity at the first empty line. */
export function splitMessage(msg: Buffer | string): SplitMessage {
  const s = toLatin1(msg);
  let headerEnd: number;
  let bodyStart: number;
  if (s.startsWith('\r\n') || s.startsWith('\n')) {
    // No headers at all: the entity starts with the empty line.
    headerEnd = 0;
    bodyStart = s.startsWith('\r\n') ? 2 : 1;
  } else {
    const m = /\r?\n\r?\n/.exec(s);
    if (!m) {
      headerEnd = s.length;
      bodyStart = s.length;
    } else {
      headerEnd = m.index;
      bodyStart = m.index + m[0].length;
    }
  }
  const headerBlock = s.slice(0, headerEnd);
  return { headers: parseHeaders(headerBlock), headerBlock, body: Buffer.from(s.slice(bodyStart), 'latin1') };
}

export function parseHeaders(block: string): Header[] {
  const headers: Header[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (line === '') continue;
    if (/^[ \t]/.test(line) && headers.length > 0) {
      headers[headers.length - 1].value += line; // unfold: drop the line break, keep the WSP
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`not a header line: ${JSON.stringify(line.slice(0, 80))}`);
    headers.push({ name: line.slice(0, colon).trim(), value: line.slice(colon + 1) });
  }
  return headers.map((h) => ({ name: h.name, value: h.value.trim() }));
}

export function headerValues(headers: Header[], name: string): string[] {
  return headers.filter((h) => h.name.toLowerCase() === name.toLowerCase()).map((h) => h.value);
}

export function headerValue(headers: Header[], name: string): string | undefined {
  return headerValues(headers, name)[0];
}

export interface ContentType {
  type: string; // lower-cased "type/subtype"
  params: Record<string, string>; // lower-cased names, unquoted values
}

/** Parse a Content-Type (or Content-Disposition) value: `type; a=b; c="d e"`. */
export function parseParams(value: string): ContentType {
  const semi = value.indexOf(';');
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  const params: Record<string, string> = {};
  const re = /;\s*([^=\s;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)/g;
  const rest = semi < 0 ? '' : value.slice(semi);
  for (let m = re.exec(rest); m; m = re.exec(rest)) {
    let v = m[2];
    if (v.startsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
    params[m[1].toLowerCase()] = v;
  }
  return { type, params };
}

export function contentTypeOf(headers: Header[]): ContentType {
  const v = headerValue(headers, 'Content-Type');
  return v ? parseParams(v) : { type: 'text/plain', params: { charset: 'us-ascii' } };
}

interface Delimiter {
  /** Offset of the line break that precedes the delimiter line (belongs to the delimiter). */
  start: number;
  /** Offset just after the delimiter line's own line break. */
  end: number;
  close: boolean;
}

function findDelimiters(body: string, boundary: string): Delimiter[] {
  const marker = `--${boundary}`;
  const found: Delimiter[] = [];
  for (let i = body.indexOf(marker); i >= 0; i = body.indexOf(marker, i + 1)) {
    if (i > 0 && body[i - 1] !== '\n') continue; // must start a line
    const lineEnd = body.indexOf('\n', i);
    const rest = body.slice(i + marker.length, lineEnd < 0 ? body.length : lineEnd).replace(/\r$/, '');
    const close = rest.startsWith('--');
    if (!/^[ \t]*$/.test(close ? rest.slice(2) : rest)) continue; // "--boundaryXYZ" is not ours
    let start = i;
    if (i > 0) start = body[i - 2] === '\r' ? i - 2 : i - 1;
    found.push({ start, end: lineEnd < 0 ? body.length : lineEnd + 1, close });
    if (close) break;
  }
  return found;
}

/** The body parts of a multipart body, each as exact bytes (the CRLF before a delimiter excluded). */
export function multipartParts(body: Buffer, boundary: string): Buffer[] {
  const s = toLatin1(body);
  const delims = findDelimiters(s, boundary);
  if (delims.length < 2 || !delims[delims.length - 1].close) {
    throw new Error(`multipart body without a closing delimiter for boundary ${JSON.stringify(boundary)}`);
  }
  const parts: Buffer[] = [];
  for (let i = 0; i + 1 < delims.length; i++) {
    parts.push(Buffer.from(s.slice(delims[i].end, delims[i + 1].start), 'latin1'));
  }
  return parts;
}

function decodeBase64Strict(text: Buffer): Buffer {
  const compact = toLatin1(text).replace(/[\r\n\t ]/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) throw new Error('body is not base64');
  return Buffer.from(compact, 'base64');
}

/** The CMS DER inside an application/pkcs7-mime (or x-pkcs7-mime) message. */
export function unwrapPkcs7Mime(msg: Buffer): Buffer {
  const { headers, body } = splitMessage(msg);
  const ct = contentTypeOf(headers);
  if (!/^application\/(x-)?pkcs7-mime$/.test(ct.type)) throw new Error(`not pkcs7-mime: ${ct.type}`);
  const cte = (headerValue(headers, 'Content-Transfer-Encoding') ?? '').toLowerCase();
  return cte === 'base64' ? decodeBase64Strict(body) : body;
}

export interface SignedParts {
  /** The exact bytes the signature covers: the first body part, without the CRLF before the boundary. */
  content: Buffer;
  signature: Buffer;
  micalg?: string;
  protocol?: string;
}

/** Split a multipart/signed message into the signed bytes and the detached signature DER. */
export function splitSigned(msg: Buffer): SignedParts {
  const { headers, body } = splitMessage(msg);
  const ct = contentTypeOf(headers);
  if (ct.type !== 'multipart/signed') throw new Error(`not multipart/signed: ${ct.type}`);
  const boundary = ct.params.boundary;
  if (!boundary) throw new Error('multipart/signed without boundary');
  const parts = multipartParts(body, boundary);
  if (parts.length !== 2) throw new Error(`multipart/signed with ${parts.length} parts`);
  const sig = splitMessage(parts[1]);
  const sigType = contentTypeOf(sig.headers).type;
  if (!/^application\/(x-)?pkcs7-signature$/.test(sigType)) throw new Error(`signature part is ${sigType}`);
  const cte = (headerValue(sig.headers, 'Content-Transfer-Encoding') ?? '').toLowerCase();
  return {
    content: parts[0],
    signature: cte === 'base64' ? decodeBase64Strict(sig.body) : sig.body,
    micalg: ct.params.micalg,
    protocol: ct.params.protocol,
  };
}

function headerLines(outer: HeaderList): string {
  return outer.map(([n, v]) => `${n}: ${v}\r\n`).join('');
}

/** Base64 in 76-character CRLF lines, as MIME wants. */
export function base64Lines(data: Buffer): string {
  const b64 = data.toString('base64');
  let out = '';
  for (let i = 0; i < b64.length; i += 76) out += b64.slice(i, i + 76) + '\r\n';
  return out;
}

export type SmimeType = 'signed-data' | 'enveloped-data' | 'authEnveloped-data';

/** Wrap CMS DER into an application/pkcs7-mime message, the outer headers first. */
export function wrapPkcs7Mime(der: Buffer, smimeType: SmimeType, outer: HeaderList = []): Buffer {
  const text =
    headerLines(outer) +
    'MIME-Version: 1.0\r\n' +
    `Content-Type: application/pkcs7-mime; smime-type=${smimeType}; name="smime.p7m"\r\n` +
    'Content-Transfer-Encoding: base64\r\n' +
    'Content-Disposition: attachment; filename="smime.p7m"\r\n' +
    '\r\n' +
    base64Lines(der);
  return Buffer.from(text, 'latin1');
}

/** Join signed bytes and a detached signature into a multipart/signed message. */
export function joinSigned(content: Buffer, signature: Buffer, outer: HeaderList = [], micalg = 'sha-256'): Buffer {
  const boundary = '----=_interop_signed_7f3a9c';
  if (toLatin1(content).includes(boundary)) throw new Error('boundary collides with content');
  const head =
    headerLines(outer) +
    'MIME-Version: 1.0\r\n' +
    `Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=${micalg}; boundary="${boundary}"\r\n` +
    '\r\n' +
    'This is an S/MIME signed message\r\n' +
    `--${boundary}\r\n`;
  const tail =
    `\r\n--${boundary}\r\n` +
    'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n' +
    'Content-Transfer-Encoding: base64\r\n' +
    'Content-Disposition: attachment; filename="smime.p7s"\r\n' +
    '\r\n' +
    base64Lines(signature) +
    `--${boundary}--\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), content, Buffer.from(tail, 'latin1')]);
}

/**
 * Canonicalise line endings to CRLF. Only for MIME text whose content is already CRLF (our corpus
 * is): `openssl cms -crlfeol` still writes its base64 lines with bare LF (OpenSSL 3.0), which a
 * mail transport would deliver as CRLF.
 */
export function toCrlf(msg: Buffer): Buffer {
  return Buffer.from(msg.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
}

/** The same message with bare LF line endings, as in a local Unix mailbox. */
export function toLf(msg: Buffer): Buffer {
  return Buffer.from(msg.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
}

/** Put RFC 5322 outer headers in front of a MIME entity (as a mail client does with openssl output). */
export function prependHeaders(outer: HeaderList, entity: Buffer): Buffer {
  return Buffer.concat([Buffer.from(headerLines(outer), 'latin1'), entity]);
}
