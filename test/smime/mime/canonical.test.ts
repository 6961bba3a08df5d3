import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { canonicalize } from '../../../src/smime/mime';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** The obvious, slow definition the fast scanner must agree with. */
const reference = (input: Buffer): Buffer => b(input.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n'));

test('bare LF and bare CR become CRLF; CRLF stays', () => {
  assert.equal(canonicalize(b('a\nb\rc\r\nd')).toString('latin1'), 'a\r\nb\r\nc\r\nd');
  assert.equal(canonicalize(b('\n\n')).toString('latin1'), '\r\n\r\n');
  assert.equal(canonicalize(b('\r')).toString('latin1'), '\r\n');
  assert.equal(canonicalize(b('x\r')).toString('latin1'), 'x\r\n', 'a CR at the very end is bare');
  assert.equal(canonicalize(b('\r\r\n')).toString('latin1'), '\r\n\r\n', 'CR CR LF is a bare CR then a CRLF');
  assert.equal(canonicalize(b('\n\r')).toString('latin1'), '\r\n\r\n', 'LF CR is two line ends, not one');
  assert.equal(canonicalize(b('no line end')).toString('latin1'), 'no line end', 'no line end is added');
});

test('canonical input is returned as the same Buffer, not a copy', () => {
  for (const s of ['', 'plain', 'a\r\nb\r\n', '\r\n\r\n\r\n', 'x'.repeat(5000) + '\r\n']) {
    const input = b(s);
    assert.equal(canonicalize(input), input, JSON.stringify(s.slice(0, 20)));
  }
  const view = b('junk a\r\nb\r\n junk').subarray(5, 11);
  assert.equal(canonicalize(view), view, 'works on a view with a byteOffset');
});

test('agrees with the reference on random mixes of CR, LF and text, 8-bit bytes included', () => {
  const alphabet = [0x0d, 0x0a, 0x41, 0xe9, 0x00];
  for (let round = 0; round < 200; round++) {
    const input = Buffer.from([...randomBytes(1 + (round * 37) % 400)].map((x) => alphabet[x % alphabet.length]));
    assert.deepEqual(canonicalize(input), reference(input), input.toString('hex'));
  }
});

test('LF-only text with short lines grows beyond the first output guess and stays exact', () => {
  const input = b('ab\n'.repeat(100_000)); // +50%: more than the 3% the first allocation allows for
  const out = canonicalize(input);
  assert.equal(out.length, input.length + 100_000);
  assert.deepEqual(out, reference(input));
});
