/**
 * Encryption of private keys at rest: a key-encryption key derived from the store passphrase
 * with scrypt, and AES-256-GCM per record with a random 96-bit IV and the record's id as
 * additional authenticated data, so a sealed value copied to another record does not open.
 */
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, scryptSync, type KeyObject } from 'node:crypto';

/** scrypt cost as stored with the salt, so that a later change of defaults still opens old stores. */
export interface KdfParams {
  salt: string; // base64
  N: number;
  r: number;
  p: number;
}

/** The JSON form of a sealed value: every field base64. */
export interface Sealed {
  iv: string;
  ct: string;
  tag: string;
}

/** N=2^15, r=8, p=1: about 32 MiB and 50-100 ms per derivation, once per process start. */
export function newKdfParams(): KdfParams {
  return { salt: randomBytes(16).toString('base64'), N: 2 ** 15, r: 8, p: 1 };
}

/** A KeyObject rather than a Buffer, so that logging the store never prints key bytes. */
export function deriveKek(passphrase: string, params: KdfParams): KeyObject {
  const { N, r, p } = params;
  const raw = scryptSync(passphrase.normalize('NFC'), Buffer.from(params.salt, 'base64'), 32, { N, r, p, maxmem: 256 * N * r });
  const kek = createSecretKey(raw);
  raw.fill(0);
  return kek;
}

export function seal(kek: KeyObject, recordId: string, plaintext: Buffer): Sealed {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, iv);
  cipher.setAAD(Buffer.from(recordId, 'utf8'));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { iv: iv.toString('base64'), ct: ct.toString('base64'), tag: cipher.getAuthTag().toString('base64') };
}

/** The plaintext, or undefined when the key or the record id is wrong or the value was altered. */
export function unseal(kek: KeyObject, recordId: string, sealed: Sealed): Buffer | undefined {
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek, Buffer.from(sealed.iv, 'base64'));
    decipher.setAAD(Buffer.from(recordId, 'utf8'));
    decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(sealed.ct, 'base64')), decipher.final()]);
  } catch {
    return undefined;
  }
}
