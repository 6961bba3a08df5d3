/**
 * Content-encryption algorithms of EnvelopedData (RFC 3565: AES-CBC; RFC 3370: des-ede3-cbc, read only)
 * and AuthEnvelopedData (RFC 5084: AES-GCM), by OID and by Node cipher name, with their parameters.
 */
import {
  Asn1Error, expectSequence, integer, octetString, readOctetString, readSmallInt, sequence, type Asn1Node,
} from '../../asn1/der';
import { OID } from '../../asn1/oids';
import { CmsError } from './content-info';

export interface ContentCipherSpec {
  /** Node/OpenSSL cipher name, also what OpenedEnvelope.cipher reports. */
  name: string;
  oid: string;
  keyLength: number;
  mode: 'cbc' | 'gcm';
  /** CBC: the IV length; GCM: the nonce length cstp writes (12, RFC 5084 section 3.2). */
  ivLength: number;
  blockSize: number;
}

const SPECS: ContentCipherSpec[] = [
  { name: 'aes-128-cbc', oid: OID.aes128Cbc, keyLength: 16, mode: 'cbc', ivLength: 16, blockSize: 16 },
  { name: 'aes-192-cbc', oid: OID.aes192Cbc, keyLength: 24, mode: 'cbc', ivLength: 16, blockSize: 16 },
  { name: 'aes-256-cbc', oid: OID.aes256Cbc, keyLength: 32, mode: 'cbc', ivLength: 16, blockSize: 16 },
  { name: 'aes-128-gcm', oid: OID.aes128Gcm, keyLength: 16, mode: 'gcm', ivLength: 12, blockSize: 1 },
  { name: 'aes-192-gcm', oid: OID.aes192Gcm, keyLength: 24, mode: 'gcm', ivLength: 12, blockSize: 1 },
  { name: 'aes-256-gcm', oid: OID.aes256Gcm, keyLength: 32, mode: 'gcm', ivLength: 12, blockSize: 1 },
  { name: 'des-ede3-cbc', oid: OID.desEde3Cbc, keyLength: 24, mode: 'cbc', ivLength: 8, blockSize: 8 },
];

const BY_OID = new Map(SPECS.map((s) => [s.oid, s]));
const BY_NAME = new Map(SPECS.map((s) => [s.name, s]));

/** The tag length cstp writes; RFC 5084 allows 12 to 16 and openssl writes 16. */
export const GCM_TAG_LENGTH = 16;

export function contentCipherByOid(oid: string): ContentCipherSpec {
  const spec = BY_OID.get(oid);
  if (!spec) throw new CmsError(`unsupported content-encryption algorithm ${oid}`);
  return spec;
}

export function contentCipherByName(name: string): ContentCipherSpec {
  const spec = BY_NAME.get(name);
  if (!spec) throw new CmsError(`unsupported content cipher ${name}`);
  return spec;
}

/** Ciphertext length for a plaintext of `n` octets: CBC adds 1..blockSize octets of PKCS#7 padding. */
export function ciphertextLength(spec: ContentCipherSpec, n: number): number {
  return spec.mode === 'cbc' ? (Math.floor(n / spec.blockSize) + 1) * spec.blockSize : n;
}

/** The AlgorithmIdentifier parameters: the IV for CBC, GCMParameters { nonce, ICVlen } for GCM. */
export function encodeCipherParams(spec: ContentCipherSpec, iv: Buffer): Buffer {
  return spec.mode === 'cbc' ? octetString(iv) : sequence(octetString(iv), integer(GCM_TAG_LENGTH));
}

export interface CipherParams {
  iv: Buffer;
  /** GCM only: the expected tag length. */
  tagLength: number;
}

export function parseCipherParams(spec: ContentCipherSpec, params: Asn1Node | undefined): CipherParams {
  try {
    if (spec.mode === 'cbc') {
      const iv = readOctetString(params, `${spec.name} IV`);
      if (iv.length !== spec.ivLength) throw new CmsError(`${spec.name}: IV of ${iv.length} octets`);
      return { iv, tagLength: 0 };
    }
    const [nonce, icvLen] = expectSequence(params, 'GCMParameters', 1);
    const iv = readOctetString(nonce, 'aes-nonce');
    const tagLength = icvLen ? readSmallInt(icvLen, 'aes-ICVlen') : 12;
    if (iv.length === 0 || iv.length > 64) throw new CmsError(`${spec.name}: nonce of ${iv.length} octets`);
    if (tagLength < 12 || tagLength > 16) throw new CmsError(`${spec.name}: tag length ${tagLength} outside 12..16`);
    return { iv, tagLength };
  } catch (e) {
    if (e instanceof Asn1Error) throw new CmsError(`malformed CMS: ${e.message}`);
    throw e;
  }
}
