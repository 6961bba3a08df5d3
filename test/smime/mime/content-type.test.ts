import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { formatContentType, parseContentType, type ContentType } from '../../../src/smime/mime';

/** Params as a plain object, for deepEqual (the parser returns a prototype-less one). */
const plain = (ct: ContentType): { mimeType: string; params: Record<string, string> } => ({ mimeType: ct.mimeType, params: { ...ct.params } });

test('type, subtype and parameters; names lowercased, values kept', () => {
  const ct = parseContentType('Multipart/Signed; Protocol="application/pkcs7-signature"; MICALG=sha-256; boundary="AbC=_x"');
  assert.equal(ct.type, 'multipart');
  assert.equal(ct.subtype, 'signed');
  assert.deepEqual(plain(ct), {
    mimeType: 'multipart/signed',
    params: { protocol: 'application/pkcs7-signature', micalg: 'sha-256', boundary: 'AbC=_x' },
  });
});

test('quoted strings: escapes, semicolons and spaces inside, unterminated', () => {
  assert.deepEqual(plain(parseContentType('text/plain; name="a \\"quoted\\" \\\\ b; c"; x=1')).params, { name: 'a "quoted" \\ b; c', x: '1' });
  assert.deepEqual(plain(parseContentType('text/plain; name="runs to the end')).params, { name: 'runs to the end' });
});

test('liberal: unquoted tspecials, whitespace, comments, junk and empty parameters', () => {
  assert.equal(parseContentType('multipart/mixed; boundary=----=_Part_0_1.2').params.boundary, '----=_Part_0_1.2');
  assert.deepEqual(plain(parseContentType(' text / html ;charset = "utf-8" ; ; junk; format=flowed ')), {
    mimeType: 'text/html', params: { charset: 'utf-8', format: 'flowed' },
  });
  assert.deepEqual(plain(parseContentType('text/plain (a comment; with ;) ; charset=us-ascii (Plain text)')), {
    mimeType: 'text/plain', params: { charset: 'us-ascii' },
  });
  assert.equal(parseContentType('text/plain; name="(not a comment)"').params.name, '(not a comment)');
  assert.equal(parseContentType('text/plain;\r\n\tcharset=utf-8').params.charset, 'utf-8', 'folded value');
});

test('first occurrence of a parameter wins; hostile names are plain data', () => {
  const ct = parseContentType('text/plain; charset=a; charset=b; __proto__=x; constructor=y');
  assert.equal(ct.params.charset, 'a');
  assert.equal(ct.params.__proto__, 'x');
  assert.equal(ct.params.constructor, 'y');
  assert.equal(Object.getPrototypeOf(ct.params), null);
  assert.equal(parseContentType('text/plain').params.toString, undefined, 'no inherited members');
});

test('absent or invalid type gives text/plain; charset=us-ascii (RFC 2045 5.2)', () => {
  for (const value of [undefined, '', 'text', 'text/', '/plain', 'tëxt/plain', ';charset=utf-8', '"text/plain"']) {
    assert.deepEqual(plain(parseContentType(value)), { mimeType: 'text/plain', params: { charset: 'us-ascii' } }, String(value));
  }
});

test('RFC 2231 continuations and charset/language encoding', () => {
  // The examples of RFC 2231 sections 3 and 4.1.
  assert.equal(parseContentType('message/external-body; access-type=URL;\r\n URL*0="ftp://";\r\n URL*1="cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"').params.url,
    'ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar');
  assert.equal(parseContentType("application/x-stuff; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A").params.title, 'This is ***fun***');
  assert.equal(parseContentType("application/x-stuff; title*0*=us-ascii'en'This%20is%20even%20more%20; title*1*=%2A%2A%2Afun%2A%2A%2A%20; title*2=\"isn't it!\"").params.title,
    "This is even more ***fun*** isn't it!");
  // A UTF-8 character split across two sections is decoded as one.
  assert.equal(parseContentType("application/pdf; name*0*=utf-8''Gr%C3; name*1*=%BC%C3%9Fe.pdf").params.name, 'Grüße.pdf');
  assert.equal(parseContentType("application/pdf; filename*=iso-8859-1''caf%E9.txt").params.filename, 'café.txt');
  assert.equal(parseContentType("application/pdf; filename*=''50%25.txt").params.filename, '50%.txt', 'empty charset');
  assert.equal(parseContentType("application/pdf; filename*=utf-8''bad%zz").params.filename, 'bad%zz', 'broken escape kept');
});

test('RFC 2231: order-independent sections, a gap ends the value, the extended form wins', () => {
  assert.equal(parseContentType('text/plain; t*1=b; t*0=a; t*2=c').params.t, 'abc');
  assert.equal(parseContentType('text/plain; t*0=a; t*2=c').params.t, 'a');
  assert.equal(parseContentType("text/plain; name=plain.txt; name*=utf-8''%C3%A9.txt").params.name, 'é.txt');
  assert.equal(parseContentType('text/plain; t*1=b').params.t, undefined, 'no section 0, no value');
  assert.equal(parseContentType('text/plain; t=plain; t*1=b').params.t, 'plain');
});

test('formatContentType quotes, encodes and folds so that the parser reads it back', () => {
  const params = { protocol: 'application/pkcs7-signature', micalg: 'sha-256', boundary: '----=_cstp_0123456789abcdef0123456789abcdef', name: 'Grüße "x".pdf', empty: '' };
  const value = formatContentType('multipart/signed', params);
  assert.ok(value.split('\r\n').every((line, i) => (i === 0 ? 'Content-Type: '.length : 0) + line.length <= 78), value);
  assert.ok(/^[\x20-\x7e\r\n]*$/.test(value), '7-bit only');
  assert.ok(value.includes('micalg=sha-256') && value.includes('boundary="----=_cstp_'), value);
  assert.deepEqual(plain(parseContentType(value)), { mimeType: 'multipart/signed', params });
  assert.equal(formatContentType('text/plain'), 'text/plain');
});

test('hostile values cost linear time', () => {
  const blanks = ' '.repeat(50_000);
  const start = process.hrtime.bigint();
  assert.equal(parseContentType(`text/plain; name=a${blanks}b${blanks}; x=1`).params.name, `a${blanks}b`);
  assert.equal(parseContentType(`text/plain; ${'('.repeat(50_000)}`).mimeType, 'text/plain');
  assert.equal(parseContentType(`text/plain; n*${'1'.repeat(50_000)}x=1`).params[`n*${'1'.repeat(50_000)}x`], '1');
  assert.ok(Number(process.hrtime.bigint() - start) / 1e6 < 200);
});
