/**
 * Key generation, self-signed certificates and PKCS#10 certification requests, for `cstp init`
 * and the demo keys of a fresh gateway. Built with Node crypto and the project's DER writer so
 * that a gateway needs no openssl binary at runtime.
 */
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import {
  algorithm, bitString, boolean, explicit, ia5String, implicitPrimitive, integer, nullValue, octetString, oid, parseExact, readBitString, sequence,
  set, expectSequence, time, tlv, utf8String,
} from '../asn1/der';
import { OID } from '../asn1/oids';
import { Certificate, KeyUsage, type KeyUsageName } from './certificate';

/** Attribute and extension OIDs only this module writes. */
const ISSUE_OID = {
  organizationName: '2.5.4.10',
  extensionRequest: '1.2.840.113549.1.9.14',
} as const;

export type KeyAlgorithm = 'rsa-2048' | 'rsa-3072' | 'ec-p256';

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function generateKeyPair(alg: KeyAlgorithm): KeyPair {
  switch (alg) {
    case 'rsa-2048':
      return generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
    case 'rsa-3072':
      return generateKeyPairSync('rsa', { modulusLength: 3072, publicExponent: 0x10001 });
    case 'ec-p256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    default:
      throw new RangeError(`unknown key algorithm ${String(alg)}`);
  }
}

export interface SubjectName {
  commonName: string;
  organization?: string;
  /** Written as the legacy emailAddress attribute too, for clients that only look there. */
  email?: string;
}

export interface SelfSignedOptions {
  /** The private key; the certificate carries its public half and is signed with it. */
  key: KeyObject;
  subject: SubjectName;
  /** rfc822Name subjectAltNames (RFC 8550 3: where S/MIME agents look for the address). */
  emails?: string[];
  dnsNames?: string[];
  days: number;
  keyUsage: KeyUsageName[];
  /** extendedKeyUsage OIDs; omitted from the certificate when empty or absent. */
  extKeyUsage?: string[];
  ca?: boolean;
  /** Start of validity; default now. Backdated by five minutes for peers with slow clocks. */
  now?: Date;
}

const CLOCK_SKEW_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

export function selfSignedCertificate(opts: SelfSignedOptions): Certificate {
  if (!(opts.days > 0)) throw new RangeError('certificate validity must be at least one day');
  const spki = publicKeyInfo(opts.key);
  const ski = subjectKeyIdentifier(spki);
  const name = encodeName(opts.subject);
  const now = opts.now ?? new Date();
  const notBefore = new Date(Math.floor((now.getTime() - CLOCK_SKEW_MS) / 1000) * 1000);
  const notAfter = new Date(notBefore.getTime() + CLOCK_SKEW_MS + opts.days * DAY_MS);
  const signatureAlgorithm = signatureAlgorithmFor(opts.key);
  const extensions = [
    extension(OID.basicConstraints, true, opts.ca ? sequence(boolean(true)) : sequence()),
    extension(OID.keyUsage, true, keyUsageBits(opts.keyUsage)),
    ...(opts.extKeyUsage?.length ? [extension(OID.extKeyUsage, false, sequence(...opts.extKeyUsage.map(oid)))] : []),
    ...subjectAltName(opts.emails, opts.dnsNames),
    extension(OID.subjectKeyIdentifier, false, octetString(ski)),
    // Same as the SKI: lets path builders match the self-signed certificate to itself by key id.
    extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, ski))),
  ];
  const tbs = sequence(
    explicit(0, integer(2)),
    integer(serialNumber()),
    signatureAlgorithm,
    name,
    sequence(time(notBefore), time(notAfter)),
    name,
    spki,
    explicit(3, sequence(...extensions)),
  );
  return Certificate.fromDer(signStructure(tbs, signatureAlgorithm, opts.key));
}

export interface CertificationRequestOptions {
  key: KeyObject;
  subject: SubjectName;
  emails?: string[];
  /** Requested key usage; default what suits the key for S/MIME (sign + encrypt). */
  keyUsage?: KeyUsageName[];
}

/** A PKCS#10 request (RFC 2986) asking a CA for an S/MIME certificate; PEM. */
export function certificationRequest(opts: CertificationRequestOptions): string {
  const spki = publicKeyInfo(opts.key);
  const signatureAlgorithm = signatureAlgorithmFor(opts.key);
  const requested = sequence(
    extension(OID.keyUsage, true, keyUsageBits(opts.keyUsage ?? smimeKeyUsage(opts.key))),
    extension(OID.extKeyUsage, false, sequence(oid(OID.emailProtection))),
    ...subjectAltName(opts.emails, undefined),
  );
  const attributes = tlv(0xa0, sequence(oid(ISSUE_OID.extensionRequest), set(requested)));
  const info = sequence(integer(0), encodeName(opts.subject), spki, attributes);
  return toPem('CERTIFICATE REQUEST', signStructure(info, signatureAlgorithm, opts.key));
}

/** keyUsage an S/MIME certificate for this key needs: sign, plus the key's way of receiving (RFC 8550 4.4.2). */
export function smimeKeyUsage(key: KeyObject): KeyUsageName[] {
  return key.asymmetricKeyType === 'ec' ? ['digitalSignature', 'keyAgreement'] : ['digitalSignature', 'keyEncipherment'];
}

export function toPem(label: string, der: Buffer): string {
  const body = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n');
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

function publicKeyInfo(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}

/** RFC 7093 method 1: the leftmost 160 bits of SHA-256 over the subjectPublicKey bits. */
function subjectKeyIdentifier(spki: Buffer): Buffer {
  const [, keyBits] = expectSequence(parseExact(spki), 'subjectPublicKeyInfo', 2);
  return createHash('sha256').update(readBitString(keyBits).bytes).digest().subarray(0, 20);
}

function signatureAlgorithmFor(key: KeyObject): Buffer {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return algorithm(OID.sha256WithRSAEncryption, nullValue());
    case 'ec':
      return algorithm(OID.ecdsaWithSHA256);
    default:
      throw new RangeError(`cannot issue with a ${key.asymmetricKeyType} key (use RSA or EC P-256)`);
  }
}

/** SEQUENCE { tbs, algorithm, BIT STRING signature }; Node's ECDSA output is already DER. */
function signStructure(tbs: Buffer, signatureAlgorithm: Buffer, key: KeyObject): Buffer {
  return sequence(tbs, signatureAlgorithm, bitString(sign('sha256', tbs, key)));
}

/** 16 random bytes with the top bit clear: positive, and at most 20 octets as RFC 5280 requires. */
function serialNumber(): Buffer {
  const serial = randomBytes(16);
  serial[0] = (serial[0] & 0x7f) | 0x01;
  return serial;
}

function encodeName(subject: SubjectName): Buffer {
  const rdn = (type: string, value: Buffer): Buffer => set(sequence(oid(type), value));
  return sequence(
    ...(subject.organization ? [rdn(ISSUE_OID.organizationName, utf8String(subject.organization))] : []),
    rdn(OID.commonName, utf8String(subject.commonName)),
    ...(subject.email ? [rdn(OID.emailAddress, ia5String(subject.email))] : []),
  );
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value));
}

function subjectAltName(emails: string[] | undefined, dnsNames: string[] | undefined): Buffer[] {
  const names = [
    ...(emails ?? []).map((e) => implicitPrimitive(1, Buffer.from(e, 'latin1'))),
    ...(dnsNames ?? []).map((d) => implicitPrimitive(2, Buffer.from(d, 'latin1'))),
  ];
  return names.length ? [extension(OID.subjectAltName, false, sequence(...names))] : [];
}

/** A DER named-bit BIT STRING: trailing zero bits dropped and counted as unused (X.690 11.2.2). */
function keyUsageBits(names: KeyUsageName[]): Buffer {
  const highest = Math.max(...names.map((n) => KeyUsage[n]));
  if (!Number.isFinite(highest)) throw new RangeError('keyUsage needs at least one usage');
  const bytes = Buffer.alloc((highest >> 3) + 1);
  for (const n of names) bytes[KeyUsage[n] >> 3] |= 0x80 >> (KeyUsage[n] & 7);
  const unused = 7 - (highest & 7);
  return tlv(0x03, Buffer.from([unused]), bytes);
}

/** RFC 3183 section 4: the addresses a domain's signing and decrypting agent is known by. */
export function rfc3183Addresses(domain: string): string[] {
  return [`domain-signing-authority@${domain}`, `domain-confidentiality-authority@${domain}`];
}

export interface GatewayIdentityOptions {
  algorithm?: KeyAlgorithm;
  /** Default: the RFC 3183 domain addresses. */
  emails?: string[];
  days?: number;
}

/** A gateway's key and self-signed domain certificate (emailProtection; signing and key encipherment/agreement). */
export function gatewayIdentity(domain: string, opts: GatewayIdentityOptions = {}): { key: KeyObject; cert: Certificate; subject: SubjectName; emails: string[] } {
  const emails = opts.emails ?? rfc3183Addresses(domain);
  const { privateKey } = generateKeyPair(opts.algorithm ?? 'rsa-2048');
  const subject = { commonName: `cstp gateway ${domain}`, organization: domain, email: emails[0] };
  const cert = selfSignedCertificate({
    key: privateKey, subject, emails, days: opts.days ?? 730, keyUsage: smimeKeyUsage(privateKey), extKeyUsage: [OID.emailProtection],
  });
  return { key: privateKey, cert, subject, emails };
}
