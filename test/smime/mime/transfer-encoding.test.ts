import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  base64Lines, decodeBase64Body, decodeQuotedPrintable, decodeTransferEncoding, encodeQuotedPrintable, MimeError,
} from '../../../src/smime/mime';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** The expected encoding: Buffer's own base64, cut into 76-character lines, each ending in CRLF. */
function wrapped(data: Buffer): string {
  return (data.toString('base64').match(/.{1,76}/g) ?? []).map((line) => `${line}\r\n`).join('');
}

function* inPieces(data: Buffer, sizes: number[]): Generator<Buffer> {
  for (let at = 0, i = 0; at < data.length; i++) {
    const size = sizes[i % sizes.length];
    yield data.subarray(at, at + size);
    at += size;
  }
}

test('base64Lines equals Buffer base64 wrapped at 76, for every length around line and group edges', () => {
  for (let length = 0; length <= 3 * 57 + 4; length++) {
    const data = randomBytes(length);
    assert.equal(Buffer.concat([...base64Lines([data])]).toString('latin1'), wrapped(data), `length ${length}`);
  }
});

test('base64Lines carries partial groups and lines across odd chunk sizes', () => {
  const data = randomBytes(200_003);
  const expected = wrapped(data);
  for (const sizes of [[1], [2], [56], [57], [58], [1, 3, 5, 7, 11], [1000, 1], [65_536], [0, 7]]) {
    assert.equal(Buffer.concat([...base64Lines(inPieces(data, sizes))]).toString('latin1'), expected, `chunks of ${sizes.join(',')}`);
  }
});

test('base64Lines yields pieces of about 64 KB even from tiny chunks, and never reuses one', () => {
  const data = randomBytes(300_000);
  const pieces = [...base64Lines(inPieces(data, [3]))];
  assert.ok(pieces.length <= 9, `${pieces.length} pieces`);
  // The first piece is sized for a small message (64 lines); the rest are full.
  assert.equal(pieces[0].length, 64 * 78);
  assert.ok(pieces.slice(1, -1).every((p) => p.length >= 60_000 && p.length <= 66_000), pieces.map((p) => p.length).join());
  const small = [...base64Lines([randomBytes(2000)])];
  assert.equal(small.length, 1);
  assert.ok(small[0].buffer.byteLength < 8192, 'a small input does not cost a 64 KB buffer');
  assert.equal(Buffer.concat(pieces).toString('latin1'), wrapped(data), 'earlier pieces were not overwritten later');
  assert.deepEqual([...base64Lines([])], []);
  assert.deepEqual([...base64Lines([b(''), b('')])], []);
});

test('base64Lines does not keep a reference to a chunk the caller may reuse', () => {
  const chunk = b('abcd');
  const gen = base64Lines((function* () {
    yield chunk;
    chunk.fill(0); // the caller recycles its buffer after handing it over
    yield b('');
  })());
  assert.equal(Buffer.concat([...gen]).toString('latin1'), wrapped(b('abcd')));
});

test('decodeBase64Body ignores whitespace anywhere and accepts missing padding', () => {
  assert.equal(decodeBase64Body(b('SGVs\r\nbG8g\t d29y bGQ=\r\n')).toString(), 'Hello world');
  assert.equal(decodeBase64Body(b('SGVsbG8gd29ybGQ')).toString(), 'Hello world');
  assert.equal(decodeBase64Body(b('')).length, 0);
  assert.equal(decodeBase64Body(b('\r\n \r\n')).length, 0);
  const data = randomBytes(1_000_000); // several native decode blocks, cut at group edges
  assert.deepEqual(decodeBase64Body(Buffer.concat([...base64Lines([data])])), data);
  assert.deepEqual(decodeBase64Body(b(data.toString('base64').replace(/(.{1,61})/g, '$1 \r\n'))), data, 'lines not a multiple of 4');
});

test('decodeBase64Body rejects characters outside the alphabet instead of dropping them', () => {
  const cases: [string, RegExp][] = [
    ['SGVs*bG8=', /invalid character 0x2a in base64 at offset 4/],
    ['SGVsbG8-', /0x2d/],
    ['SGVsbG8_', /0x5f/],
    ['SGVs\0bG8=', /0x00/],
    ['SGVs\xe9bG8=', /0xe9/],
    ['SGVsbA==SGVs', /data after padding at offset 8/],
    ['SGVsb', /truncated/],
    ['SG===', /wrongly padded/],
  ];
  for (const [input, message] of cases) assert.throws(() => decodeBase64Body(b(input)), (e: unknown) => e instanceof MimeError && message.test(e.message), input);
});

test('quoted-printable: 8-bit, NUL and "=" encoded, CRLF kept as a hard break, lines at most 76', () => {
  assert.equal(encodeQuotedPrintable(b('caf\xe9 = 1\0\r\nok\r\n')).toString(), 'caf=E9 =3D 1=00\r\nok\r\n');
  const long = encodeQuotedPrintable(Buffer.alloc(1000, '\xe9', 'latin1')).toString();
  const lines = long.split('\r\n');
  assert.ok(lines.every((line) => line.length <= 76), 'encoded lines too long');
  assert.ok(lines.slice(0, -1).every((line) => line.endsWith('=')), 'soft breaks');
  assert.deepEqual(decodeQuotedPrintable(b(long)), Buffer.alloc(1000, '\xe9', 'latin1'));
});

test('quoted-printable: trailing whitespace, "From " and "." at a line start are protected', () => {
  assert.equal(encodeQuotedPrintable(b('a \r\nb\t\r\nc ')).toString(), 'a=20\r\nb=09\r\nc=20');
  assert.equal(encodeQuotedPrintable(b('From here\r\nFrom\r\nFromage\r\n.\r\n..x\r\na.b\r\n')).toString(),
    '=46rom here\r\nFrom\r\nFromage\r\n=2E\r\n=2E.x\r\na.b\r\n');
  // A soft break that would put "From " or "." at the start of a line protects it as well.
  const softFrom = encodeQuotedPrintable(b(`${'x'.repeat(75)}From me`)).toString();
  assert.equal(softFrom, `${'x'.repeat(75)}=\r\n=46rom me`);
  const softDot = encodeQuotedPrintable(b(`${'x'.repeat(75)}.y`)).toString();
  assert.equal(softDot, `${'x'.repeat(75)}=\r\n=2Ey`);
  assert.equal(encodeQuotedPrintable(b(`${'x'.repeat(75)}.`)).toString(), `${'x'.repeat(75)}.`, 'the last character may use column 76');
});

test('quoted-printable round-trips arbitrary bytes, bare CR and LF included', () => {
  for (let round = 0; round < 50; round++) {
    const data = randomBytes(round * 97);
    const encoded = encodeQuotedPrintable(data);
    assert.ok(/^[\t\x20-\x7e\r\n]*$/.test(encoded.toString('latin1')), 'printable ASCII (and tab) only');
    assert.ok(encoded.toString('latin1').split('\r\n').every((line) => line.length <= 76));
    assert.deepEqual(decodeQuotedPrintable(encoded), data);
  }
});

test('quoted-printable decoding is liberal: lowercase hex, padded soft breaks, stray "=", transport whitespace', () => {
  assert.equal(decodeQuotedPrintable(b('caf=e9 =\r\nend')).toString('latin1'), 'caf\xe9 end');
  assert.equal(decodeQuotedPrintable(b('soft= \t\r\nbreak=')).toString(), 'softbreak');
  assert.equal(decodeQuotedPrintable(b('a=zz=4=')).toString(), 'a=zz=4');
  assert.equal(decodeQuotedPrintable(b('trailing  \r\nspace\t\r\nkept in  middle')).toString(), 'trailing\r\nspace\r\nkept in  middle');
  assert.equal(decodeQuotedPrintable(b('lf soft=\nbreak')).toString(), 'lf softbreak');
});

test('decodeTransferEncoding: by name, case and comments ignored; identity returns the same Buffer', () => {
  const body = b('caf\xe9');
  for (const cte of [undefined, '', '7bit', '8BIT', ' binary ']) assert.equal(decodeTransferEncoding(body, cte), body, String(cte));
  assert.equal(decodeTransferEncoding(b('Y2Fm6Q=='), 'Base64').toString('latin1'), 'caf\xe9');
  assert.equal(decodeTransferEncoding(b('caf=E9'), 'Quoted-Printable (for you)').toString('latin1'), 'caf\xe9');
  assert.throws(() => decodeTransferEncoding(body, 'x-uuencode'), /unsupported Content-Transfer-Encoding: x-uuencode/);
});

test('a hostile Content-Transfer-Encoding value is named in linear time', () => {
  const start = process.hrtime.bigint();
  const body = b('x');
  assert.equal(decodeTransferEncoding(body, '('.repeat(50_000)), body, 'nothing but a comment: the 7bit default');
  assert.equal(decodeTransferEncoding(b('YQ=='), ` base64${' '.repeat(50_000)}x`).toString(), 'a');
  assert.ok(Number(process.hrtime.bigint() - start) / 1e6 < 100);
});
