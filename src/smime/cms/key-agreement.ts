/**
 * Ephemeral-static ECDH key agreement for KeyAgreeRecipientInfo: NIST curves per RFC 5753 and
 * X25519 per RFC 8418. The key-encryption key comes from the ANSI X9.63 KDF over the shared secret
 * and the DER ECC-CMS-SharedInfo, and wraps the content-encryption key with AES key wrap (RFC 3394).
 */
import {
  createCipheriv, createDecipheriv, createHash, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes,
  type KeyObject,
} from 'node:crypto';
import {
  algorithm, bitString, children, encoding, explicit, expectSequence, integer, isContext, oid, parse, readBitString,
  readOctetString, readOid, sequence, tlv, octetString, type Asn1Node,
} from '../../asn1/der';
import { OID } from '../../asn1/oids';
import { CmsError } from './content-info';
import type { DigestName } from './digest';

/** The KDF cstp writes (RFC 8551 2.7.1.2 prefers it over openssl's default SHA-1 KDF). */
const KDF_HASH: DigestName = 'sha256';

const KDF_BY_OID: Record<string, DigestName> = {
  [OID.dhSinglePassStdDHSha1Kdf]: 'sha1',
  [OID.dhSinglePassStdDHSha224Kdf]: 'sha224',
  [OID.dhSinglePassStdDHSha256Kdf]: 'sha256',
  [OID.dhSinglePassStdDHSha384Kdf]: 'sha384',
  [OID.dhSinglePassStdDHSha512Kdf]: 'sha512',
};
const KDF_OID = Object.fromEntries(Object.entries(KDF_BY_OID).map(([o, h]) => [h, o])) as Record<DigestName, string>;

interface WrapSpec {
  oid: string;
  cipher: string;
  keyLength: number;
}
const WRAPS: WrapSpec[] = [
  { oid: OID.aes128Wrap, cipher: 'id-aes128-wrap', keyLength: 16 },
  { oid: OID.aes192Wrap, cipher: 'id-aes192-wrap', keyLength: 24 },
  { oid: OID.aes256Wrap, cipher: 'id-aes256-wrap', keyLength: 32 },
];

/** RFC 3394 2.2.3.1 default initial value. */
const WRAP_IV = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');

/** Named curves by Node's name, with the OID and the short name used in reports. */
const CURVES: Record<string, { oid: string; label: string }> = {
  prime256v1: { oid: OID.prime256v1, label: 'p256' },
  secp384r1: { oid: OID.secp384r1, label: 'p384' },
  secp521r1: { oid: OID.secp521r1, label: 'p521' },
};

/** What kind of agreement a key supports, or undefined if it cannot do ECDH as cstp implements it. */
interface AgreementKind {
  /** Node's key type for generateKeyPairSync. */
  type: 'ec' | 'x25519';
  namedCurve?: string;
  label: string;
}

export function agreementKind(key: KeyObject): AgreementKind | undefined {
  if (key.asymmetricKeyType === 'x25519') return { type: 'x25519', label: 'x25519' };
  if (key.asymmetricKeyType !== 'ec') return undefined;
  const namedCurve = key.asymmetricKeyDetails?.namedCurve;
  const curve = namedCurve ? CURVES[namedCurve] : undefined;
  return curve ? { type: 'ec', namedCurve, label: curve.label } : undefined;
}

/** ANSI X9.63 KDF (SEC 1 3.6.1): Hash(Z || counter || SharedInfo) for counter = 1, 2, ... */
export function x963Kdf(hash: DigestName, secret: Buffer, sharedInfo: Buffer, length: number): Buffer {
  const blocks: Buffer[] = [];
  const counter = Buffer.alloc(4);
  for (let i = 1, have = 0; have < length; i++) {
    counter.writeUInt32BE(i);
    const block = createHash(hash).update(secret).update(counter).update(sharedInfo).digest();
    blocks.push(block);
    have += block.length;
  }
  return Buffer.concat(blocks).subarray(0, length);
}

/** ECC-CMS-SharedInfo (RFC 5753 7.2): keyInfo, optional ukm as entityUInfo, KEK length in bits. */
function sharedInfo(wrapAlgorithm: Buffer, kekLength: number, ukm?: Buffer): Buffer {
  const bits = Buffer.alloc(4);
  bits.writeUInt32BE(kekLength * 8);
  const entity = ukm ? [explicit(0, octetString(ukm))] : [];
  return sequence(wrapAlgorithm, ...entity, explicit(2, octetString(bits)));
}

function wrapForKeyLength(cekLength: number): WrapSpec {
  const wrap = WRAPS.find((w) => w.keyLength === cekLength);
  if (!wrap) throw new CmsError(`no AES key wrap for a ${cekLength}-octet key`);
  return wrap;
}

/** OriginatorPublicKey fields: the algorithm (parameters absent, as openssl writes) and the public value. */
function originatorPublicKey(ephemeral: KeyObject, kind: AgreementKind): Buffer {
  const spki = ephemeral.export({ type: 'spki', format: 'der' });
  const [, key] = expectSequence(parse(spki), 'SubjectPublicKeyInfo', 2);
  const alg = kind.type === 'x25519' ? OID.x25519 : OID.ecPublicKey;
  return tlv(0xa1, algorithm(alg), bitString(readBitString(key).bytes));
}

/**
 * One RecipientInfo kari [1] IMPLICIT KeyAgreeRecipientInfo for `recipientKey`, under a fresh ephemeral key:
 * dhSinglePass-stdDH-sha256kdf-scheme, AES key wrap matching the content key's length, no ukm.
 */
export function keyAgreeRecipientInfo(recipientKey: KeyObject, rid: Buffer, cek: Buffer, name: string): Buffer {
  const kind = agreementKind(recipientKey);
  if (!kind) throw new CmsError(`recipient ${name}: unsupported key agreement key`);
  const ephemeral = kind.type === 'x25519'
    ? generateKeyPairSync('x25519')
    : generateKeyPairSync('ec', { namedCurve: kind.namedCurve as string });
  const secret = diffieHellman({ privateKey: ephemeral.privateKey, publicKey: recipientKey });
  const wrap = wrapForKeyLength(cek.length);
  const wrapAlgorithm = algorithm(wrap.oid);
  const kek = x963Kdf(KDF_HASH, secret, sharedInfo(wrapAlgorithm, wrap.keyLength), wrap.keyLength);
  const wrapper = createCipheriv(wrap.cipher, kek, WRAP_IV);
  const encryptedKey = Buffer.concat([wrapper.update(cek), wrapper.final()]);
  return tlv(
    0xa1,
    integer(3),
    explicit(0, originatorPublicKey(ephemeral.publicKey, kind)),
    algorithm(KDF_OID[KDF_HASH], wrapAlgorithm),
    sequence(sequence(rid, octetString(encryptedKey))),
  );
}

/** The parts of a KeyAgreeRecipientInfo needed to recover the key, parsed from the message. */
export interface KeyAgreeParams {
  /** The originator's ephemeral public value (EC point or X25519 u-coordinate). */
  originatorKey: Buffer;
  ukm?: Buffer;
  kdfHash: DigestName;
  /** The key-wrap AlgorithmIdentifier in DER (it enters SharedInfo). */
  wrapAlgorithm: Buffer;
  wrap: WrapSpec;
}

export interface RecipientEncryptedKey {
  rid: Asn1Node;
  encryptedKey: Buffer;
}

/** Parses KeyAgreeRecipientInfo fields (the [1] IMPLICIT SEQUENCE's children). */
export function parseKeyAgreeRecipientInfo(fields: Asn1Node[]): { params: KeyAgreeParams; keys: RecipientEncryptedKey[] } {
  let i = 1; // version 3
  const originator = fields[i++];
  if (!originator || !isContext(originator, 0)) throw new CmsError('KeyAgreeRecipientInfo: missing originator');
  const [choice] = children(originator);
  if (!choice || !isContext(choice, 1)) throw new CmsError('KeyAgreeRecipientInfo: only an originatorKey (ephemeral-static ECDH) is supported');
  const [, publicKey] = children(choice);
  const originatorKey = readBitString(publicKey, 'originator publicKey').bytes;
  let ukm: Buffer | undefined;
  if (fields[i] && isContext(fields[i], 1)) ukm = readOctetString(children(fields[i++])[0], 'ukm');
  const [kdfOid, wrapNode] = expectSequence(fields[i++], 'keyEncryptionAlgorithm', 2);
  const kdf = readOid(kdfOid, 'keyEncryptionAlgorithm');
  const kdfHash = KDF_BY_OID[kdf];
  if (!kdfHash) throw new CmsError(`unsupported key agreement algorithm ${kdf}`);
  const [wrapOidNode, wrapParams] = expectSequence(wrapNode, 'KeyWrapAlgorithm', 1);
  const wrapOid = readOid(wrapOidNode, 'KeyWrapAlgorithm');
  const wrap = WRAPS.find((w) => w.oid === wrapOid);
  if (!wrap) throw new CmsError(`unsupported key wrap algorithm ${wrapOid}`);
  const keys = expectSequence(fields[i++], 'RecipientEncryptedKeys').map((rek) => {
    const [rid, encryptedKey] = expectSequence(rek, 'RecipientEncryptedKey', 2);
    return { rid, encryptedKey: readOctetString(encryptedKey, 'encryptedKey') };
  });
  // SharedInfo needs the DER of the AlgorithmIdentifier even when the message is BER (openssl re-encodes too).
  const wrapAlgorithm = algorithm(wrapOid, wrapParams && Buffer.from(encoding(wrapParams)));
  return { params: { originatorKey, ukm, kdfHash, wrapAlgorithm, wrap }, keys };
}

/** The ephemeral key as a KeyObject on our key's curve (the originator's own curve parameters are optional). */
function originatorKeyObject(kind: AgreementKind, point: Buffer): KeyObject {
  const alg = kind.type === 'x25519'
    ? algorithm(OID.x25519)
    : algorithm(OID.ecPublicKey, oid(CURVES[kind.namedCurve as string].oid));
  return createPublicKey({ key: sequence(alg, bitString(point)), format: 'der', type: 'spki' });
}

export interface AgreedKey {
  cek: Buffer;
  /** e.g. 'ecdh-p256-sha256kdf'. */
  keyEncryption: string;
}

/**
 * Recovers a `cekLength`-octet content key with our private key. Any failure (invalid point,
 * wrap integrity check, wrong length) yields a random key, as for RSA (RFC 3218 2.3).
 */
export function agreeAndUnwrap(
  privateKey: KeyObject, params: KeyAgreeParams, encryptedKey: Buffer, cekLength: number,
): AgreedKey {
  const kind = agreementKind(privateKey);
  if (!kind) throw new CmsError('key agreement needs a P-256/P-384/P-521 or X25519 private key');
  const keyEncryption = `ecdh-${kind.label}-${params.kdfHash}kdf`;
  const random = randomBytes(cekLength);
  try {
    const secret = diffieHellman({ privateKey, publicKey: originatorKeyObject(kind, params.originatorKey) });
    const info = sharedInfo(params.wrapAlgorithm, params.wrap.keyLength, params.ukm);
    const kek = x963Kdf(params.kdfHash, secret, info, params.wrap.keyLength);
    const unwrapper = createDecipheriv(params.wrap.cipher, kek, WRAP_IV);
    const cek = Buffer.concat([unwrapper.update(encryptedKey), unwrapper.final()]);
    return { cek: cek.length === cekLength ? cek : random, keyEncryption };
  } catch {
    return { cek: random, keyEncryption };
  }
}
