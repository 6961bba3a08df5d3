/**
 * RSA key transport for KeyTransRecipientInfo: RSAES-PKCS1-v1_5 (RFC 3370 4.2.1) and RSAES-OAEP
 * (RFC 3560, RFC 8017). Decryption never throws on a bad key block: it yields a random key of the
 * right length instead (RFC 3218 2.3), so the failure surfaces only when the content fails to decrypt.
 */
import { constants, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import {
  algorithm, children, explicit, expectSequence, isContext, nullValue, readOctetString, readOid, sequence,
  type Asn1Node,
} from '../../asn1/der';
import { OID } from '../../asn1/oids';
import { CmsError } from './content-info';
import { digestName, digestOid, type DigestName } from './digest';
import { decodeKeyTransportBlock } from './rsa-pkcs1';

export type RsaKeyTransport = 'rsa-pkcs1' | 'rsa-oaep';

/** The OAEP hash cstp writes; MGF1 uses the same one (RFC 8551 2.7.1 recommends SHA-256). */
const OAEP_HASH: DigestName = 'sha256';

/** keyEncryptionAlgorithm as openssl writes it: rsaEncryption with NULL, OAEP with explicit SHA-256 params. */
export function rsaKeyEncryptionAlgorithm(kind: RsaKeyTransport): Buffer {
  if (kind === 'rsa-pkcs1') return algorithm(OID.rsaEncryption, nullValue());
  const hash = algorithm(digestOid(OAEP_HASH));
  return algorithm(OID.rsaesOaep, sequence(explicit(0, hash), explicit(1, algorithm(OID.mgf1, hash))));
}

export function rsaEncryptKey(publicKey: KeyObject, kind: RsaKeyTransport, cek: Buffer): Buffer {
  if (kind === 'rsa-pkcs1') return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, cek);
  return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: OAEP_HASH }, cek);
}

interface OaepParams {
  hash: DigestName;
  label?: Buffer;
}

/** The hash of an AlgorithmIdentifier whose parameters must be absent or NULL. */
function hashOf(node: Asn1Node | undefined, what: string): DigestName {
  return digestName(readOid(expectSequence(node, what, 1)[0], what));
}

/**
 * RSAES-OAEP-params (RFC 8017 A.2.1), every field DEFAULT: SHA-1, MGF1-SHA-1, empty label.
 * Node derives MGF1's hash from oaepHash, so a different MGF1 hash cannot be honoured.
 */
function parseOaepParams(params: Asn1Node | undefined): OaepParams {
  const out: OaepParams = { hash: 'sha1' };
  let mgfHash: DigestName = 'sha1';
  const fields = params && params.constructed ? expectSequence(params, 'RSAES-OAEP-params') : [];
  for (const f of fields) {
    const [inner] = children(f);
    if (isContext(f, 0)) out.hash = hashOf(inner, 'OAEP hashAlgorithm');
    else if (isContext(f, 1)) {
      const [mgf, mgfParams] = expectSequence(inner, 'OAEP maskGenAlgorithm', 1);
      if (readOid(mgf) !== OID.mgf1) throw new CmsError(`unsupported OAEP mask generation function ${readOid(mgf)}`);
      mgfHash = hashOf(mgfParams, 'MGF1 hash');
    } else if (isContext(f, 2)) {
      const [source, label] = expectSequence(inner, 'OAEP pSourceAlgorithm', 1);
      if (readOid(source) !== OID.pSpecified) throw new CmsError('unsupported OAEP label source');
      if (label) out.label = readOctetString(label, 'OAEP label');
    }
  }
  if (mgfHash !== out.hash) throw new CmsError(`unsupported OAEP with MGF1-${mgfHash} and ${out.hash}`);
  return out;
}

function modulusOctets(key: KeyObject): number {
  return Math.ceil((key.asymmetricKeyDetails?.modulusLength ?? 0) / 8);
}

function decryptPkcs1(privateKey: KeyObject, encryptedKey: Buffer, cekLength: number): Buffer {
  let block: Buffer;
  try {
    block = privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, encryptedKey);
  } catch {
    // Only the public ciphertext (length, value >= modulus) can make raw RSA fail, before any RSA operation. The
    // operation runs anyway, on a block that fits, so this failure takes as long as any other bad block.
    block = Buffer.alloc(0);
    try {
      privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, Buffer.alloc(modulusOctets(privateKey), 1).fill(0, 0, 1));
    } catch {
      // a key unusable for raw RSA fails on every block alike
    }
  }
  return decodeKeyTransportBlock(block, modulusOctets(privateKey), cekLength);
}

function decryptOaep(privateKey: KeyObject, params: OaepParams, encryptedKey: Buffer, cekLength: number): Buffer {
  const random = randomBytes(cekLength);
  try {
    const cek = privateDecrypt(
      { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: params.hash, oaepLabel: params.label },
      encryptedKey,
    );
    return cek.length === cekLength ? cek : random;
  } catch {
    return random;
  }
}

export interface TransportedKey {
  cek: Buffer;
  /** 'rsa-pkcs1', 'rsa-oaep' (SHA-256, what cstp writes) or 'rsa-oaep-<hash>' for any other OAEP hash. */
  keyEncryption: string;
}

/** Recovers a `cekLength`-octet key; a random one when the block does not decrypt to such a key. */
export function rsaDecryptKey(
  privateKey: KeyObject, algorithmId: Asn1Node, encryptedKey: Buffer, cekLength: number,
): TransportedKey {
  if (privateKey.asymmetricKeyType !== 'rsa') throw new CmsError('key transport needs an RSA private key');
  const [algOid, params] = expectSequence(algorithmId, 'keyEncryptionAlgorithm', 1);
  const alg = readOid(algOid, 'keyEncryptionAlgorithm');
  if (alg === OID.rsaEncryption) {
    return { cek: decryptPkcs1(privateKey, encryptedKey, cekLength), keyEncryption: 'rsa-pkcs1' };
  }
  if (alg === OID.rsaesOaep) {
    const oaep = parseOaepParams(params);
    const keyEncryption = oaep.hash === OAEP_HASH ? 'rsa-oaep' : `rsa-oaep-${oaep.hash}`;
    return { cek: decryptOaep(privateKey, oaep, encryptedKey, cekLength), keyEncryption };
  }
  throw new CmsError(`unsupported key transport algorithm ${alg}`);
}
