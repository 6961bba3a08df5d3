/**
 * The interop message corpus: complete CRLF RFC 5322 messages with From, To, Subject, Date and
 * Message-ID, chosen for the things that break S/MIME in the wild:
 *   plain       baseline 7-bit text
 *   eightbit    UTF-8 body sent as Content-Transfer-Encoding: 8bit
 *   longline    a line over 998 octets (illegal on the wire: the signer must re-encode it)
 *   fromdot     lines starting with "From " (mbox mangling) and "." (SMTP dot-stuffing)
 *   nested      multipart/mixed > multipart/alternative + a binary attachment (base64)
 *   i18n        RFC 2047 encoded non-ASCII Subject and From
 *   empty       an empty body
 *
 * Each message is kept as its parts: the outer (RFC 5322) headers, which stay outside the
 * S/MIME layer, and the MIME entity (content headers + body), which is what gets protected.
 */
import { createHash } from 'node:crypto';
import { HeaderList } from './mime-der';

export interface TestMessage {
  name: string;
  /** From, To, Subject, Date, Message-ID as they appear on the wire. */
  outer: HeaderList;
  /** The MIME entity that gets signed/encrypted: Content-* headers, empty line, body. */
  entity: Buffer;
  /** The complete message: outer headers, MIME-Version, then the entity. */
  full: Buffer;
}

export const DEFAULT_FROM = 'user@a.example';
const TO = 'Gateway B <gateway@b.example>';
const DATE = 'Tue, 05 Mar 2024 10:15:00 +0100';

const crlf = (lines: string[]): string => lines.map((l) => l + '\r\n').join('');
const utf8AsLatin1 = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

/** Deterministic pseudo-random bytes, so a failing attachment can be reproduced. */
export function pseudoRandomBytes(length: number, seed: string): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0; blocks.length * 32 < length; i++) blocks.push(createHash('sha256').update(`${seed}:${i}`).digest());
  return Buffer.concat(blocks).subarray(0, length);
}

function base64Body(data: Buffer): string {
  const b64 = data.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  return crlf(lines);
}

function rfc2047B(text: string): string {
  return `=?UTF-8?B?${Buffer.from(text, 'utf8').toString('base64')}?=`;
}

interface Spec {
  name: string;
  subject: string;
  displayName?: string;
  /** Entity text; UTF-8 must already be latin1-encoded bytes (see utf8AsLatin1). */
  entity: string;
}

const SPECS: Spec[] = [
  {
    name: 'plain',
    subject: 'Plain 7-bit test message',
    entity: crlf([
      'Content-Type: text/plain; charset=us-ascii',
      'Content-Transfer-Encoding: 7bit',
      '',
      'Hello Gateway B,',
      '',
      'this is a plain 7-bit test message.',
      '-- ',
      'User A',
    ]),
  },
  {
    name: 'eightbit',
    subject: '8-bit UTF-8 body',
    entity: crlf([
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 8bit',
      '',
      utf8AsLatin1('Grüße aus Köln! Ærøskøbing, Þórshöfn, Ελληνικά, 日本語, emoji 🔐.'),
      utf8AsLatin1('Prices: 12,50 € / ½ kg; ±5 °C; «quotes» — dash.'),
      utf8AsLatin1('Trailing non-ASCII at line end: ä'),
    ]),
  },
  {
    name: 'longline',
    subject: 'A line over 998 octets',
    entity: crlf([
      'Content-Type: text/plain; charset=us-ascii',
      '',
      'The next line is 2500 octets long, which SMTP does not allow unencoded:',
      Array.from({ length: 250 }, (_, i) => `word${String(i).padStart(5, '0')} `.slice(0, 10)).join(''),
      'And this short line follows it.',
    ]),
  },
  {
    name: 'fromdot',
    subject: 'Lines starting with From and dot',
    entity: crlf([
      'Content-Type: text/plain; charset=us-ascii',
      'Content-Transfer-Encoding: 7bit',
      '',
      'From the desk of User A: mbox readers mangle this line into ">From".',
      '.',
      '. a line starting with a dot',
      '..two dots',
      'From here on, another From line.',
      '>From an already quoted line',
      '.',
    ]),
  },
  {
    name: 'nested',
    subject: 'Nested multipart with a binary attachment',
    entity:
      crlf([
        'Content-Type: multipart/mixed; boundary="=_mixed_b7c1"',
        '',
        'This is a multi-part message in MIME format.',
        '--=_mixed_b7c1',
        'Content-Type: multipart/alternative; boundary="=_alt_42d9"',
        '',
        '--=_alt_42d9',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: quoted-printable',
        '',
        'Hallo, anbei die Datei. Gr=C3=BC=C3=9Fe',
        '--=_alt_42d9',
        'Content-Type: text/html; charset=utf-8',
        'Content-Transfer-Encoding: 8bit',
        '',
        utf8AsLatin1('<html><body><p>Hallo, anbei die <b>Datei</b>. Grüße</p></body></html>'),
        '--=_alt_42d9--',
        '',
        '--=_mixed_b7c1',
        'Content-Type: application/octet-stream; name="random.bin"',
        'Content-Transfer-Encoding: base64',
        'Content-Disposition: attachment; filename="random.bin"',
        '',
      ]) +
      // Every byte value at least once, then pseudo-random bytes.
      base64Body(Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), pseudoRandomBytes(3000, 'nested')])) +
      crlf(['--=_mixed_b7c1--']),
  },
  {
    name: 'i18n',
    subject: rfc2047B('Prüfung: verschlüsselte Grüße ✓'),
    displayName: '=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?=',
    entity: crlf([
      'Content-Type: text/plain; charset=us-ascii',
      'Content-Transfer-Encoding: 7bit',
      '',
      'The Subject and From of this message are RFC 2047 encoded.',
    ]),
  },
  {
    name: 'empty',
    subject: 'Empty body',
    entity: crlf(['Content-Type: text/plain; charset=us-ascii', '']),
  },
];

function build(spec: Spec, from: string): TestMessage {
  const outer: HeaderList = [
    ['From', spec.displayName ? `${spec.displayName} <${from}>` : `User A <${from}>`],
    ['To', TO],
    ['Subject', spec.subject],
    ['Date', DATE],
    ['Message-ID', `<interop-${spec.name}.${from.replace(/[^a-z0-9]/gi, '-')}@a.example>`],
  ];
  const entity = Buffer.from(spec.entity, 'latin1');
  const head = outer.map(([n, v]) => `${n}: ${v}\r\n`).join('') + 'MIME-Version: 1.0\r\n';
  return { name: spec.name, outer, entity, full: Buffer.concat([Buffer.from(head, 'latin1'), entity]) };
}

export const MESSAGE_NAMES = SPECS.map((s) => s.name);

/** The whole corpus, From the given address (it must match the signer's certificate). */
export function corpus(from = DEFAULT_FROM): TestMessage[] {
  return SPECS.map((s) => build(s, from));
}

export function message(name: string, from = DEFAULT_FROM): TestMessage {
  const spec = SPECS.find((s) => s.name === name);
  if (!spec) throw new Error(`no test message ${name}`);
  return build(spec, from);
}

/** The subset used against the slower peers (gpgsm, NSS): the encodings most likely to break. */
export const REPRESENTATIVE = ['eightbit', 'longline', 'nested', 'empty'];
