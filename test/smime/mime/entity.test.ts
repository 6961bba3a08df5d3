import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  buildEntity, headerValue, isContentHeader, MimeError, parseEntity, splitHeaders, type HeaderField,
} from '../../../src/smime/mime';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const raws = (headers: HeaderField[]): string[] => headers.map((h) => h.raw.toString('latin1'));

test('splits header and body at the first empty line; fields keep their exact bytes', () => {
  const msg = b('Subject: hello\r\nX-Folded: one\r\n two\r\n\tthree\r\n\r\nbody\r\n\r\nmore\r\n');
  const e = parseEntity(msg);
  assert.deepEqual(e.headers.map((h) => h.name), ['Subject', 'X-Folded']);
  assert.deepEqual(raws(e.headers), ['Subject: hello\r\n', 'X-Folded: one\r\n two\r\n\tthree\r\n']);
  assert.equal(e.body.toString('latin1'), 'body\r\n\r\nmore\r\n');
  assert.equal(headerValue(e.headers, 'x-folded'), 'one two\tthree', 'unfolded: CRLF removed, whitespace kept');
});

test('fields and body are views of the input, not copies', () => {
  const msg = b('A: 1\r\n\r\nbody');
  const e = parseEntity(msg);
  assert.equal(e.body.buffer, msg.buffer);
  assert.equal(e.body.byteOffset, msg.byteOffset + 8);
  assert.equal(e.headers[0].raw.buffer, msg.buffer);
});

test('tolerates a message without body, without empty line, or without headers', () => {
  const headerOnly = parseEntity(b('A: 1\r\nB: 2\r\n'));
  assert.deepEqual(raws(headerOnly.headers), ['A: 1\r\n', 'B: 2\r\n']);
  assert.equal(headerOnly.body.length, 0);

  const noFinalCrlf = parseEntity(b('A: 1\r\nB: 2'));
  assert.deepEqual(raws(noFinalCrlf.headers), ['A: 1\r\n', 'B: 2']);
  assert.equal(headerValue(noFinalCrlf.headers, 'b'), '2');

  const emptyBody = parseEntity(b('A: 1\r\n\r\n'));
  assert.equal(emptyBody.headers.length, 1);
  assert.equal(emptyBody.body.length, 0);

  const leadingEmptyLine = parseEntity(b('\r\nA: not a header\r\n'));
  assert.equal(leadingEmptyLine.headers.length, 0);
  assert.equal(leadingEmptyLine.body.toString(), 'A: not a header\r\n');

  const headerless = parseEntity(b('Just text, no header.\r\nSecond: line\r\n'));
  assert.equal(headerless.headers.length, 0);
  assert.equal(headerless.body.toString(), 'Just text, no header.\r\nSecond: line\r\n');

  assert.deepEqual(parseEntity(b('')), { headers: [], body: b('') });
});

test('a line that is not a header field ends the header section (Postfix behaviour)', () => {
  const e = parseEntity(b('A: 1\r\nthis is no header\r\nB: 2\r\n'));
  assert.deepEqual(raws(e.headers), ['A: 1\r\n']);
  assert.equal(e.body.toString(), 'this is no header\r\nB: 2\r\n');
  assert.equal(parseEntity(b(' indented first line\r\n\r\nx')).headers.length, 0, 'a fold with nothing to continue');
});

test('drops an mbox From_ line but keeps the obsolete "From :" header', () => {
  const mbox = parseEntity(b('From alice@a.example Thu Jan  1 00:00:00 2026\r\nFrom: alice@a.example\r\n\r\nhi\r\n'));
  assert.deepEqual(raws(mbox.headers), ['From: alice@a.example\r\n']);
  assert.equal(mbox.body.toString(), 'hi\r\n');

  const obs = parseEntity(b('From : alice@a.example\r\nTo: b@b.example\r\n\r\n'));
  assert.deepEqual(obs.headers.map((h) => h.name), ['From', 'To']);
  assert.equal(headerValue(obs.headers, 'from'), 'alice@a.example');

  const asPart = parseEntity(b('From x y\r\nA: 1\r\n\r\n'), { mboxFrom: false });
  assert.equal(asPart.headers.length, 0, 'body parts do not drop lines');
});

test('header values: first occurrence, case-insensitive, trimmed, UTF-8 or Latin-1 kept intact', () => {
  const msg = Buffer.concat([
    b('subject:   first  \r\nSUBJECT: second\r\nX-Utf8: '), Buffer.from('Grüße 👋', 'utf8'),
    b('\r\nX-Latin1: caf\xe9\r\nX-Empty:\r\nX-Nul: a\0b\r\n\r\n'),
  ]);
  const { headers } = parseEntity(msg);
  assert.equal(headerValue(headers, 'Subject'), 'first');
  assert.equal(headerValue(headers, 'x-utf8'), 'Grüße 👋');
  assert.equal(headerValue(headers, 'X-LATIN1'), 'café');
  assert.equal(headerValue(headers, 'x-empty'), '');
  assert.equal(headerValue(headers, 'x-nul'), 'a\0b', 'NUL is tolerated');
  assert.equal(headerValue(headers, 'missing'), undefined);
});

test('header section limits are enforced with a MimeError', () => {
  const big = b(`X-Big: ${'a'.repeat(2000)}\r\n\r\nbody`);
  assert.throws(() => parseEntity(big, { maxHeaderBytes: 1000 }), (e: unknown) => e instanceof MimeError && /exceeds 1000 octets/.test(e.message));
  assert.equal(parseEntity(big, { maxHeaderBytes: 3000 }).headers.length, 1);
  const many = b('A: 1\r\n'.repeat(50) + '\r\n');
  assert.throws(() => parseEntity(many, { maxHeaderFields: 49 }), /more than 49 fields/);
  assert.equal(parseEntity(many, { maxHeaderFields: 50 }).headers.length, 50);
  const endless = Buffer.alloc(3 * 1024 * 1024, 'a: b ');
  assert.throws(() => parseEntity(endless), /header section exceeds 1048576 octets/, 'default limit 1 MiB');
  const endlessFold = Buffer.concat([b('A: 1\r\n'), Buffer.alloc(64 * 1024 * 1024, ' x\r\n')]);
  const start = process.hrtime.bigint();
  assert.throws(() => parseEntity(endlessFold), /header section exceeds/);
  assert.ok(Number(process.hrtime.bigint() - start) / 1e6 < 200, 'stops at the limit, not at the end of the input (a full scan takes ~400 ms)');
});

test('content header fields and the rest', () => {
  assert.ok(isContentHeader('Content-Type') && isContentHeader('content-transfer-encoding') && isContentHeader('CONTENT-ID'));
  assert.ok(!isContentHeader('MIME-Version') && !isContentHeader('Content') && !isContentHeader('X-Content-Type'));
  const { headers } = parseEntity(b('From: a\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nSubject: s\r\nContent-Disposition: inline\r\n\r\n'));
  const { outer, content } = splitHeaders(headers);
  assert.deepEqual(outer.map((h) => h.name), ['From', 'Subject']);
  assert.deepEqual(content.map((h) => h.name), ['Content-Type', 'Content-Disposition']);
});

test('buildEntity writes fields, an empty line and the body chunks untouched', () => {
  const body = b('line\r\n');
  const parsed = parseEntity(b('A: 1\r\n folded\r\nB: 2'));
  const chunks = buildEntity([...parsed.headers, 'Content-Type: text/plain', 'X-Done: yes\r\n', 'X-Fold: a\r\n b'], [body, body]);
  assert.equal(chunks[1], body, 'body chunks are passed through, not copied');
  assert.equal(Buffer.concat(chunks).toString(), 'A: 1\r\n folded\r\nB: 2\r\nContent-Type: text/plain\r\nX-Done: yes\r\nX-Fold: a\r\n b\r\n\r\nline\r\nline\r\n');
  assert.equal(Buffer.concat(buildEntity([], b('x'))).toString(), '\r\nx');
  assert.equal(Buffer.concat(buildEntity(['Subject: Grüße'], b(''))).toString('utf8'), 'Subject: Grüße\r\n\r\n');
});

test('buildEntity refuses strings that would inject header fields', () => {
  for (const bad of ['Subject: a\r\nBcc: x@y', 'Subject: a\nBcc: x@y', 'Subject: a\rb', 'no colon here', ': empty name']) {
    assert.throws(() => buildEntity([bad], b('')), MimeError, JSON.stringify(bad));
  }
});

test('parse then build reproduces a canonical message byte for byte', () => {
  const msg = b('Received: from x\r\n\tby y\r\nFrom: a@a.example\r\nSubject: s\r\n\r\nbody\r\n');
  const e = parseEntity(msg);
  assert.deepEqual(Buffer.concat(buildEntity(e.headers, e.body)), msg);
});

test('long runs of blanks inside a value cost linear time (no regex backtracking)', () => {
  const blanks = ' '.repeat(50_000);
  const { headers } = parseEntity(b(`X-Blank: a${blanks}b${blanks}\r\n\r\n`));
  const start = process.hrtime.bigint();
  assert.equal(headerValue(headers, 'x-blank'), `a${blanks}b`);
  assert.ok(Number(process.hrtime.bigint() - start) / 1e6 < 100);
});
