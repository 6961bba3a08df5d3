import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  decodeTransferEncoding, headerValue, is7bitSafe, make7bit, MimeError, needs8bitHeaders, parseContentType, parseEntity,
  splitMultipart,
} from '../../../src/smime/mime';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const cat = (...parts: (string | Buffer)[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? b(p) : p)));

interface Leaf {
  path: string;
  mimeType: string;
  cte: string;
  headers: string;
  decoded: Buffer;
}

/** Every leaf of an entity, read back with the public API (multipart and message/rfc822 are descended into). */
function leaves(entity: Buffer, path = 'root', top = true): Leaf[] {
  const e = parseEntity(entity, { mboxFrom: top });
  const ct = parseContentType(headerValue(e.headers, 'content-type'));
  const cte = (headerValue(e.headers, 'content-transfer-encoding') ?? '7bit').toLowerCase();
  if (ct.type === 'multipart') return splitMultipart(e.body, ct.params.boundary).parts.flatMap((p, i) => leaves(p, `${path}.${i}`, false));
  if (ct.mimeType === 'message/rfc822') return leaves(e.body, `${path}.msg`, false);
  const headers = Buffer.concat(e.headers.map((h) => h.raw)).toString('latin1');
  return [{ path, mimeType: ct.mimeType, cte, headers, decoded: decodeTransferEncoding(e.body, cte) }];
}

/** What RFC 8551 3.1.3 asks of a signed entity: 7-bit bytes, short lines, only 7bit/QP/base64 leaves. */
function assert7bitClean(entity: Buffer): void {
  assert.ok(is7bitSafe(entity), 'whole entity is 7-bit with lines <= 998');
  for (const leaf of leaves(entity)) assert.ok(['7bit', 'quoted-printable', 'base64'].includes(leaf.cte), `${leaf.path}: ${leaf.cte}`);
}

/** The same leaves with the same decoded content, whatever the encoding. */
function assertSameContent(before: Buffer, after: Buffer): void {
  const a = leaves(before);
  const z = leaves(after);
  assert.deepEqual(z.map((l) => [l.path, l.mimeType]), a.map((l) => [l.path, l.mimeType]));
  a.forEach((leaf, i) => assert.ok(z[i].decoded.equals(leaf.decoded), `${leaf.path}: decoded content differs`));
}

const LATIN1_TEXT = 'Cr\xe8me br\xfbl\xe9e for the caf\xe9.\r\nFrom the kitchen\r\n.\r\ntrailing space \r\n=== 100% ===\r\n';

test('an entity that is already 7-bit is returned as the same Buffer', () => {
  const cases = [
    b('Content-Type: text/plain\r\n\r\nplain ASCII\r\n'),
    b('\r\nno headers at all\r\n'),
    b('Content-Type: text/plain\r\n'),
    cat('Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\ntext\r\n--b\r\nContent-Type: application/octet-stream\r\n',
      'Content-Transfer-Encoding: base64\r\n\r\n', randomBytes(5000).toString('base64').replace(/.{76}/g, '$&\r\n'), '\r\n--b--\r\n'),
    b('Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nascii\r\n'),
  ];
  for (const entity of cases) assert.equal(make7bit(entity), entity, entity.toString('latin1').slice(0, 40));
});

test('8-bit text becomes quoted-printable that decodes back byte-exact; other header fields untouched', () => {
  const body = b(LATIN1_TEXT);
  const entity = cat('Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\nContent-Disposition: inline\r\n\r\n', body);
  const out = make7bit(entity);
  assert7bitClean(out);
  const e = parseEntity(out);
  assert.deepEqual(e.headers.map((h) => h.raw.toString()), [
    'Content-Type: text/plain; charset=iso-8859-1\r\n', 'Content-Transfer-Encoding: quoted-printable\r\n', 'Content-Disposition: inline\r\n',
  ]);
  assert.equal(e.body.toString(), 'Cr=E8me br=FBl=E9e for the caf=E9.\r\n=46rom the kitchen\r\n=2E\r\ntrailing space=20\r\n=3D=3D=3D 100% =3D=3D=3D\r\n');
  assert.deepEqual(decodeTransferEncoding(e.body, 'quoted-printable'), body);
  assert.equal(make7bit(out), out, 'idempotent');
});

test('a binary attachment becomes base64 that decodes back byte-exact; the rest of the multipart is untouched', () => {
  const attachment = Buffer.concat([randomBytes(3000), b('\0\xff\r\n\r\n--b\r\n'), randomBytes(10)]);
  const textPart = 'Content-Type: text/plain\r\n\r\nhello\r\n';
  const entity = cat('Content-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n--b\r\n', textPart,
    '\r\n--b \r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n', attachment, '\r\n--b--\r\nepilogue\r\n');
  // The attachment contains "--b" at a line start; splitting sees it as a delimiter, as any reader would.
  const out = make7bit(entity);
  assert7bitClean(out);
  assertSameContent(entity, out);
  const text = out.toString('latin1');
  assert.ok(text.startsWith(`Content-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n--b\r\n${textPart}\r\n--b \r\n`), 'unchanged prefix, padding kept');
  assert.ok(text.endsWith('\r\n--b--\r\nepilogue\r\n'));
});

test('a binary attachment without delimiter look-alikes survives exactly', () => {
  const attachment = Buffer.from([...randomBytes(100_000)].map((x) => (x === 0x2d ? 0 : x))); // no '-' at all
  const entity = cat('Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: image/png\r\n\r\n', attachment, '\r\n--b--\r\n');
  const out = make7bit(entity);
  assert7bitClean(out);
  const [leaf] = leaves(out);
  assert.equal(leaf.cte, 'base64');
  assert.deepEqual(leaf.decoded, attachment);
  assert.ok(leaf.headers.endsWith('Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n'), 'added at the end of the part header');
});

test('lines over 998 octets are re-encoded even when they are ASCII', () => {
  const long = `${'a'.repeat(2000)}\r\nshort\r\n`;
  const text = make7bit(b(`Content-Type: text/plain\r\n\r\n${long}`));
  assert7bitClean(text);
  assert.equal(leaves(text)[0].decoded.toString(), long);
  const other = make7bit(b(`Content-Type: application/json\r\n\r\n${long}`));
  assert.equal(leaves(other)[0].cte, 'base64');
  assert.equal(leaves(other)[0].decoded.toString(), long);
  const exactly998 = b(`Content-Type: text/plain\r\n\r\n${'a'.repeat(998)}\r\n`);
  assert.equal(make7bit(exactly998), exactly998, '998 octets is still fine');
});

test('a part declared 8bit or binary whose content is 7-bit is only relabelled', () => {
  const entity = b('Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\nX-Other: 1\r\n\r\nplain\r\n');
  assert.equal(make7bit(entity).toString(), 'Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\nX-Other: 1\r\n\r\nplain\r\n');
  const dup = b('Content-Transfer-Encoding: binary\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nplain');
  assert.equal(make7bit(dup).toString(), 'Content-Transfer-Encoding: 7bit\r\nContent-Type: text/plain\r\n\r\nplain', 'duplicates removed');
});

test('nested multiparts and message/rfc822: inner parts re-encoded, types and boundaries kept', () => {
  const innerMessage = cat('From: a@a.example\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n',
    '--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n', Buffer.from('Grüße\r\n', 'utf8'),
    '\r\n--inner\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n', Buffer.from('<p>Grüße</p>', 'utf8'),
    '\r\n--inner--\r\n');
  const entity = cat('Content-Type: multipart/mixed; boundary=outer\r\n\r\n',
    '--outer\r\nContent-Type: multipart/related; boundary=related\r\n\r\n--related\r\nContent-Type: text/plain\r\n\r\n', LATIN1_TEXT,
    '\r\n--related\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\x02\xff\r\n--related--\r\n',
    '\r\n--outer\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n', innerMessage, '\r\n--outer--\r\n');
  const out = make7bit(entity);
  assert7bitClean(out);
  assertSameContent(entity, out);
  assert.deepEqual(leaves(out).map((l) => [l.path, l.cte]), [
    ['root.0.0', 'quoted-printable'], ['root.0.1', 'base64'], ['root.1.msg.0', 'quoted-printable'], ['root.1.msg.1', 'quoted-printable'],
  ]);
  const rfc822 = parseEntity(splitMultipart(parseEntity(out).body, 'outer').parts[1]);
  assert.equal(headerValue(rfc822.headers, 'content-type'), 'message/rfc822', 'not turned into base64');
  assert.equal(headerValue(rfc822.headers, 'content-transfer-encoding'), '7bit', 'relabelled once its content is 7-bit');
  assert.ok(rfc822.body.toString().startsWith('From: a@a.example\r\nSubject: inner\r\n'), 'inner message header untouched');
});

test('multipart/digest parts default to message/rfc822 and are descended into', () => {
  const entity = cat('Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\nContent-Type: text/plain\r\n\r\n', LATIN1_TEXT, '\r\n--d--\r\n');
  const out = make7bit(entity);
  assert7bitClean(out);
  const part = splitMultipart(parseEntity(out).body, 'd').parts[0];
  assert.ok(part.toString().startsWith('\r\nSubject: one\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'), part.toString());
});

test('multipart/signed and multipart/encrypted inside are never changed', () => {
  const signed = cat('Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary=s\r\n\r\n--s\r\n',
    'Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n', LATIN1_TEXT,
    '\r\n--s\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIB\r\n--s--\r\n');
  assert.equal(make7bit(signed), signed);
  const entity = cat('Content-Type: multipart/mixed; boundary=m\r\nContent-Transfer-Encoding: 8bit\r\n\r\n--m\r\n', signed, '\r\n--m\r\nContent-Type: text/plain\r\n\r\n', LATIN1_TEXT, '\r\n--m--\r\n');
  const out = make7bit(entity);
  const parts = splitMultipart(parseEntity(out).body, 'm').parts;
  assert.deepEqual(parts[0], signed, 'signed part byte-identical');
  assert.ok(parts[1].toString().includes('quoted-printable'), 'its sibling is still fixed');
  assert.equal(headerValue(parseEntity(out).headers, 'content-transfer-encoding'), '8bit', 'label stays true: 8-bit data remains inside');
});

test('entities without headers, or with the encoding field missing, get one added in the right place', () => {
  assert.equal(make7bit(b('\r\nt\xe9xt\r\n')).toString(), 'Content-Transfer-Encoding: quoted-printable\r\n\r\nt=E9xt\r\n');
  assert.equal(make7bit(b('t\xe9xt with no header\r\n')).toString(), 'Content-Transfer-Encoding: quoted-printable\r\n\r\nt=E9xt with no header\r\n');
  assert.equal(make7bit(b('From x@y Mon Jan 1 2026\r\nSubject: s\r\n\r\nt\xe9xt')).toString(),
    'From x@y Mon Jan 1 2026\r\nSubject: s\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nt=E9xt', 'an mbox From_ line is kept where it was');
});

test('base64 and quoted-printable parts with long lines or raw 8-bit octets are re-encoded in their own encoding', () => {
  const data = randomBytes(3000);
  const oneLine = b(`Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n${data.toString('base64')}\r\n`);
  const fixed = make7bit(oneLine);
  assert7bitClean(fixed);
  assert.deepEqual(leaves(fixed)[0].decoded, data);
  const rawQp = b('Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf\xe9 and caf=E9\r\n');
  const fixedQp = make7bit(rawQp);
  assert.equal(parseEntity(fixedQp).body.toString(), 'caf=E9 and caf=E9\r\n');
});

test('what cannot be fixed losslessly is a MimeError', () => {
  assert.throws(() => make7bit(b('Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBO\xff\xfe\r\n')), /invalid character 0xff in base64/);
  assert.throws(() => make7bit(b('Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\xe9\r\n')), (e: unknown) => e instanceof MimeError && /x-uuencode/.test(e.message));
  // A boundary that never occurs: all content would count as preamble, and must not be dropped.
  assert.throws(() => make7bit(b('Content-Type: multipart/mixed; boundary=wrong\r\n\r\n--right\r\n\r\nt\xe9xt\r\n--right--\r\n')),
    /multipart\/mixed body has no delimiter for its boundary and holds 8-bit data/);
  const asciiWrong = b('Content-Type: multipart/mixed; boundary=wrong\r\n\r\n--right\r\n\r\ntext\r\n--right--\r\n');
  assert.equal(make7bit(asciiWrong), asciiWrong);
});

test('an 8-bit preamble or epilogue is dropped (readers ignore them), a 7-bit one kept', () => {
  const entity = b('Content-Type: multipart/mixed; boundary=b\r\n\r\npr\xe9amble\r\n--b\r\n\r\nx\r\n--b--\r\n\xe9pilogue\r\n');
  assert.equal(make7bit(entity).toString(), 'Content-Type: multipart/mixed; boundary=b\r\n\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n');
});

test('8-bit header fields are left alone and reported by needs8bitHeaders', () => {
  const nested = cat('Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename="',
    Buffer.from('Grüße.txt', 'utf8'), '"\r\n\r\nascii\r\n--b--\r\n');
  assert.equal(make7bit(nested), nested);
  assert.equal(needs8bitHeaders(nested), true);
  const inMessage = cat('Content-Type: message/rfc822\r\n\r\nSubject: ', Buffer.from('Grüße', 'utf8'), '\r\n\r\nascii\r\n');
  assert.equal(needs8bitHeaders(inMessage), true);
  assert.equal(needs8bitHeaders(b('Content-Type: text/plain\r\n\r\nt\xe9xt in the body only\r\n')), false);
  assert.equal(needs8bitHeaders(b('Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nSubject: \xe9\r\n')), false, 'not a header when encoded');
});

test('nesting is bounded: a MIME bomb is a MimeError, not a stack overflow', () => {
  let entity = b('Content-Type: text/plain\r\n\r\n\xe9\r\n');
  for (let depth = 0; depth < 40; depth++) entity = cat(`Content-Type: multipart/mixed; boundary=b${depth}\r\n\r\n--b${depth}\r\n`, entity, `\r\n--b${depth}--\r\n`);
  assert.throws(() => make7bit(entity), /MIME nesting deeper than 32 levels/);
  assert.throws(() => needs8bitHeaders(entity), /MIME nesting deeper than 32 levels/);
  assert7bitClean(make7bit(entity, { maxDepth: 64 }));
});

test('is7bitSafe: ASCII without NUL, lines of at most 998 octets before the CRLF', () => {
  const line = (n: number): string => `${'a'.repeat(n)}\r\n`;
  assert.ok(is7bitSafe(b('')));
  assert.ok(is7bitSafe(b(line(998))));
  assert.ok(is7bitSafe(b(line(10) + line(998) + line(998) + 'a'.repeat(998))));
  assert.ok(!is7bitSafe(b(line(999))));
  assert.ok(!is7bitSafe(b('a'.repeat(999))), 'a last line without CRLF counts too');
  assert.ok(!is7bitSafe(b(line(5).repeat(1000) + line(999) + line(5))), 'a long line in the middle');
  assert.ok(!is7bitSafe(b('nul\0inside\r\n')));
  assert.ok(!is7bitSafe(b('caf\xe9\r\n')));
  assert.equal(leaves(make7bit(b('Content-Type: text/plain\r\n\r\nnul\0\r\n')))[0].cte, 'quoted-printable', 'NUL alone makes a part unsafe');
});
