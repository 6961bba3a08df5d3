/**
 * RecipientInfo (RFC 5652 6.2): one per recipient certificate on the way out, chosen by the
 * certificate's key (RSA: KeyTransRecipientInfo, EC/X25519: KeyAgreeRecipientInfo); on the way
 * in, the entries our certificates are named in, each able to recover the content key.
 */
import type { KeyObject } from 'node:crypto';
import {
  children, expectSequence, integer, isContext, isUniversal, octetString, readOctetString, readSmallInt, sequence, Tag,
  type Asn1Node,
} from '../../asn1/der';
import type { Certificate } from '../../pki/certificate';
import { CmsError } from './content-info';
import { agreeAndUnwrap, agreementKind, keyAgreeRecipientInfo, parseKeyAgreeRecipientInfo } from './key-agreement';
import { rsaDecryptKey, rsaEncryptKey, rsaKeyEncryptionAlgorithm, type RsaKeyTransport } from './key-transport';
import {
  encodeKeyAgreeRid, encodeKeyTransRid, parseKeyAgreeRid, parseKeyTransRid, type RecipientId, type RecipientIdentifierKind,
} from './recipient-id';

export interface RecipientOptions {
  rsaKeyTransport: RsaKeyTransport;
  recipientIdentifier: RecipientIdentifierKind;
}

export interface EncodedRecipientInfo {
  der: Buffer;
  /** RFC 5652 6.2.1/6.2.2: ktri 0 with issuerAndSerialNumber, 2 with subjectKeyIdentifier; kari always 3. */
  version: number;
}

export function encodeRecipientInfo(cert: Certificate, cek: Buffer, opts: RecipientOptions): EncodedRecipientInfo {
  const key = cert.publicKey;
  if (key.asymmetricKeyType === 'rsa') {
    const version = opts.recipientIdentifier === 'subjectKeyIdentifier' ? 2 : 0;
    const der = sequence(
      integer(version),
      encodeKeyTransRid(cert, opts.recipientIdentifier),
      rsaKeyEncryptionAlgorithm(opts.rsaKeyTransport),
      octetString(rsaEncryptKey(key, opts.rsaKeyTransport, cek)),
    );
    return { der, version };
  }
  if (agreementKind(key)) {
    return { der: keyAgreeRecipientInfo(key, encodeKeyAgreeRid(cert, opts.recipientIdentifier), cek, String(cert)), version: 3 };
  }
  throw new CmsError(`recipient ${cert}: its ${key.asymmetricKeyType ?? 'unknown'} key cannot receive encrypted mail (needs RSA, P-256/P-384/P-521 or X25519)`);
}

export interface RecoveredKey {
  cek: Buffer;
  keyEncryption: string;
}

/** One place our certificate could be named: a ktri, or one RecipientEncryptedKey of a kari. */
export interface RecipientEntry {
  rid: RecipientId;
  /** The content key under `privateKey`; a random key when it does not decrypt (RFC 3218). */
  recover(privateKey: KeyObject, cekLength: number): RecoveredKey;
}

function keyTransEntry(fields: Asn1Node[]): RecipientEntry {
  const [, rid, alg, encryptedKey] = fields;
  const encrypted = readOctetString(encryptedKey, 'KeyTransRecipientInfo encryptedKey');
  return {
    rid: parseKeyTransRid(rid),
    recover: (privateKey, cekLength) => rsaDecryptKey(privateKey, alg, encrypted, cekLength),
  };
}

function keyAgreeEntries(fields: Asn1Node[]): RecipientEntry[] {
  const { params, keys } = parseKeyAgreeRecipientInfo(fields);
  return keys.map(({ rid, encryptedKey }) => ({
    rid: parseKeyAgreeRid(rid),
    recover: (privateKey, cekLength) => agreeAndUnwrap(privateKey, params, encryptedKey, cekLength),
  }));
}

/** Every entry of the RecipientInfos SET that cstp can use; kekri, pwri and ori are skipped. */
export function parseRecipientInfos(set: Asn1Node): RecipientEntry[] {
  if (!isUniversal(set, Tag.SET)) throw new CmsError('recipientInfos: expected a SET');
  const out: RecipientEntry[] = [];
  for (const ri of children(set)) {
    if (isUniversal(ri, Tag.SEQUENCE)) out.push(keyTransEntry(expectSequence(ri, 'KeyTransRecipientInfo', 4)));
    else if (isContext(ri, 1) && ri.constructed) {
      const fields = children(ri);
      if (readSmallInt(fields[0], 'KeyAgreeRecipientInfo version') !== 3) throw new CmsError('KeyAgreeRecipientInfo: version must be 3');
      out.push(...keyAgreeEntries(fields));
    }
  }
  return out;
}
