/**
 * Recipient identifiers (RFC 5652 6.2): IssuerAndSerialNumber or a subjectKeyIdentifier, as used by
 * KeyTransRecipientInfo.rid and KeyAgreeRecipientInfo's RecipientEncryptedKey.rid.
 */
import {
  children, content, encoding, expect, expectSequence, isContext, isUniversal, octetString, readOctetString, sequence, Tag,
  TagClass, tlv, type Asn1Node,
} from '../../asn1/der';
import type { Certificate } from '../../pki/certificate';
import { CmsError } from './content-info';

export type RecipientIdentifierKind = 'issuerAndSerialNumber' | 'subjectKeyIdentifier';

export interface RecipientId {
  issuer?: Buffer;
  serial?: Buffer;
  subjectKeyId?: Buffer;
}

export function encodeIssuerAndSerialNumber(cert: Certificate): Buffer {
  return sequence(cert.issuerDer, tlv(0x02, cert.serial));
}

/** The certificate's subjectKeyIdentifier, or a CmsError naming it when it has none. */
export function requireSubjectKeyId(cert: Certificate): Buffer {
  if (!cert.subjectKeyId) throw new CmsError(`recipient ${cert} has no subjectKeyIdentifier extension`);
  return cert.subjectKeyId;
}

/** KeyTransRecipientInfo rid: the SEQUENCE, or [0] IMPLICIT SubjectKeyIdentifier. */
export function encodeKeyTransRid(cert: Certificate, kind: RecipientIdentifierKind): Buffer {
  return kind === 'subjectKeyIdentifier' ? tlv(0x80, requireSubjectKeyId(cert)) : encodeIssuerAndSerialNumber(cert);
}

/** KeyAgreeRecipientIdentifier: the SEQUENCE, or rKeyId [0] IMPLICIT RecipientKeyIdentifier { ski }. */
export function encodeKeyAgreeRid(cert: Certificate, kind: RecipientIdentifierKind): Buffer {
  return kind === 'subjectKeyIdentifier'
    ? tlv(0xa0, octetString(requireSubjectKeyId(cert)))
    : encodeIssuerAndSerialNumber(cert);
}

/** Definite-length re-encoding of a BER value, so an indefinite-length Name still compares equal to the DER one. */
function definite(node: Asn1Node): Buffer {
  if (!node.constructed) return encoding(node);
  return tlv(node.buf[node.start], ...children(node).map(definite));
}

function parseIssuerAndSerialNumber(node: Asn1Node): RecipientId {
  const [issuer, serial] = expectSequence(node, 'IssuerAndSerialNumber', 2);
  return { issuer: definite(expect(issuer, Tag.SEQUENCE, 'issuer')), serial: content(expect(serial, Tag.INTEGER, 'serialNumber')) };
}

/** Reads either rid form; `ski` reads the [0] alternative, whose inner type differs between ktri and kari. */
function parseRid(node: Asn1Node, ski: (n: Asn1Node) => Buffer): RecipientId {
  if (isUniversal(node, Tag.SEQUENCE)) return parseIssuerAndSerialNumber(node);
  if (isContext(node, 0)) return { subjectKeyId: ski(node) };
  throw new CmsError('unsupported recipient identifier');
}

/** Reads an IMPLICIT-tagged value as the universal type it replaces. */
export function asUniversal(node: Asn1Node, tag: number): Asn1Node {
  return { ...node, cls: TagClass.Universal, tag };
}

/** [0] IMPLICIT OCTET STRING (possibly a BER constructed one). */
export function parseKeyTransRid(node: Asn1Node): RecipientId {
  return parseRid(node, (n) => readOctetString(asUniversal(n, Tag.OCTET_STRING), 'subjectKeyIdentifier'));
}

/** [0] IMPLICIT RecipientKeyIdentifier ::= SEQUENCE { subjectKeyIdentifier, date OPTIONAL, other OPTIONAL }. */
export function parseKeyAgreeRid(node: Asn1Node): RecipientId {
  return parseRid(node, (n) => {
    const [ski] = expectSequence(asUniversal(n, Tag.SEQUENCE), 'RecipientKeyIdentifier', 1);
    return readOctetString(ski, 'subjectKeyIdentifier');
  });
}

/** Drops leading zero octets so a non-minimal INTEGER encoding still matches. */
function unsignedSerial(s: Buffer): Buffer {
  let i = 0;
  while (i < s.length - 1 && s[i] === 0) i++;
  return s.subarray(i);
}

export function ridMatches(rid: RecipientId, cert: Certificate): boolean {
  if (rid.subjectKeyId) return cert.subjectKeyId !== undefined && rid.subjectKeyId.equals(cert.subjectKeyId);
  return rid.issuer !== undefined && rid.serial !== undefined && rid.issuer.equals(cert.issuerDer)
    && unsignedSerial(rid.serial).equals(unsignedSerial(cert.serial));
}

export function describeRid(rid: RecipientId): string {
  return rid.subjectKeyId ? `subjectKeyIdentifier ${rid.subjectKeyId.toString('hex')}` : `serial ${rid.serial?.toString('hex')}`;
}
