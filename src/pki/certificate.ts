/**
 * An X.509 certificate as cstp needs it: the exact DER, Node's native X509Certificate for
 * signature checks and the public key, and the fields path validation and S/MIME policy
 * read (RFC 5280 section 4), parsed once with the project's own DER reader.
 */
import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import {
  Asn1Error, children, content, encoding, expect, expectSequence, isContext, isUniversal, parseExact, readBitString, readBoolean, readOctetString, readOid, readSmallInt, readString, readTime,
  Tag, type Asn1Node,
} from '../asn1/der';
import { OID } from '../asn1/oids';

export class CertificateError extends Error {
  override name = 'CertificateError';
}

/** keyUsage bits, named as in RFC 5280 4.2.1.3. */
export const KeyUsage = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
  encipherOnly: 7,
  decipherOnly: 8,
} as const;
export type KeyUsageName = keyof typeof KeyUsage;

export interface BasicConstraints {
  ca: boolean;
  pathLen?: number;
}

/** Extensions this module understands; any other critical one makes the certificate unusable. */
const UNDERSTOOD = new Set<string>([
  OID.subjectKeyIdentifier, OID.keyUsage, OID.subjectAltName, OID.basicConstraints,
  OID.authorityKeyIdentifier, OID.extKeyUsage, OID.certificatePolicies,
]);

export class Certificate {
  readonly der: Buffer;
  readonly x509: X509Certificate;
  /** DER of the issuer Name, exactly as encoded (for IssuerAndSerialNumber and name chaining). */
  readonly issuerDer: Buffer;
  readonly subjectDer: Buffer;
  /** Serial number content octets (two's complement, as encoded). */
  readonly serial: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** OID of the subjectPublicKeyInfo algorithm (rsaEncryption, ecPublicKey, Ed25519, ...). */
  readonly keyAlgorithm: string;
  /** DER of the subjectPublicKeyInfo. */
  readonly spki: Buffer;
  readonly subjectKeyId?: Buffer;
  readonly authorityKeyId?: Buffer;
  /** Bits set in keyUsage; undefined when the extension is absent (no restriction). */
  readonly keyUsage?: ReadonlySet<KeyUsageName>;
  /** extendedKeyUsage OIDs; undefined when the extension is absent. */
  readonly extKeyUsage?: readonly string[];
  readonly basicConstraints?: BasicConstraints;
  /** rfc822Name SANs and subject emailAddress attributes, as written. */
  readonly emailAddresses: readonly string[];
  /** Critical extensions not understood (RFC 5280: such a certificate must be rejected). */
  readonly unknownCritical: readonly string[];
  readonly subject: string;
  readonly issuer: string;
  /** SHA-256 of the DER, lowercase hex. */
  readonly fingerprint: string;

  private cachedPublicKey?: KeyObject;

  private constructor(der: Buffer) {
    this.der = der;
    try {
      this.x509 = new X509Certificate(der);
    } catch (e) {
      throw new CertificateError(`not a certificate: ${(e as Error).message}`);
    }
    try {
      const [tbs] = expectSequence(parseExact(der), 'Certificate', 3);
      const f = expectSequence(tbs, 'TBSCertificate', 6);
      let i = isContext(f[0], 0) ? 1 : 0; // version [0] EXPLICIT
      this.serial = content(expect(f[i++], Tag.INTEGER, 'serialNumber'));
      i++; // signature AlgorithmIdentifier: X509Certificate checks it
      this.issuerDer = Buffer.from(encoding(expect(f[i++], Tag.SEQUENCE, 'issuer')));
      const validity = expectSequence(f[i++], 'validity', 2);
      this.notBefore = readTime(validity[0], 'notBefore');
      this.notAfter = readTime(validity[1], 'notAfter');
      const subjectNode = expect(f[i++], Tag.SEQUENCE, 'subject');
      this.subjectDer = Buffer.from(encoding(subjectNode));
      const spkiNode = f[i++];
      this.spki = Buffer.from(encoding(spkiNode));
      this.keyAlgorithm = readOid(expectSequence(expectSequence(spkiNode, 'subjectPublicKeyInfo', 2)[0], 'algorithm', 1)[0]);

      const emails: string[] = emailsFromName(subjectNode);
      const unknownCritical: string[] = [];
      const extNode = f.slice(i).find((n) => isContext(n, 3));
      if (extNode) {
        for (const ext of expectSequence(children(extNode)[0], 'extensions')) {
          const parts = expectSequence(ext, 'extension', 2);
          const id = readOid(parts[0], 'extnID');
          const critical = parts.length === 3 ? readBoolean(parts[1], 'critical') : false;
          const value = readOctetString(parts[parts.length - 1], 'extnValue');
          const inner = parseExact(value);
          switch (id) {
            case OID.subjectKeyIdentifier:
              this.subjectKeyId = Buffer.from(readOctetString(inner, 'subjectKeyIdentifier'));
              break;
            case OID.authorityKeyIdentifier: {
              const keyId = expectSequence(inner, 'authorityKeyIdentifier').find((n) => isContext(n, 0));
              if (keyId) this.authorityKeyId = Buffer.from(content(keyId));
              break;
            }
            case OID.keyUsage:
              this.keyUsage = keyUsageBits(inner);
              break;
            case OID.extKeyUsage:
              this.extKeyUsage = expectSequence(inner, 'extKeyUsage').map((n) => readOid(n, 'KeyPurposeId'));
              break;
            case OID.basicConstraints: {
              const bc = expectSequence(inner, 'basicConstraints');
              let ca = false;
              let pathLen: number | undefined;
              for (const n of bc) {
                if (isUniversal(n, Tag.BOOLEAN)) ca = readBoolean(n, 'cA');
                else if (isUniversal(n, Tag.INTEGER)) pathLen = readSmallInt(n, 'pathLenConstraint');
              }
              this.basicConstraints = { ca, pathLen };
              break;
            }
            case OID.subjectAltName:
              for (const gn of expectSequence(inner, 'subjectAltName')) {
                if (isContext(gn, 1)) emails.push(content(gn).toString('latin1')); // rfc822Name IA5String
              }
              break;
            default:
              if (critical && !UNDERSTOOD.has(id)) unknownCritical.push(id);
          }
        }
      }
      this.emailAddresses = emails;
      this.unknownCritical = unknownCritical;
    } catch (e) {
      if (e instanceof Asn1Error) throw new CertificateError(`malformed certificate: ${e.message}`);
      throw e;
    }
    this.subject = this.x509.subject.replace(/\n/g, ', ');
    this.issuer = this.x509.issuer.replace(/\n/g, ', ');
    this.fingerprint = createHash('sha256').update(der).digest('hex');
  }

  static fromDer(der: Buffer): Certificate {
    return new Certificate(Buffer.from(der));
  }

  /** Every CERTIFICATE block in a PEM text (order kept); throws if there is none. */
  static fromPem(pem: string | Buffer): Certificate[] {
    const text = pem.toString();
    const certs = [...text.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map(
      (m) => new Certificate(Buffer.from(m[1].replace(/\s+/g, ''), 'base64')),
    );
    if (certs.length === 0) throw new CertificateError('no PEM CERTIFICATE block found');
    return certs;
  }

  /** PEM or DER, whichever the bytes are. */
  static load(data: Buffer): Certificate[] {
    return data.includes('-----BEGIN CERTIFICATE-----') ? Certificate.fromPem(data) : [Certificate.fromDer(data)];
  }

  /** Cached: X509Certificate.publicKey builds a new KeyObject on every access. */
  get publicKey(): KeyObject {
    this.cachedPublicKey ??= this.x509.publicKey;
    return this.cachedPublicKey;
  }

  get isCA(): boolean {
    return this.basicConstraints?.ca === true;
  }

  get isSelfIssued(): boolean {
    return this.issuerDer.equals(this.subjectDer);
  }

  /** Key size in bits for RSA keys, undefined for others. */
  get rsaBits(): number | undefined {
    return this.publicKey.asymmetricKeyDetails?.modulusLength;
  }

  hasKeyUsage(bit: KeyUsageName): boolean {
    return this.keyUsage === undefined || this.keyUsage.has(bit);
  }

  /** Does the certificate name this address? Local part exact, domain case-insensitive (RFC 8550 3). */
  hasEmail(address: string): boolean {
    const want = normaliseAddress(address);
    return this.emailAddresses.some((a) => normaliseAddress(a) === want);
  }

  toPem(): string {
    return `-----BEGIN CERTIFICATE-----\n${this.der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
  }

  toString(): string {
    return `${this.subject} (serial ${this.serial.toString('hex')})`;
  }
}

/** Lower-cases the domain of an address; the local part is case-sensitive by RFC 5321. */
export function normaliseAddress(address: string): string {
  const a = address.trim();
  const at = a.lastIndexOf('@');
  return at < 0 ? a : a.slice(0, at) + '@' + a.slice(at + 1).toLowerCase();
}

function emailsFromName(name: Asn1Node): string[] {
  const out: string[] = [];
  for (const rdn of children(name)) {
    for (const atv of children(rdn)) {
      const [type, value] = expectSequence(atv, 'AttributeTypeAndValue', 2);
      if (readOid(type) === OID.emailAddress) out.push(readString(value, 'emailAddress'));
    }
  }
  return out;
}

function keyUsageBits(node: Asn1Node): Set<KeyUsageName> {
  const { bytes } = readBitString(node, 'keyUsage');
  const out = new Set<KeyUsageName>();
  for (const [name, bit] of Object.entries(KeyUsage) as [KeyUsageName, number][]) {
    const byte = bytes[bit >> 3];
    if (byte !== undefined && byte & (0x80 >> (bit & 7))) out.add(name);
  }
  return out;
}

/** Parses one DER certificate out of a larger structure (CMS certificates field). */
export function certificateFromNode(node: Asn1Node): Certificate {
  return Certificate.fromDer(encoding(node));
}
