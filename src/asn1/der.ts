/**
 * A small BER reader and DER writer for the CMS and X.509 structures cstp handles.
 *
 * Reading accepts BER (indefinite lengths, constructed strings) because gpgsm and NSS
 * emit it; every length is checked against the bytes actually present and nesting is
 * bounded, so hostile input fails with an Asn1Error instead of a crash or a hang.
 * Writing always produces DER. Nodes are views into the input buffer: nothing is copied
 * until a caller asks for content.
 */

export class Asn1Error extends Error {
  override name = 'Asn1Error';
}

export const enum TagClass {
  Universal = 0,
  Application = 1,
  Context = 2,
  Private = 3,
}

/** Universal tag numbers used by cstp. */
export const Tag = {
  BOOLEAN: 1,
  INTEGER: 2,
  BIT_STRING: 3,
  OCTET_STRING: 4,
  NULL: 5,
  OID: 6,
  UTF8_STRING: 12,
  SEQUENCE: 16,
  SET: 17,
  PRINTABLE_STRING: 19,
  T61_STRING: 20,
  IA5_STRING: 22,
  UTC_TIME: 23,
  GENERALIZED_TIME: 24,
  UNIVERSAL_STRING: 28,
  BMP_STRING: 30,
} as const;

/** Deepest nesting of constructed values accepted; real CMS/X.509 stays far below. */
export const MAX_DEPTH = 64;

export interface Asn1Node {
  readonly cls: TagClass;
  readonly constructed: boolean;
  readonly tag: number;
  /** The buffer this node is a view of. */
  readonly buf: Buffer;
  /** Offset of the identifier octet. */
  readonly start: number;
  /** Offset of the first content octet. */
  readonly contentStart: number;
  /** Offset just past the last content octet (before the end-of-contents octets, if any). */
  readonly contentEnd: number;
  /** Offset just past the whole encoding, including end-of-contents octets. */
  readonly end: number;
  readonly indefinite: boolean;
  readonly depth: number;
}

interface Header {
  cls: TagClass;
  constructed: boolean;
  tag: number;
  length: number; // -1 for indefinite
  contentStart: number;
}

function readHeader(buf: Buffer, pos: number, limit: number): Header {
  if (pos >= limit) throw new Asn1Error('truncated: expected an identifier octet');
  const id = buf[pos++];
  const cls = (id >> 6) as TagClass;
  const constructed = (id & 0x20) !== 0;
  let tag = id & 0x1f;
  if (tag === 0x1f) {
    tag = 0;
    for (let n = 0; ; n++) {
      if (pos >= limit) throw new Asn1Error('truncated: high tag number');
      if (n >= 4) throw new Asn1Error('tag number too large');
      const b = buf[pos++];
      tag = tag * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) break;
    }
  }
  if (pos >= limit) throw new Asn1Error('truncated: expected a length octet');
  const first = buf[pos++];
  let length: number;
  if (first < 0x80) {
    length = first;
  } else if (first === 0x80) {
    if (!constructed) throw new Asn1Error('indefinite length on a primitive value');
    length = -1;
  } else {
    const n = first & 0x7f;
    if (n > 6) throw new Asn1Error(`length of ${n} octets is absurd`);
    if (pos + n > limit) throw new Asn1Error('truncated: length octets');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[pos++];
  }
  if (length > limit - pos) {
    throw new Asn1Error(`length ${length} exceeds the ${limit - pos} octets available`);
  }
  return { cls, constructed, tag, length, contentStart: pos };
}

function parseAt(buf: Buffer, pos: number, limit: number, depth: number): Asn1Node {
  if (depth > MAX_DEPTH) throw new Asn1Error(`nesting deeper than ${MAX_DEPTH}`);
  const h = readHeader(buf, pos, limit);
  if (h.length >= 0) {
    const contentEnd = h.contentStart + h.length;
    return {
      cls: h.cls, constructed: h.constructed, tag: h.tag, buf, start: pos,
      contentStart: h.contentStart, contentEnd, end: contentEnd, indefinite: false, depth,
    };
  }
  // Indefinite length: walk the children to find the end-of-contents octets.
  let p = h.contentStart;
  for (;;) {
    if (p + 2 > limit) throw new Asn1Error('truncated: missing end-of-contents');
    if (buf[p] === 0 && buf[p + 1] === 0) {
      return {
        cls: h.cls, constructed: true, tag: h.tag, buf, start: pos,
        contentStart: h.contentStart, contentEnd: p, end: p + 2, indefinite: true, depth,
      };
    }
    p = parseAt(buf, p, limit, depth + 1).end;
  }
}

/** Parses the single value at `offset`; trailing bytes are allowed (see parseExact). */
export function parse(buf: Buffer, offset = 0, limit = buf.length): Asn1Node {
  return parseAt(buf, offset, limit, 0);
}

/** Parses a buffer that must hold exactly one value. */
export function parseExact(buf: Buffer): Asn1Node {
  const node = parse(buf);
  if (node.end !== buf.length) throw new Asn1Error(`${buf.length - node.end} trailing octets after the value`);
  return node;
}

/** The direct children of a constructed value. */
export function children(node: Asn1Node): Asn1Node[] {
  if (!node.constructed) throw new Asn1Error(`expected a constructed value, got primitive tag ${node.tag}`);
  const out: Asn1Node[] = [];
  let p = node.contentStart;
  while (p < node.contentEnd) {
    const child = parseAt(node.buf, p, node.contentEnd, node.depth + 1);
    out.push(child);
    p = child.end;
  }
  return out;
}

/** The content octets of a primitive value (a view, not a copy). */
export function content(node: Asn1Node): Buffer {
  if (node.constructed) throw new Asn1Error(`expected a primitive value, got constructed tag ${node.tag}`);
  return node.buf.subarray(node.contentStart, node.contentEnd);
}

/** The complete encoding (identifier, length, content) as a view. */
export function encoding(node: Asn1Node): Buffer {
  return node.buf.subarray(node.start, node.end);
}

/**
 * The value of a string type, joining the segments of a BER constructed string
 * (NSS and gpgsm split encryptedContent into chunks).
 */
export function stringValue(node: Asn1Node): Buffer {
  if (!node.constructed) return content(node);
  const parts: Buffer[] = [];
  const walk = (n: Asn1Node): void => {
    for (const c of children(n)) {
      if (c.constructed) walk(c);
      else parts.push(content(c));
    }
  };
  walk(node);
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

export function is(node: Asn1Node, cls: TagClass, tag: number): boolean {
  return node.cls === cls && node.tag === tag;
}

export function isUniversal(node: Asn1Node, tag: number): boolean {
  return node.cls === TagClass.Universal && node.tag === tag;
}

export function isContext(node: Asn1Node, tag: number): boolean {
  return node.cls === TagClass.Context && node.tag === tag;
}

function describe(node: Asn1Node): string {
  const cls = ['universal', 'application', 'context', 'private'][node.cls];
  return `${cls} tag ${node.tag}`;
}

/** Asserts a universal tag and returns the node, with a message naming `what`. */
export function expect(node: Asn1Node | undefined, tag: number, what: string): Asn1Node {
  if (!node) throw new Asn1Error(`${what}: missing`);
  if (!isUniversal(node, tag)) throw new Asn1Error(`${what}: expected universal tag ${tag}, got ${describe(node)}`);
  return node;
}

export function expectSequence(node: Asn1Node | undefined, what: string, minChildren = 0): Asn1Node[] {
  const n = expect(node, Tag.SEQUENCE, what);
  const kids = children(n);
  if (kids.length < minChildren) throw new Asn1Error(`${what}: expected at least ${minChildren} elements, got ${kids.length}`);
  return kids;
}

// ---------------------------------------------------------------------------
// Primitive decoders

export function readOid(node: Asn1Node | undefined, what = 'OBJECT IDENTIFIER'): string {
  const c = content(expect(node, Tag.OID, what));
  if (c.length === 0 || c.length > 64) throw new Asn1Error(`${what}: bad length ${c.length}`);
  const arcs: number[] = [];
  let v = 0;
  for (let i = 0; i < c.length; i++) {
    if (v > 2 ** 45) throw new Asn1Error(`${what}: arc too large`);
    v = v * 128 + (c[i] & 0x7f);
    if ((c[i] & 0x80) === 0) {
      if (arcs.length === 0) {
        const first = v < 40 ? 0 : v < 80 ? 1 : 2;
        arcs.push(first, v - first * 40);
      } else arcs.push(v);
      v = 0;
    } else if (i === c.length - 1) throw new Asn1Error(`${what}: truncated arc`);
  }
  return arcs.join('.');
}

/** An INTEGER's two's-complement content octets (a view). */
export function readIntegerBytes(node: Asn1Node | undefined, what = 'INTEGER'): Buffer {
  const c = content(expect(node, Tag.INTEGER, what));
  if (c.length === 0) throw new Asn1Error(`${what}: empty`);
  return c;
}

/** A small non-negative INTEGER as a number (versions, lengths, counts). */
export function readSmallInt(node: Asn1Node | undefined, what = 'INTEGER'): number {
  const c = readIntegerBytes(node, what);
  if (c.length > 6 || c[0] & 0x80) throw new Asn1Error(`${what}: out of range`);
  let v = 0;
  for (const b of c) v = v * 256 + b;
  return v;
}

export function readBoolean(node: Asn1Node | undefined, what = 'BOOLEAN'): boolean {
  const c = content(expect(node, Tag.BOOLEAN, what));
  if (c.length !== 1) throw new Asn1Error(`${what}: bad length`);
  return c[0] !== 0;
}

/** BIT STRING content without the unused-bits octet, plus that count. */
export function readBitString(node: Asn1Node | undefined, what = 'BIT STRING'): { bytes: Buffer; unused: number } {
  const c = stringValue(expect(node, Tag.BIT_STRING, what));
  if (c.length === 0 || c[0] > 7) throw new Asn1Error(`${what}: bad unused-bits octet`);
  return { bytes: c.subarray(1), unused: c[0] };
}

export function readOctetString(node: Asn1Node | undefined, what = 'OCTET STRING'): Buffer {
  return stringValue(expect(node, Tag.OCTET_STRING, what));
}

const STRING_TAGS = new Set<number>([
  Tag.UTF8_STRING, Tag.PRINTABLE_STRING, Tag.T61_STRING, Tag.IA5_STRING, Tag.UNIVERSAL_STRING, Tag.BMP_STRING,
]);

/** Any of the X.520 directory string types as a JS string. */
export function readString(node: Asn1Node | undefined, what = 'string'): string {
  if (!node) throw new Asn1Error(`${what}: missing`);
  if (node.cls !== TagClass.Universal || !STRING_TAGS.has(node.tag)) {
    throw new Asn1Error(`${what}: not a string type (${describe(node)})`);
  }
  const c = stringValue(node);
  if (node.tag === Tag.BMP_STRING) {
    if (c.length % 2) throw new Asn1Error(`${what}: odd BMPString length`);
    const swapped = Buffer.from(c);
    swapped.swap16();
    return swapped.toString('utf16le');
  }
  if (node.tag === Tag.UNIVERSAL_STRING) {
    if (c.length % 4) throw new Asn1Error(`${what}: bad UniversalString length`);
    let s = '';
    for (let i = 0; i < c.length; i += 4) s += String.fromCodePoint(c.readUInt32BE(i));
    return s;
  }
  return node.tag === Tag.UTF8_STRING ? c.toString('utf8') : c.toString('latin1');
}

/** UTCTime or GeneralizedTime (RFC 5280 forms: seconds, Z) as a Date. */
export function readTime(node: Asn1Node | undefined, what = 'time'): Date {
  if (!node) throw new Asn1Error(`${what}: missing`);
  const s = content(node).toString('latin1');
  let m: RegExpMatchArray | null;
  let year: number;
  if (isUniversal(node, Tag.UTC_TIME)) {
    m = s.match(/^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)?Z$/);
    if (!m) throw new Asn1Error(`${what}: bad UTCTime "${s}"`);
    year = Number(m[1]);
    year += year < 50 ? 2000 : 1900;
  } else if (isUniversal(node, Tag.GENERALIZED_TIME)) {
    m = s.match(/^(\d\d\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)?(?:\.\d+)?Z$/);
    if (!m) throw new Asn1Error(`${what}: bad GeneralizedTime "${s}"`);
    year = Number(m[1]);
  } else throw new Asn1Error(`${what}: not a time (${describe(node)})`);
  const d = new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0)));
  if (Number.isNaN(d.getTime())) throw new Asn1Error(`${what}: invalid date "${s}"`);
  return d;
}

// ---------------------------------------------------------------------------
// DER writer

/** Identifier + length octets for a value of `length` content octets. */
export function header(idOctet: number, length: number): Buffer {
  if (length < 0x80) return Buffer.from([idOctet, length]);
  const bytes: number[] = [];
  for (let l = length; l > 0; l = Math.floor(l / 256)) bytes.unshift(l & 0xff);
  return Buffer.from([idOctet, 0x80 | bytes.length, ...bytes]);
}

/** Length of the identifier + length octets of a value with `length` content octets. */
export function headerLength(length: number): number {
  if (length < 0x80) return 2;
  let n = 0;
  for (let l = length; l > 0; l = Math.floor(l / 256)) n++;
  return 2 + n;
}

export function tlv(idOctet: number, ...parts: Buffer[]): Buffer {
  const len = parts.reduce((a, p) => a + p.length, 0);
  return Buffer.concat([header(idOctet, len), ...parts], headerLength(len) + len);
}

export const sequence = (...parts: Buffer[]): Buffer => tlv(0x30, ...parts);
export const set = (...parts: Buffer[]): Buffer => tlv(0x31, ...parts);

/** DER SET OF: elements sorted by their encodings (X.690 11.6). */
export function setOf(...parts: Buffer[]): Buffer {
  return tlv(0x31, ...[...parts].sort(Buffer.compare));
}

/** [n] EXPLICIT: a constructed context tag around the parts. */
export const explicit = (n: number, ...parts: Buffer[]): Buffer => tlv(0xa0 | n, ...parts);

/** [n] IMPLICIT on a primitive: the content octets under a context tag. */
export const implicitPrimitive = (n: number, contentOctets: Buffer): Buffer => tlv(0x80 | n, contentOctets);

/** Re-tags an encoded value with an implicit context tag (constructedness kept). */
export function retag(encoded: Buffer, idOctet: number): Buffer {
  const out = Buffer.from(encoded);
  out[0] = idOctet;
  return out;
}

export const octetString = (b: Buffer): Buffer => tlv(0x04, b);
export const nullValue = (): Buffer => Buffer.from([0x05, 0x00]);
export const bitString = (b: Buffer): Buffer => tlv(0x03, Buffer.from([0]), b);
export const utf8String = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
export const ia5String = (s: string): Buffer => tlv(0x16, Buffer.from(s, 'latin1'));
export const printableString = (s: string): Buffer => tlv(0x13, Buffer.from(s, 'latin1'));
export const boolean = (v: boolean): Buffer => Buffer.from([0x01, 0x01, v ? 0xff : 0x00]);

/** INTEGER from a non-negative number or unsigned big-endian bytes. */
export function integer(v: number | Buffer): Buffer {
  let bytes: Buffer;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`integer ${v} not supported`);
    const arr: number[] = [];
    for (let x = v; x > 0; x = Math.floor(x / 256)) arr.unshift(x & 0xff);
    bytes = Buffer.from(arr.length ? arr : [0]);
  } else {
    let i = 0;
    while (i < v.length - 1 && v[i] === 0) i++;
    bytes = v.subarray(i);
    if (bytes.length === 0) bytes = Buffer.from([0]);
  }
  if (bytes[0] & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(0x02, bytes);
}

const oidCache = new Map<string, Buffer>();

/** An OBJECT IDENTIFIER; encodings are memoised, since the same few recur in every message. */
export function oid(dotted: string): Buffer {
  let encoded = oidCache.get(dotted);
  if (!encoded) {
    encoded = encodeOid(dotted);
    if (oidCache.size < 1024) oidCache.set(dotted, encoded);
  }
  return encoded;
}

function encodeOid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) throw new RangeError(`bad OID ${dotted}`);
  const out: number[] = [];
  const push = (v: number): void => {
    const tmp = [v & 0x7f];
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) tmp.unshift((v & 0x7f) | 0x80);
    out.push(...tmp);
  };
  push(arcs[0] * 40 + arcs[1]);
  for (const a of arcs.slice(2)) push(a);
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime for 1950-2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5). */
export function time(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  const y = d.getUTCFullYear();
  if (y >= 1950 && y < 2050) return tlv(0x17, Buffer.from(digits.slice(2) + 'Z', 'latin1'));
  return tlv(0x18, Buffer.from(digits + 'Z', 'latin1'));
}

/** AlgorithmIdentifier with optional parameters (absent when undefined). */
export function algorithm(oidStr: string, params?: Buffer): Buffer {
  return params ? sequence(oid(oidStr), params) : sequence(oid(oidStr));
}
