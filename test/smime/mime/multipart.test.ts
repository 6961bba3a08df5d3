import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  decodeTransferEncoding, headerValue, MimeError, newBoundary, parseContentType, parseEntity, splitMultipart,
} from '../../../src/smime/mime';
import { pkiPath } from '../../helpers/pki';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const texts = (bufs: Buffer[]): string[] => bufs.map((x) => x.toString('latin1'));

test('parts exclude the CRLF before each delimiter; preamble and epilogue as RFC 2046 defines them', () => {
  const body = b('preamble\r\n--b\r\nA: 1\r\n\r\none\r\n--b\r\n\r\ntwo\r\n\r\n--b--\r\nepilogue\r\n');
  const m = splitMultipart(body, 'b');
  assert.equal(m.preamble.toString(), 'preamble');
  assert.deepEqual(texts(m.parts), ['A: 1\r\n\r\none', '\r\ntwo\r\n']);
  assert.equal(m.epilogue.toString(), 'epilogue\r\n');
  assert.equal(m.closed, true);
  assert.ok(m.parts.every((p) => p.buffer === body.buffer), 'parts are views of the body');
});

test('first delimiter at the very start; close delimiter at the very end; transport padding', () => {
  const m = splitMultipart(b('--b \t\r\nx\r\n--b\t\r\ny\r\n--b-- '), 'b');
  assert.equal(m.preamble.length, 0);
  assert.deepEqual(texts(m.parts), ['x', 'y']);
  assert.equal(m.epilogue.length, 0);
  assert.equal(m.closed, true);
});

test('boundary text that is not a whole delimiter line is content', () => {
  const body = b('--b\r\nx--b\r\n --b\r\n--bc\r\n--b-x\r\n--b--x\r\n--b x\r\nend\r\n--b--\r\n');
  const m = splitMultipart(body, 'b');
  assert.deepEqual(texts(m.parts), ['x--b\r\n --b\r\n--bc\r\n--b-x\r\n--b--x\r\n--b x\r\nend']);
  assert.equal(m.closed, true);
});

test('missing close delimiter: closed is false and the last part runs to the end', () => {
  const m = splitMultipart(b('--b\r\none\r\n--b\r\ntwo\r\n'), 'b');
  assert.deepEqual(texts(m.parts), ['one', 'two\r\n']);
  assert.equal(m.closed, false);
  const none = splitMultipart(b('no delimiter at all\r\n'), 'b');
  assert.deepEqual({ ...none, preamble: none.preamble.toString() }, { preamble: 'no delimiter at all\r\n', parts: [], epilogue: b(''), closed: false });
});

test('two delimiter lines in a row enclose an empty part', () => {
  assert.deepEqual(texts(splitMultipart(b('--b\r\n--b\r\nx\r\n--b--'), 'b').parts), ['', 'x']);
});

test('nested multiparts, the inner boundary extending the outer one', () => {
  const inner = '--outer_1\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--outer_1--';
  const body = b(`--outer\r\nContent-Type: multipart/alternative; boundary=outer_1\r\n\r\n${inner}\r\n--outer\r\n\r\nsecond\r\n--outer--\r\n`);
  const outer = splitMultipart(body, 'outer');
  assert.equal(outer.parts.length, 2);
  const nested = parseEntity(outer.parts[0]);
  assert.equal(nested.body.toString(), inner);
  const ct = parseContentType(headerValue(nested.headers, 'content-type'));
  const innerParts = splitMultipart(nested.body, ct.params.boundary);
  assert.deepEqual(texts(innerParts.parts), ['Content-Type: text/plain\r\n\r\ninner text']);
  assert.equal(innerParts.closed, true);
});

test('bad boundaries and too many parts are MimeErrors', () => {
  assert.throws(() => splitMultipart(b('x'), ''), MimeError);
  assert.throws(() => splitMultipart(b('x'), 'a\r\nb'), MimeError);
  assert.throws(() => splitMultipart(b('x'), 'x'.repeat(201)), MimeError);
  const many = b('--b\r\nx\r\n'.repeat(20) + '--b--\r\n');
  assert.equal(splitMultipart(many, 'b', { maxParts: 20 }).parts.length, 20);
  assert.throws(() => splitMultipart(many, 'b', { maxParts: 19 }), /more than 19 parts/);
});

test('near misses cost linear time (no rescans)', () => {
  const dashes = Buffer.alloc(8 * 1024 * 1024, '-');
  const nearMisses = Buffer.alloc(8 * 1024 * 1024, '\r\n--b_');
  const start = process.hrtime.bigint();
  assert.equal(splitMultipart(dashes, '-----').parts.length, 0);
  assert.equal(splitMultipart(nearMisses, 'b').parts.length, 0);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  assert.ok(ms < 3000, `took ${ms} ms`);
});

test('newBoundary: RFC 2046 bchars, at most 70, unique, 128 random bits', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const boundary = newBoundary();
    assert.match(boundary, /^----=_cstp_[0-9a-f]{32}$/);
    seen.add(boundary);
  }
  assert.equal(seen.size, 1000);
});

test('the first part of an OpenSSL multipart/signed is exactly the signed entity', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cstp-mime-'));
  try {
    const entity = b('Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n' +
      'caf=E9 --not a boundary\r\n--\r\nFrom the start\r\n.\r\n\r\n\r\n');
    writeFileSync(join(dir, 'msg.eml'), entity);
    execFileSync('openssl', ['cms', '-sign', '-binary', '-crlfeol', '-md', 'sha256', '-in', 'msg.eml', '-out', 'signed.eml',
      '-signer', pkiPath('user-a-rsa.crt'), '-inkey', pkiPath('user-a-rsa.key')], { cwd: dir, stdio: 'pipe' });
    const signed = parseEntity(readFileSync(join(dir, 'signed.eml')));
    const ct = parseContentType(headerValue(signed.headers, 'content-type'));
    assert.equal(ct.mimeType, 'multipart/signed');
    const { parts, closed } = splitMultipart(signed.body, ct.params.boundary);
    assert.equal(closed, true);
    assert.equal(parts.length, 2);
    assert.deepEqual(parts[0], entity, 'byte-equal to what was signed, trailing empty lines included');

    // And OpenSSL agrees: the signature verifies over exactly these bytes, not over them plus the CRLF.
    const sig = parseEntity(parts[1]);
    writeFileSync(join(dir, 'sig.der'), decodeTransferEncoding(sig.body, headerValue(sig.headers, 'content-transfer-encoding')));
    const verify = (content: Buffer): boolean => {
      writeFileSync(join(dir, 'content.eml'), content);
      try {
        execFileSync('openssl', ['cms', '-verify', '-binary', '-noverify', '-inform', 'DER', '-in', 'sig.der', '-content', 'content.eml', '-out', '/dev/null'],
          { cwd: dir, stdio: 'pipe' });
        return true;
      } catch {
        return false;
      }
    };
    assert.ok(verify(parts[0]));
    assert.ok(!verify(Buffer.concat([parts[0], b('\r\n')])));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
