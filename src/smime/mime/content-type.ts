/**
 * Content-Type (RFC 2045 section 5.1) with parameters, including RFC 2231 continuations and
 * charset/language encoding. Parsing is liberal where real mail is sloppy (unquoted values with
 * tspecials such as boundary=----=_Part_1, missing semicolons before junk, comments) and falls
 * back to the RFC 2045 5.2 default when the type itself is unusable.
 */
import { decodeCharset } from './charset';
import { decodeHeaderBytes, hexByte } from './bytes';
import { trimWhitespace } from './header';

export interface ContentType {
  type: string;
  subtype: string;
  /** 'type/subtype', lowercase. */
  mimeType: string;
  /**
   * Parameter names lowercase, values unquoted and RFC 2231-decoded. A prototype-less object,
   * so a parameter called "__proto__" or "constructor" is just data.
   */
  params: Record<string, string>;
}

const TOKEN_CHAR = /[!#$%&'*+\-.^_`{|}~0-9A-Za-z]/;
const TOKEN = /^[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+$/;

/** RFC 2045 5.2: absent or syntactically invalid means text/plain; charset=us-ascii. */
function defaultContentType(): ContentType {
  return { type: 'text', subtype: 'plain', mimeType: 'text/plain', params: paramsOf([['charset', 'us-ascii']]) };
}

export function parseContentType(value: string | undefined): ContentType {
  if (value === undefined) return defaultContentType();
  const s = new Scanner(stripComments(value));
  s.skipWhitespace();
  const type = s.token().toLowerCase();
  s.skipWhitespace();
  if (!type || !s.eat('/')) return defaultContentType();
  s.skipWhitespace();
  const subtype = s.token().toLowerCase();
  if (!subtype) return defaultContentType();
  return { type, subtype, mimeType: `${type}/${subtype}`, params: assembleParams(readParams(s)) };
}

/** Raw name=value pairs after the type; a malformed parameter is skipped, not fatal. */
function readParams(s: Scanner): [string, string][] {
  const raw: [string, string][] = [];
  while (s.skipPast(';')) {
    s.skipWhitespace();
    const name = s.token().toLowerCase();
    s.skipWhitespace();
    if (!name || !s.eat('=')) continue;
    s.skipWhitespace();
    raw.push([name, s.peek() === '"' ? s.quotedString() : s.untilSemicolon()]);
  }
  return raw;
}

interface Section {
  value: string;
  encoded: boolean;
}

/**
 * Merges simple parameters with RFC 2231 ones. name*=, name*0=, name*0*= ... are collected per
 * name and joined in order up to the first missing section; an RFC 2231 value wins over a
 * plain one of the same name (it is the one written for capable readers). First occurrence wins.
 */
function assembleParams(raw: [string, string][]): Record<string, string> {
  const simple: [string, string][] = [];
  const extended = new Map<string, Map<number, Section>>();
  for (const [name, value] of raw) {
    const m = /^(.+?)(?:\*(\d+))?(\*)?$/.exec(name)!;
    if (m[2] === undefined && m[3] === undefined) {
      simple.push([name, value]);
      continue;
    }
    const sections = extended.get(m[1]) ?? new Map<number, Section>();
    extended.set(m[1], sections);
    const index = m[2] === undefined ? 0 : Number(m[2]);
    if (!sections.has(index)) sections.set(index, { value, encoded: m[3] !== undefined });
  }
  const params = paramsOf(simple);
  for (const [name, sections] of extended) if (sections.has(0)) params[name] = joinSections(sections);
  return params;
}

function paramsOf(pairs: [string, string][]): Record<string, string> {
  const params: Record<string, string> = Object.create(null);
  for (const [name, value] of pairs) if (!(name in params)) params[name] = value;
  return params;
}

/** Joins sections 0..n; runs of encoded sections are decoded together, as a character may span two. */
function joinSections(sections: Map<number, Section>): string {
  let charset = '';
  let text = '';
  let pending: Buffer[] = [];
  const flush = (): void => {
    if (pending.length) text += decodeParamBytes(Buffer.concat(pending), charset);
    pending = [];
  };
  for (let i = 0; sections.has(i); i++) {
    const { value, encoded } = sections.get(i)!;
    if (!encoded) {
      flush();
      text += value;
      continue;
    }
    let data = value;
    if (i === 0) {
      const m = /^([^']*)'[^']*'([\s\S]*)$/.exec(value);
      if (m) [, charset, data] = m;
    }
    pending.push(percentDecode(data));
  }
  flush();
  return text;
}

function decodeParamBytes(bytes: Buffer, charset: string): string {
  return decodeCharset(bytes, charset) ?? decodeHeaderBytes(bytes);
}

/** %XX to octets; a '%' not followed by two hex digits is kept as it is. */
function percentDecode(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.indexOf(0x25) === -1) return bytes;
  const out = Buffer.allocUnsafe(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    const hex = bytes[i] === 0x25 && i + 2 < bytes.length ? hexByte(bytes[i + 1], bytes[i + 2]) : -1;
    if (hex >= 0) {
      out[n++] = hex;
      i += 2;
    } else {
      out[n++] = bytes[i];
    }
  }
  return out.subarray(0, n);
}

/** RFC 822 comments "(...)" (nested, with quoted-pairs) outside quoted strings become a space. */
function stripComments(value: string): string {
  if (value.indexOf('(') === -1) return value;
  let out = '';
  let depth = 0;
  let inQuotes = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (depth === 0 && c === '"') inQuotes = !inQuotes;
    if ((inQuotes || depth > 0) && c === '\\') {
      if (depth === 0) out += c + (value[i + 1] ?? '');
      i++;
    } else if (!inQuotes && c === '(') {
      depth++;
    } else if (depth > 0) {
      if (c === ')' && --depth === 0) out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

class Scanner {
  pos = 0;
  constructor(readonly text: string) {}

  peek(): string | undefined {
    return this.text[this.pos];
  }

  eat(c: string): boolean {
    if (this.text[this.pos] !== c) return false;
    this.pos++;
    return true;
  }

  skipWhitespace(): void {
    while (this.pos < this.text.length && ' \t\r\n'.includes(this.text[this.pos])) this.pos++;
  }

  token(): string {
    const start = this.pos;
    while (this.pos < this.text.length && TOKEN_CHAR.test(this.text[this.pos])) this.pos++;
    return this.text.slice(start, this.pos);
  }

  /** Moves past the next ';' outside quoted strings; false at the end of the text. */
  skipPast(c: string): boolean {
    while (this.pos < this.text.length) {
      const ch = this.text[this.pos];
      if (ch === '"') this.quotedString();
      else if (ch === c) {
        this.pos++;
        return true;
      } else this.pos++;
    }
    return false;
  }

  /** RFC 822 quoted-string at the current '"', unquoted; an unterminated one runs to the end. */
  quotedString(): string {
    let out = '';
    this.pos++;
    while (this.pos < this.text.length) {
      const c = this.text[this.pos++];
      if (c === '"') break;
      out += c === '\\' && this.pos < this.text.length ? this.text[this.pos++] : c;
    }
    return out;
  }

  /** A liberal unquoted value: everything up to ';', trailing whitespace dropped. */
  untilSemicolon(): string {
    const end = this.text.indexOf(';', this.pos);
    const stop = end === -1 ? this.text.length : end;
    const value = trimWhitespace(this.text.slice(this.pos, stop));
    this.pos = stop;
    return value;
  }
}

/**
 * A Content-Type value for writing: parameters that are tokens stay bare, others are quoted,
 * and any value outside printable ASCII is RFC 2231-encoded as UTF-8. Folds before a parameter
 * that would take the line past 78 characters (counting the "Content-Type: " prefix).
 */
export function formatContentType(mimeType: string, params: Record<string, string> = {}): string {
  let out = mimeType;
  let lineLength = 'Content-Type: '.length + mimeType.length;
  for (const [name, value] of Object.entries(params)) {
    const param = formatParam(name, value);
    if (lineLength + 2 + param.length > 78) {
      out += ';\r\n ';
      lineLength = 1;
    } else {
      out += '; ';
      lineLength += 2;
    }
    out += param;
    lineLength += param.length;
  }
  return out;
}

function formatParam(name: string, value: string): string {
  if (TOKEN.test(value)) return `${name}=${value}`;
  if (/^[ -~]*$/.test(value)) return `${name}="${value.replace(/["\\]/g, '\\$&')}"`;
  const encoded = [...Buffer.from(value, 'utf8')]
    .map((b) => (b < 0x80 && /[!#$&+\-.^_`{|}~0-9A-Za-z]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`))
    .join('');
  return `${name}*=utf-8''${encoded}`;
}
