/**
 * RSAES-PKCS1-v1_5 decoding of a key-transport block with the RFC 3218 section 2.3 countermeasure.
 *
 * Node 20 refuses RSA_PKCS1_PADDING in privateDecrypt (CVE-2023-46809, the Marvin attack), so the
 * raw RSA result (RSA_NO_PADDING) is decoded here. The decoder never reports a padding error: when
 * the block is malformed it returns a random key of the expected length, so a bad block only shows
 * up later as a content-decryption failure, exactly like a wrong key. Branch-free integer
 * arithmetic keeps the work independent of where the block goes wrong, as far as JS allows.
 */
import { randomBytes } from 'node:crypto';

/** RFC 8017 7.2.2: at least eight nonzero padding octets. */
const MIN_PADDING = 8;

/** 1 when x (0..255) is zero, else 0. */
function isZeroByte(x: number): number {
  return ((x - 1) >>> 31) & 1;
}

/** 0 when a === b, else a nonzero value (for small non-negative integers). */
function differs(a: number, b: number): number {
  return a ^ b;
}

/** 1 when a < b, else 0 (for non-negative integers below 2^31). */
function lessThan(a: number, b: number): number {
  return ((a - b) >>> 31) & 1;
}

/** 0xff when `bad` is nonzero, else 0. */
function byteMask(bad: number): number {
  return ((bad | -bad) >> 31) & 0xff;
}

/**
 * Extracts a `keyLength`-octet key from the encoded block EM = 00 02 PS 00 M (length = modulus
 * octets). Returns M when EM is well formed and M has exactly `keyLength` octets, otherwise a
 * random key. `modulusLength` guards against a raw result that is not the full block.
 */
export function decodeKeyTransportBlock(em: Buffer, modulusLength: number, keyLength: number): Buffer {
  const random = randomBytes(keyLength);
  const k = em.length;
  let bad = differs(k, modulusLength) | lessThan(k, keyLength + MIN_PADDING + 3);
  bad |= em[0] | differs(em[1], 2);

  // Index of the first zero octet after the 00 02 prefix, found without branching on the data.
  let separator = 0;
  let found = 0;
  for (let i = 2; i < k; i++) {
    const zero = isZeroByte(em[i]);
    const first = zero & (found ^ 1);
    separator |= -first & i;
    found |= zero;
  }
  bad |= found ^ 1;
  bad |= lessThan(separator, 2 + MIN_PADDING);
  bad |= differs(k - separator - 1, keyLength);

  // Both candidates are read in full and blended, so the choice costs the same either way.
  const mask = byteMask(bad);
  const out = Buffer.allocUnsafe(keyLength);
  const offset = Math.max(0, k - keyLength);
  for (let i = 0; i < keyLength; i++) {
    const m = em[offset + i] ?? 0;
    out[i] = (random[i] & mask) | (m & ~mask);
  }
  return out;
}
