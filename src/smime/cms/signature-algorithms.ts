/**
 * SignerInfo signature algorithms (RFC 5652 5.3) mapped onto Node's crypto.sign/verify:
 * RSA PKCS#1 v1.5 (RFC 3370), RSASSA-PSS (RFC 4056), ECDSA (RFC 5753/5758) and Ed25519
 * (RFC 8419). Node does the hashing and the DER signature formats CMS uses, so nothing
 * here touches a signature's bytes.
 */
import { constants, sign, verify, type KeyObject } from 'node:crypto';
import {
  Asn1Error, algorithm, children, explicit, expectSequence, integer, isContext, isUniversal, nullValue, readOid, readSmallInt,
  sequence, Tag, type Asn1Node,
} from '../../asn1/der';
import { OID } from '../../asn1/oids';
import { CmsError } from './content-info';
import { DIGEST_LENGTH, digestName, digestOid, type DigestName } from './digest';

/** A signature algorithm we cannot or will not check; verification reports it instead of throwing. */
export class UnsupportedSignatureError extends Error {
  override name = 'UnsupportedSignatureError';
}

export interface Signer {
  /** DER AlgorithmIdentifier for SignerInfo.signatureAlgorithm. */
  algorithmId: Buffer;
  sign(data: Buffer): Buffer;
}

export interface Verifier {
  /** Readable name for reports, e.g. "RSA-SHA256", "RSASSA-PSS-SHA384", "ECDSA-SHA256", "Ed25519". */
  name: string;
  verify(data: Buffer, signature: Buffer, publicKey: KeyObject): boolean;
}

/** The digest OID if we know it, undefined otherwise (digestName throws for unknown ones). */
export function knownDigest(oid: string): DigestName | undefined {
  try {
    return digestName(oid);
  } catch (e) {
    if (e instanceof CmsError) return undefined;
    throw e;
  }
}

const RSA_PKCS1_BY_DIGEST: Partial<Record<DigestName, string>> = {
  sha1: OID.sha1WithRSAEncryption,
  sha224: OID.sha224WithRSAEncryption,
  sha256: OID.sha256WithRSAEncryption,
  sha384: OID.sha384WithRSAEncryption,
  sha512: OID.sha512WithRSAEncryption,
};

const ECDSA_BY_DIGEST: Record<DigestName, string> = {
  sha1: OID.ecdsaWithSHA1,
  sha224: OID.ecdsaWithSHA224,
  sha256: OID.ecdsaWithSHA256,
  sha384: OID.ecdsaWithSHA384,
  sha512: OID.ecdsaWithSHA512,
};

const invert = (m: Partial<Record<DigestName, string>>): Record<string, DigestName> =>
  Object.fromEntries(Object.entries(m).map(([d, o]) => [o, d as DigestName]));
const RSA_PKCS1_BY_OID = invert(RSA_PKCS1_BY_DIGEST);
const ECDSA_BY_OID = invert(ECDSA_BY_DIGEST);

const upper = (d: DigestName): string => d.toUpperCase();

/**
 * Hash AlgorithmIdentifier inside RSASSA-PSS-params. RFC 4055 2.1 asks for NULL parameters
 * there (and OpenSSL writes NULL), unlike digestAlgorithm where they are absent.
 */
const pssHashId = (d: DigestName): Buffer => algorithm(digestOid(d), nullValue());

/** RSASSA-PSS-params with every field explicit: hash, MGF1 with the same hash, salt = hash length. */
function pssAlgorithmId(d: DigestName): Buffer {
  return algorithm(OID.rsassaPss, sequence(
    explicit(0, pssHashId(d)),
    explicit(1, algorithm(OID.mgf1, pssHashId(d))),
    explicit(2, integer(DIGEST_LENGTH[d])),
  ));
}

/** AlgorithmIdentifiers written on every signature, encoded once. */
const ALGORITHM_IDS = new Map<string, Buffer>();
function algorithmIdOnce(key: string, make: () => Buffer): Buffer {
  let id = ALGORITHM_IDS.get(key);
  if (!id) ALGORITHM_IDS.set(key, (id = make()));
  return id;
}

/** How `key` signs with `digest` (Ed25519 ignores it: PureEdDSA hashes internally). */
export function signerFor(key: KeyObject, digest: DigestName, pss: boolean): Signer {
  const type = key.asymmetricKeyType;
  if (pss && type !== 'rsa' && type !== 'rsa-pss') throw new CmsError(`RSASSA-PSS needs an RSA key, not ${type}`);
  switch (type) {
    case 'rsa-pss':
    case 'rsa': {
      if (pss || type === 'rsa-pss') {
        const saltLength = DIGEST_LENGTH[digest];
        const padding = constants.RSA_PKCS1_PSS_PADDING;
        return { algorithmId: algorithmIdOnce(`pss-${digest}`, () => pssAlgorithmId(digest)), sign: (data) => sign(digest, data, { key, padding, saltLength }) };
      }
      // rsaEncryption rather than sha256WithRSAEncryption: what OpenSSL, gpgsm and NSS write (RFC 3370 3.2).
      return { algorithmId: algorithmIdOnce('rsa', () => algorithm(OID.rsaEncryption, nullValue())), sign: (data) => sign(digest, data, key) };
    }
    case 'ec':
      // Node's default dsaEncoding is DER, the Ecdsa-Sig-Value CMS carries.
      return { algorithmId: algorithmIdOnce(`ecdsa-${digest}`, () => algorithm(ECDSA_BY_DIGEST[digest])), sign: (data) => sign(digest, data, key) };
    case 'ed25519':
      return { algorithmId: algorithmIdOnce('ed25519', () => algorithm(OID.ed25519)), sign: (data) => sign(null, data, key) };
    default:
      throw new CmsError(`cannot sign with a ${type} key`);
  }
}

function requireKeyType(publicKey: KeyObject, types: readonly string[], name: string): void {
  const type = publicKey.asymmetricKeyType ?? 'unknown';
  if (!types.includes(type)) throw new UnsupportedSignatureError(`public key type ${type} does not match signature algorithm ${name}`);
}

/** The hash named by a signature OID must agree with SignerInfo.digestAlgorithm (as OpenSSL insists for PSS). */
function requireSameDigest(named: DigestName, digest: DigestName, name: string): void {
  if (named !== digest) throw new UnsupportedSignatureError(`signature algorithm ${name} does not match digest algorithm ${digest}`);
}

function pkcs1Verifier(digest: DigestName): Verifier {
  const name = `RSA-${upper(digest)}`;
  return {
    name,
    verify(data, signature, publicKey) {
      requireKeyType(publicKey, ['rsa'], name);
      return verify(digest, data, publicKey, signature);
    },
  };
}

function ecdsaVerifier(digest: DigestName): Verifier {
  const name = `ECDSA-${upper(digest)}`;
  return {
    name,
    verify(data, signature, publicKey) {
      requireKeyType(publicKey, ['ec'], name);
      return verify(digest, data, publicKey, signature);
    },
  };
}

const ED25519_VERIFIER: Verifier = {
  name: 'Ed25519',
  verify(data, signature, publicKey) {
    requireKeyType(publicKey, ['ed25519'], 'Ed25519');
    return verify(null, data, publicKey, signature);
  },
};

/** A hash AlgorithmIdentifier inside PSS parameters (NULL or absent parameters both accepted). */
function readHashId(node: Asn1Node, what: string): DigestName {
  const oid = readOid(expectSequence(node, what, 1)[0], what);
  const d = knownDigest(oid);
  if (!d) throw new UnsupportedSignatureError(`unsupported ${what} ${oid}`);
  return d;
}

/** Salt of a 16384-bit modulus with SHA-1; anything longer is hostile. */
const MAX_PSS_SALT = 2048;

/** RSASSA-PSS-params (RFC 4055 3.1), applying the SHA-1 defaults for omitted fields. */
function pssVerifier(params: Asn1Node | undefined, digest: DigestName): Verifier {
  let hash: DigestName = 'sha1';
  let mgfHash: DigestName = 'sha1';
  let saltLength = 20;
  for (const field of params ? expectSequence(params, 'RSASSA-PSS-params') : []) {
    if (!isContext(field, 0) && !isContext(field, 1) && !isContext(field, 2) && !isContext(field, 3)) {
      throw new Asn1Error('RSASSA-PSS-params: unexpected field');
    }
    const [inner] = children(field);
    if (field.tag === 0) hash = readHashId(inner, 'PSS hash algorithm');
    else if (field.tag === 1) {
      const [mgf, mgfParams] = expectSequence(inner, 'maskGenAlgorithm', 2);
      const mgfOid = readOid(mgf, 'maskGenAlgorithm');
      if (mgfOid !== OID.mgf1) throw new UnsupportedSignatureError(`unsupported PSS mask generation function ${mgfOid}`);
      mgfHash = readHashId(mgfParams, 'MGF1 hash algorithm');
    } else if (field.tag === 2) saltLength = readSmallInt(inner, 'saltLength');
    else if (readSmallInt(inner, 'trailerField') !== 1) throw new UnsupportedSignatureError('unsupported PSS trailerField');
  }
  const name = `RSASSA-PSS-${upper(hash)}`;
  // Longer than any RSA modulus could hold (and than Node accepts): such a signature cannot verify.
  if (saltLength > MAX_PSS_SALT) throw new UnsupportedSignatureError(`${name} salt length ${saltLength} is out of range`);
  // Node's verify takes one hash for both the message and MGF1.
  if (mgfHash !== hash) throw new UnsupportedSignatureError(`unsupported ${name} with MGF1-${upper(mgfHash)}`);
  requireSameDigest(hash, digest, name);
  const padding = constants.RSA_PKCS1_PSS_PADDING;
  return {
    name,
    verify(data, signature, publicKey) {
      requireKeyType(publicKey, ['rsa', 'rsa-pss'], name);
      return verify(hash, data, { key: publicKey, padding, saltLength }, signature);
    },
  };
}

/**
 * The verifier for a SignerInfo.signatureAlgorithm given its digestAlgorithm. Throws
 * UnsupportedSignatureError for algorithms we do not check, Asn1Error for malformed parameters.
 */
export function verifierFor(algorithmId: Asn1Node, digest: DigestName): Verifier {
  const [oidNode, params] = expectSequence(algorithmId, 'signatureAlgorithm', 1);
  const oid = readOid(oidNode, 'signatureAlgorithm');
  // rsaEncryption and id-ecPublicKey name only the key: the hash is digestAlgorithm's.
  if (oid === OID.rsaEncryption) return pkcs1Verifier(digest);
  if (oid === OID.ecPublicKey) return ecdsaVerifier(digest);
  if (oid === OID.ed25519) return ED25519_VERIFIER;
  if (oid === OID.rsassaPss) return pssVerifier(params && !isUniversal(params, Tag.NULL) ? params : undefined, digest);
  const pkcs1 = RSA_PKCS1_BY_OID[oid];
  if (pkcs1) {
    requireSameDigest(pkcs1, digest, `RSA-${upper(pkcs1)}`);
    return pkcs1Verifier(pkcs1);
  }
  const ecdsa = ECDSA_BY_OID[oid];
  if (ecdsa) {
    requireSameDigest(ecdsa, digest, `ECDSA-${upper(ecdsa)}`);
    return ecdsaVerifier(ecdsa);
  }
  throw new UnsupportedSignatureError(`unsupported signature algorithm ${oid}`);
}
