import { strict as assert } from 'node:assert';
import { constants, privateDecrypt, publicEncrypt, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { decodeKeyTransportBlock } from '../../../src/smime/cms/rsa-pkcs1';
import { cert, key } from './envelope-fixtures';

const K = 256; // RSA-2048 block

/** EM = 00 02 PS 00 M with `padding` nonzero random octets. */
function block(m: Buffer, padding = K - m.length - 3): Buffer {
  const ps = Buffer.from(randomBytes(padding).map((b) => b || 1));
  return Buffer.concat([Buffer.from([0, 2]), ps, Buffer.from([0]), m]);
}

test('a well-formed block yields its key', () => {
  for (const len of [16, 24, 32]) {
    const m = randomBytes(len);
    assert.deepEqual(decodeKeyTransportBlock(block(m), K, len), m);
  }
});

test('the block produced by RSA PKCS#1 v1.5 encryption decodes via raw RSA', () => {
  const cek = randomBytes(32);
  const c = publicEncrypt({ key: cert('gw-b-rsa').publicKey, padding: constants.RSA_PKCS1_PADDING }, cek);
  const em = privateDecrypt({ key: key('gw-b-rsa').key, padding: constants.RSA_NO_PADDING }, c);
  assert.deepEqual(decodeKeyTransportBlock(em, K, 32), cek);
});

/** Malformed variants of a block around the key `m`; each must decode to a random key, never `m`. */
function malformed(m: Buffer): Record<string, Buffer> {
  const good = block(m);
  const set = (i: number, v: number): Buffer => {
    const b = Buffer.from(good);
    b[i] = v;
    return b;
  };
  const noSeparator = Buffer.concat([Buffer.from([0, 2]), Buffer.alloc(K - 2, 0x55)]);
  noSeparator.set(m, K - m.length); // the key octets are there, but nothing marks where they start
  return {
    'first octet not 00': set(0, 1),
    'block type 01': set(1, 1),
    'block type 00': set(1, 0),
    'no zero separator': noSeparator,
    'key one octet too long': block(Buffer.concat([Buffer.from([7]), m])),
    'key one octet too short': block(m.subarray(1), K - m.length - 2),
    'block shorter than the modulus': good.subarray(1),
    'empty (raw RSA failed)': Buffer.alloc(0),
  };
}

test('every padding error yields a random key of the right length instead of an error', () => {
  const m = randomBytes(32);
  for (const [what, em] of Object.entries(malformed(m))) {
    const a = decodeKeyTransportBlock(em, K, 32);
    const b = decodeKeyTransportBlock(em, K, 32);
    assert.equal(a.length, 32, what);
    assert.notDeepEqual(a, m, `${what}: must not release the embedded key`);
    assert.notDeepEqual(a, b, `${what}: a fresh random key each time`);
  }
});

test('eight padding octets are the minimum (RFC 8017 7.2.2)', () => {
  const m = randomBytes(16);
  const k = 16 + 3 + 8;
  assert.deepEqual(decodeKeyTransportBlock(block(m, 8), k, 16), m);
  const seven = block(m, 7);
  assert.notDeepEqual(decodeKeyTransportBlock(seven, k - 1, 16), m);
});
