/**
 * Private keys and credentials: PEM/DER keys through Node's OpenSSL, PKCS#12 (RFC 7292)
 * decoded here with the project's DER reader and Node crypto.
 *
 * PKCS#12 is decoded by hand rather than with node-forge because forge feeds PBKDF2 the
 * passphrase's UTF-16 code units truncated to bytes, so a non-ASCII passphrase fails on the
 * OpenSSL 3 default format (PBES2), which wants UTF-8. forge is used only for RC2, which
 * OpenSSL 1.x used by default for p12 certificates and which OpenSSL 3 moved to its legacy
 * provider, out of Node's reach.
 *
 * Error messages are one line and never echo key bytes or passphrases.
 */
import {
  createDecipheriv, createHash, createHmac, createPrivateKey, createPublicKey, pbkdf2Sync, timingSafeEqual, type KeyObject, type PrivateKeyInput,
} from 'node:crypto';
import {
  Asn1Error, children, encoding, expectSequence, isContext, isUniversal, parse, parseExact, readOctetString, readOid, readSmallInt, stringValue,
  Tag, type Asn1Node,
} from '../asn1/der';
import { OID } from '../asn1/oids';
import { Certificate, CertificateError } from './certificate';

export class KeyError extends Error {
  override name = 'KeyError';
}

export interface Credentials {
  key: KeyObject;
  cert: Certificate;
  /** The other certificates that came with the key (intermediates, roots), in file order. */
  chain: Certificate[];
}

/** A DER PFX: SEQUENCE { version 3, ContentInfo, ... }. */
export function isPkcs12(data: Buffer): boolean {
  try {
    const [version, authSafe] = expectSequence(parse(data), 'PFX', 2);
    return readSmallInt(version) === 3 && isUniversal(expectSequence(authSafe, 'authSafe', 1)[0], Tag.OID);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// PEM / DER private keys

/** DER encodings tried in turn; PEM says its own type. */
const DER_KEY_TYPES = ['pkcs8', 'pkcs1', 'sec1'] as const;

/** PEM PKCS#8 (plain or ENCRYPTED), PKCS#1, SEC1, or DER PKCS#8/PKCS#1/SEC1. */
export function loadPrivateKey(data: Buffer, passphrase?: string): KeyObject {
  if (isPkcs12(data)) throw new KeyError('private key: this is a PKCS#12 file, which needs its passphrase and a PKCS#12 loader');
  if (data.includes('-----BEGIN')) return createKey(data, { key: data, format: 'pem', passphrase });
  for (const type of DER_KEY_TYPES) {
    try {
      return createKey(data, { key: data, format: 'der', type, passphrase });
    } catch (e) {
      // A passphrase problem means the encoding was recognised: trying others would hide it.
      if ((e as KeyError).message === NEED_PASSPHRASE || (e as KeyError).message === BAD_PASSPHRASE) throw e;
    }
  }
  throw new KeyError(NOT_A_KEY);
}

function createKey(data: Buffer, options: PrivateKeyInput): KeyObject {
  try {
    return createPrivateKey(options);
  } catch (e) {
    throw keyErrorFrom(e, data);
  }
}

const NEED_PASSPHRASE = 'private key is encrypted: a passphrase is required';
const BAD_PASSPHRASE = 'private key: wrong passphrase';
const NOT_A_KEY = 'not a private key (expected PEM PKCS#8, PKCS#1 or SEC1, or DER)';

/** Maps OpenSSL's errors to messages a user can act on. */
function keyErrorFrom(e: unknown, data: Buffer): KeyError {
  const code = (e as { code?: string }).code;
  if (code === 'ERR_MISSING_PASSPHRASE' || code === 'ERR_OSSL_CRYPTO_INTERRUPTED_OR_CANCELLED') {
    return new KeyError(NEED_PASSPHRASE);
  }
  if (code === 'ERR_OSSL_BAD_DECRYPT') return new KeyError(BAD_PASSPHRASE);
  if (data.includes('-----BEGIN') && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(data.toString('latin1'))) {
    return new KeyError('no PEM PRIVATE KEY block found');
  }
  return new KeyError(NOT_A_KEY);
}

// ---------------------------------------------------------------------------
// PKCS#12

/** Iteration counts beyond this are taken as corruption rather than minutes of work. */
const MAX_ITERATIONS = 10_000_000;

/** The passphrase in the two encodings PKCS#12 uses. */
interface Secret {
  /** For PBES2/PBKDF2 (RFC 8018): the UTF-8 octets. */
  utf8: Buffer;
  /** For the PKCS#12 KDF (RFC 7292 B.1): big-endian UTF-16 with a 2-octet terminator. */
  bmp: Buffer;
}

interface Pkcs12Contents {
  keys: KeyObject[];
  certs: Certificate[];
}

const WRONG_PASSPHRASE = 'PKCS#12: wrong passphrase or corrupted file';

/**
 * OpenSSL 3 default (PBES2/PBKDF2/AES-256-CBC, SHA-256 MAC), legacy 3DES/RC2 with SHA-1 MAC,
 * unencrypted bags and files without a MAC. The certificate whose public key matches a key
 * in the file becomes `cert`; the other certificates are the chain.
 */
export function loadPkcs12(data: Buffer, passphrase: string): Credentials {
  let contents: Pkcs12Contents;
  try {
    contents = decodePfx(data, passphrase);
  } catch (e) {
    if (e instanceof Asn1Error) throw new KeyError(`PKCS#12: malformed (${e.message})`);
    if (e instanceof CertificateError) throw new KeyError(`PKCS#12: ${e.message}`);
    throw e;
  }
  if (contents.keys.length === 0) throw new KeyError('PKCS#12: the file holds no private key');
  for (const key of contents.keys) {
    const cert = contents.certs.find((c) => sameKey(key, c.publicKey));
    if (cert) return { key, cert, chain: contents.certs.filter((c) => c !== cert) };
  }
  throw new KeyError('PKCS#12: no certificate in the file matches its private key');
}

function decodePfx(data: Buffer, passphrase: string): Pkcs12Contents {
  const [version, authSafe, macData] = expectSequence(parse(data), 'PFX', 2);
  if (readSmallInt(version, 'PFX version') !== 3) throw new KeyError('PKCS#12: unsupported version');
  const authSafeType = readOid(expectSequence(authSafe, 'authSafe', 1)[0], 'authSafe contentType');
  if (authSafeType !== OID.data) throw new KeyError('PKCS#12: public-key integrity mode is not supported');
  const signed = dataContent(authSafe, 'authSafe');
  const secret = macData ? verifyMac(macData, signed, passphrase) : secretsFor(passphrase)[0];
  const out: Pkcs12Contents = { keys: [], certs: [] };
  for (const info of expectSequence(parse(signed), 'AuthenticatedSafe')) {
    const type = readOid(expectSequence(info, 'ContentInfo', 1)[0], 'contentType');
    if (type === OID.data) readSafeBags(dataContent(info, 'SafeContents'), secret, out);
    else if (type === OID.encryptedData) readSafeBags(decryptEncryptedData(info, secret), secret, out);
    else throw new KeyError(`PKCS#12: unsupported content type ${type}`);
  }
  return out;
}

/** The OCTET STRING inside a ContentInfo's [0] EXPLICIT content (joined if BER-chunked). */
function dataContent(info: Asn1Node, what: string): Buffer {
  const explicit = expectSequence(info, what, 2)[1];
  if (!isContext(explicit, 0)) throw new Asn1Error(`${what}: expected [0] content`);
  return readOctetString(children(explicit)[0], what);
}

/**
 * An empty passphrase is ambiguous: OpenSSL writes the MAC with just the BMP terminator,
 * other tools with no octets at all, so both are tried against the MAC.
 */
function secretsFor(passphrase: string): Secret[] {
  const utf8 = Buffer.from(passphrase, 'utf8');
  const utf16 = Buffer.from(passphrase, 'utf16le').swap16();
  const bmp = Buffer.concat([utf16, Buffer.alloc(2)]);
  return passphrase === '' ? [{ utf8, bmp }, { utf8, bmp: Buffer.alloc(0) }] : [{ utf8, bmp }];
}

/** MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING, iterations INTEGER DEFAULT 1 } */
function verifyMac(macData: Asn1Node, signed: Buffer, passphrase: string): Secret {
  const [digestInfo, saltNode, iterationsNode] = expectSequence(macData, 'MacData', 2);
  const [algorithm, digestNode] = expectSequence(digestInfo, 'MAC DigestInfo', 2);
  const hash = digestName(readOid(expectSequence(algorithm, 'MAC algorithm', 1)[0], 'MAC algorithm'));
  const expected = readOctetString(digestNode, 'MAC digest');
  const salt = readOctetString(saltNode, 'MAC salt');
  const iterations = iterationsNode ? readIterations(iterationsNode) : 1;
  const keyLength = createHash(hash).digest().length;
  for (const secret of secretsFor(passphrase)) {
    const key = pkcs12Kdf(hash, secret.bmp, salt, KdfPurpose.Mac, iterations, keyLength);
    const mac = createHmac(hash, key).update(signed).digest();
    if (mac.length === expected.length && timingSafeEqual(mac, expected)) return secret;
  }
  throw new KeyError(`${WRONG_PASSPHRASE} (MAC check failed)`);
}

const DIGESTS: Record<string, string> = {
  [OID.sha1]: 'sha1', [OID.sha224]: 'sha224', [OID.sha256]: 'sha256', [OID.sha384]: 'sha384', [OID.sha512]: 'sha512',
};

function digestName(oid: string): string {
  const name = DIGESTS[oid];
  if (!name) throw new KeyError(`PKCS#12: unsupported MAC digest ${oid}`);
  return name;
}

function readIterations(node: Asn1Node): number {
  const n = readSmallInt(node, 'iteration count');
  if (n < 1 || n > MAX_ITERATIONS) throw new KeyError(`PKCS#12: implausible iteration count ${n}`);
  return n;
}

/** SafeBag ::= SEQUENCE { bagId OID, bagValue [0] EXPLICIT ANY, bagAttributes SET OPTIONAL } */
function readSafeBags(safeContents: Buffer, secret: Secret, out: Pkcs12Contents): void {
  for (const bag of expectSequence(parse(safeContents), 'SafeContents')) {
    const [idNode, valueNode] = expectSequence(bag, 'SafeBag', 2);
    if (!isContext(valueNode, 0)) throw new Asn1Error('SafeBag: expected [0] bagValue');
    const value = children(valueNode)[0];
    switch (readOid(idNode, 'bagId')) {
      case OID.keyBag:
        out.keys.push(privateKeyFromPkcs8(Buffer.from(encoding(value))));
        break;
      case OID.pkcs8ShroudedKeyBag: {
        const [algorithm, encrypted] = expectSequence(value, 'EncryptedPrivateKeyInfo', 2);
        out.keys.push(privateKeyFromPkcs8(decrypt(algorithm, secret, readOctetString(encrypted, 'encryptedData'))));
        break;
      }
      case OID.certBag:
        out.certs.push(certificateFromBag(value));
        break;
      default:
        // CRL, secret and nested bags carry nothing cstp uses.
        break;
    }
  }
}

/** Takes ownership of the decrypted PrivateKeyInfo and wipes it once OpenSSL has its copy. */
function privateKeyFromPkcs8(der: Buffer): KeyObject {
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } catch {
    throw new KeyError('PKCS#12: unreadable private key');
  } finally {
    der.fill(0);
  }
}

/** CertBag ::= SEQUENCE { certId OID, certValue [0] EXPLICIT OCTET STRING } */
function certificateFromBag(bag: Asn1Node): Certificate {
  const [idNode, valueNode] = expectSequence(bag, 'CertBag', 2);
  const certType = readOid(idNode, 'certId');
  if (certType !== OID.x509Certificate) throw new KeyError(`PKCS#12: unsupported certificate type ${certType}`);
  if (!isContext(valueNode, 0)) throw new Asn1Error('CertBag: expected [0] certValue');
  return Certificate.fromDer(readOctetString(children(valueNode)[0], 'certValue'));
}

/** EncryptedData ::= SEQUENCE { version, EncryptedContentInfo { type, algorithm, [0] IMPLICIT content } } */
function decryptEncryptedData(info: Asn1Node, secret: Secret): Buffer {
  const explicit = expectSequence(info, 'ContentInfo', 2)[1];
  if (!isContext(explicit, 0)) throw new Asn1Error('EncryptedData: expected [0] content');
  const [, encryptedContentInfo] = expectSequence(children(explicit)[0], 'EncryptedData', 2);
  const [, algorithm, encrypted] = expectSequence(encryptedContentInfo, 'EncryptedContentInfo', 2);
  if (!encrypted || !isContext(encrypted, 0)) throw new KeyError('PKCS#12: encrypted bag without content');
  return decrypt(algorithm, secret, stringValue(encrypted));
}

// ---------------------------------------------------------------------------
// Password-based decryption

interface Pkcs12Pbe {
  cipher: 'des-ede3-cbc' | 'rc2';
  keyLength: number;
  /** RC2 effective key bits. */
  rc2Bits?: number;
}

const PKCS12_PBE: Record<string, Pkcs12Pbe> = {
  [OID.pbeWithSHAAnd3KeyTripleDesCbc]: { cipher: 'des-ede3-cbc', keyLength: 24 },
  [OID.pbeWithSHAAnd128BitRc2Cbc]: { cipher: 'rc2', keyLength: 16, rc2Bits: 128 },
  [OID.pbeWithSHAAnd40BitRc2Cbc]: { cipher: 'rc2', keyLength: 5, rc2Bits: 40 },
};

const PBES2_CIPHERS: Record<string, { name: string; keyLength: number }> = {
  [OID.aes128Cbc]: { name: 'aes-128-cbc', keyLength: 16 },
  [OID.aes192Cbc]: { name: 'aes-192-cbc', keyLength: 24 },
  [OID.aes256Cbc]: { name: 'aes-256-cbc', keyLength: 32 },
  [OID.desEde3Cbc]: { name: 'des-ede3-cbc', keyLength: 24 },
};

const PBKDF2_PRFS: Record<string, string> = {
  [OID.hmacWithSHA1]: 'sha1', [OID.hmacWithSHA224]: 'sha224', [OID.hmacWithSHA256]: 'sha256',
  [OID.hmacWithSHA384]: 'sha384', [OID.hmacWithSHA512]: 'sha512',
};

/**
 * Decrypts with the AlgorithmIdentifier `algorithm` to one DER value. Bad padding or a
 * plaintext that is not DER means a wrong passphrase or damage: without a MAC, about one
 * wrong passphrase in 256 still yields valid CBC padding.
 */
function decrypt(algorithm: Asn1Node, secret: Secret, data: Buffer): Buffer {
  const [oidNode, params] = expectSequence(algorithm, 'encryption AlgorithmIdentifier', 1);
  const oid = readOid(oidNode, 'encryption algorithm');
  const pbe = PKCS12_PBE[oid];
  if (oid !== OID.pbes2 && !pbe) throw new KeyError(`PKCS#12: unsupported encryption algorithm ${oid}`);
  let plain: Buffer;
  try {
    plain = pbe ? pkcs12PbeDecrypt(pbe, params, secret, data) : pbes2Decrypt(params, secret, data);
  } catch (e) {
    if (e instanceof KeyError || e instanceof Asn1Error) throw e;
    throw new KeyError(`${WRONG_PASSPHRASE} (decryption failed)`);
  }
  try {
    parseExact(plain);
  } catch {
    throw new KeyError(`${WRONG_PASSPHRASE} (decryption failed)`);
  }
  return plain;
}

/** pkcs-12PbeParams ::= SEQUENCE { salt OCTET STRING, iterations INTEGER }, keys from the RFC 7292 KDF. */
function pkcs12PbeDecrypt(pbe: Pkcs12Pbe, params: Asn1Node | undefined, secret: Secret, data: Buffer): Buffer {
  const [saltNode, iterationsNode] = expectSequence(params, 'pkcs-12PbeParams', 2);
  const salt = readOctetString(saltNode, 'PBE salt');
  const iterations = readIterations(iterationsNode);
  const key = pkcs12Kdf('sha1', secret.bmp, salt, KdfPurpose.Key, iterations, pbe.keyLength);
  const iv = pkcs12Kdf('sha1', secret.bmp, salt, KdfPurpose.Iv, iterations, 8);
  return pbe.rc2Bits ? rc2Decrypt(key, iv, pbe.rc2Bits, data) : nodeDecrypt(pbe.cipher, key, iv, data);
}

/** PBES2-params ::= SEQUENCE { keyDerivationFunc PBKDF2, encryptionScheme } (RFC 8018 A.4). */
function pbes2Decrypt(params: Asn1Node | undefined, secret: Secret, data: Buffer): Buffer {
  const [kdf, scheme] = expectSequence(params, 'PBES2-params', 2);
  const [kdfOid, kdfParams] = expectSequence(kdf, 'keyDerivationFunc', 2);
  const kdfName = readOid(kdfOid, 'keyDerivationFunc');
  if (kdfName !== OID.pbkdf2) throw new KeyError(`PKCS#12: unsupported key derivation ${kdfName}`);
  // PBKDF2-params ::= SEQUENCE { salt, iterationCount, keyLength OPTIONAL, prf DEFAULT hmacWithSHA1 }
  const p = expectSequence(kdfParams, 'PBKDF2-params', 2);
  const salt = readOctetString(p[0], 'PBKDF2 salt');
  const iterations = readIterations(p[1]);
  const prfNode = p.slice(2).find((n) => isUniversal(n, Tag.SEQUENCE));
  const prf = prfNode ? PBKDF2_PRFS[readOid(expectSequence(prfNode, 'prf', 1)[0], 'prf')] : 'sha1';
  if (!prf) throw new KeyError('PKCS#12: unsupported PBKDF2 pseudo-random function');
  const [cipherOid, ivNode] = expectSequence(scheme, 'encryptionScheme', 2);
  const cipherName = readOid(cipherOid, 'encryptionScheme');
  const cipher = PBES2_CIPHERS[cipherName];
  if (!cipher) throw new KeyError(`PKCS#12: unsupported cipher ${cipherName}`);
  const key = pbkdf2Sync(secret.utf8, salt, iterations, cipher.keyLength, prf);
  return nodeDecrypt(cipher.name, key, readOctetString(ivNode, 'IV'), data);
}

function nodeDecrypt(cipher: string, key: Buffer, iv: Buffer, data: Buffer): Buffer {
  const decipher = createDecipheriv(cipher, key, iv);
  return Buffer.concat([decipher.update(data), decipher.final()]);
}

function rc2Decrypt(key: Buffer, iv: Buffer, bits: number, data: Buffer): Buffer {
  // Loaded on demand: only OpenSSL 1.x-era files need it, and it costs every CLI start ~35 ms.
  const forge = require('node-forge') as typeof import('node-forge');
  const decipher = forge.rc2.createDecryptionCipher(key.toString('binary'), bits);
  decipher.start(iv.toString('binary'));
  decipher.update(forge.util.createBuffer(data.toString('binary')));
  if (!decipher.finish()) throw new Error('RC2 padding');
  return Buffer.from(decipher.output.getBytes(), 'binary');
}

/** Diversifier IDs of RFC 7292 B.3. */
const enum KdfPurpose {
  Key = 1,
  Iv = 2,
  Mac = 3,
}

/** RFC 7292 appendix B.2: the PKCS#12 key derivation used by the MAC and the legacy PBE schemes. */
function pkcs12Kdf(hash: string, password: Buffer, salt: Buffer, id: KdfPurpose, iterations: number, length: number): Buffer {
  const v = hash === 'sha384' || hash === 'sha512' ? 128 : 64; // hash block size in octets
  const d = Buffer.alloc(v, id);
  const i = Buffer.concat([fillBlocks(salt, v), fillBlocks(password, v)]);
  const out: Buffer[] = [];
  for (let produced = 0; ; ) {
    let a = createHash(hash).update(d).update(i).digest();
    for (let r = 1; r < iterations; r++) a = createHash(hash).update(a).digest();
    out.push(a);
    produced += a.length;
    if (produced >= length) return Buffer.concat(out).subarray(0, length);
    const b = fillBlocks(a, v).subarray(0, v);
    for (let j = 0; j < i.length; j += v) addBlockPlusOne(i, j, b);
  }
}

/** `data` repeated to fill ceil(len/v) blocks of v octets (empty stays empty). */
function fillBlocks(data: Buffer, v: number): Buffer {
  const out = Buffer.alloc(v * Math.ceil(data.length / v));
  for (let k = 0; k < out.length; k++) out[k] = data[k % data.length];
  return out;
}

/** I_j = (I_j + B + 1) mod 2^(8v), big-endian, in place. */
function addBlockPlusOne(i: Buffer, offset: number, b: Buffer): void {
  let carry = 1;
  for (let k = b.length - 1; k >= 0; k--) {
    const sum = i[offset + k] + b[k] + carry;
    i[offset + k] = sum & 0xff;
    carry = sum >> 8;
  }
}

// ---------------------------------------------------------------------------
// Credentials

/**
 * For the CLI: `--cert C.pem --key K.pem`, `--cert C.pem --key X.p12`, `--key X.p12` alone
 * (passed as the first argument), or one PEM holding both certificate(s) and key. When the
 * certificate file holds several certificates, the one matching the key is used and the rest
 * become the chain.
 */
export function loadCredentials(certOrP12: Buffer, key?: Buffer, passphrase?: string): Credentials {
  if (isPkcs12(certOrP12)) return loadPkcs12(certOrP12, passphrase ?? '');
  const certs = Certificate.load(certOrP12);
  if (key && isPkcs12(key)) {
    const p12 = loadPkcs12(key, passphrase ?? '');
    return matchCertificate(p12.key, certs, [p12.cert, ...p12.chain]);
  }
  if (!key && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(certOrP12.toString('latin1'))) {
    throw new KeyError('no private key given (pass a key file, or a PKCS#12 file)');
  }
  return matchCertificate(loadPrivateKey(key ?? certOrP12, passphrase), certs, []);
}

/** Picks the certificate for `key`; every other certificate, deduplicated, joins the chain. */
function matchCertificate(key: KeyObject, certs: Certificate[], extra: Certificate[]): Credentials {
  const cert = certs.find((c) => sameKey(key, c.publicKey));
  if (!cert) throw new KeyError(`the private key does not match the certificate "${certs[0].subject}"`);
  const seen = new Set([cert.fingerprint]);
  const chain: Certificate[] = [];
  for (const c of [...certs, ...extra]) {
    if (!seen.has(c.fingerprint)) chain.push(c);
    seen.add(c.fingerprint);
  }
  return { key, cert, chain };
}

/** Compares public keys; via JWK so that compressed and uncompressed EC points compare equal. */
function sameKey(privateKey: KeyObject, publicKey: KeyObject): boolean {
  return publicKeyId(createPublicKey(privateKey)) === publicKeyId(publicKey);
}

function publicKeyId(key: KeyObject): string {
  try {
    const { kty, crv, n, e, x, y } = key.export({ format: 'jwk' });
    return JSON.stringify([kty, crv, n, e, x, y]);
  } catch {
    // Types without a JWK form (RSA-PSS) compare by their SPKI encoding.
    return key.export({ type: 'spki', format: 'der' }).toString('hex');
  }
}
