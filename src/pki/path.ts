/**
 * Certificate path building and validation (RFC 5280 section 6, without policies, name
 * constraints or revocation) and the S/MIME end-entity rules of RFC 8550 section 4.4.
 *
 * Issuers are found by name chaining among the trust anchors and the certificates a message
 * or the caller supplies. Those are attacker-controlled, so the search backtracks over
 * same-named candidates (a wrong one must not hide a good path), never revisits a certificate,
 * and is bounded in depth and in signature checks.
 */
import { OID } from '../asn1/oids';
import type { Certificate, KeyUsageName } from './certificate';

export type Purpose = 'sign' | 'encrypt';

export type PathErrorCode =
  | 'untrusted'
  | 'expired'
  | 'not-yet-valid'
  | 'bad-signature'
  | 'not-ca'
  | 'path-length'
  | 'ca-key-usage'
  | 'key-usage'
  | 'ext-key-usage'
  | 'address-mismatch'
  | 'weak-key'
  | 'unknown-critical-extension';

export interface UsageOptions {
  purpose: Purpose;
  /** Every address must be named by the certificate (From/Sender to sign, recipient to encrypt). */
  addresses?: string[];
  /** Time of validity checks; default now. */
  at?: Date;
  /** Smallest RSA modulus accepted, for the leaf and every CA; default 2048. */
  minRsaBits?: number;
}

export interface PathOptions extends UsageOptions {
  anchors: Certificate[];
  intermediates?: Certificate[];
}

export type PathResult =
  | { ok: true; chain: Certificate[] /* leaf first, anchor last */ }
  | { ok: false; code: PathErrorCode; reason: string; chain?: Certificate[] };

type Failure = Extract<PathResult, { ok: false }>;
type Problem = Omit<Failure, 'chain'>;

/** Issuers searched above the leaf. */
const MAX_DEPTH = 8;
/** Signature verifications one validation may spend while backtracking. */
const MAX_SIGNATURE_CHECKS = 64;
const DEFAULT_MIN_RSA_BITS = 2048;

/** Key types (Node's asymmetricKeyType) that can produce a signature. */
const SIGNING_KEYS = new Set(['rsa', 'rsa-pss', 'ec', 'ed25519', 'ed448']);
/** The keyUsage bit each encryption-capable key type needs (RFC 8550 4.4.2). */
const ENCRYPTION_USAGE: Record<string, KeyUsageName> = {
  rsa: 'keyEncipherment', ec: 'keyAgreement', x25519: 'keyAgreement', x448: 'keyAgreement',
};

const problem = (code: PathErrorCode, reason: string): Problem => ({ ok: false, code, reason });

/** How a certificate is named in reasons: its subject, or for an empty subject its address. */
function label(cert: Certificate): string {
  return `"${cert.subject || cert.emailAddresses[0] || cert.fingerprint.slice(0, 16)}"`;
}

/** Leaf-only checks, no trust: what makes a certificate unusable for `purpose` whoever issued it. */
export function checkEndEntity(leaf: Certificate, opts: UsageOptions): PathResult {
  const found =
    basicProblem(leaf, opts.at ?? new Date(), opts.minRsaBits ?? DEFAULT_MIN_RSA_BITS) ??
    usageProblem(leaf, opts.purpose) ??
    addressProblem(leaf, opts.addresses ?? []);
  return found ? { ...found, chain: [leaf] } : { ok: true, chain: [leaf] };
}

/** Checks that apply to every certificate in a path: extensions understood, validity, key size. */
function basicProblem(cert: Certificate, at: Date, minRsaBits: number): Problem | undefined {
  if (cert.unknownCritical.length > 0) {
    return problem('unknown-critical-extension', `certificate ${label(cert)} has an unknown critical extension ${cert.unknownCritical.join(', ')}`);
  }
  if (at < cert.notBefore) {
    return problem('not-yet-valid', `certificate ${label(cert)} is not valid before ${cert.notBefore.toISOString()}`);
  }
  if (at > cert.notAfter) {
    return problem('expired', `certificate ${label(cert)} expired on ${cert.notAfter.toISOString()}`);
  }
  const bits = cert.rsaBits;
  if (bits !== undefined && bits < minRsaBits) {
    return problem('weak-key', `certificate ${label(cert)} has a ${bits}-bit RSA key; at least ${minRsaBits} bits are required`);
  }
  return undefined;
}

function usageProblem(leaf: Certificate, purpose: Purpose): Problem | undefined {
  const keyType = leaf.publicKey.asymmetricKeyType ?? 'unknown';
  if (purpose === 'sign') {
    if (!SIGNING_KEYS.has(keyType)) return problem('key-usage', `certificate ${label(leaf)} has a ${keyType} key, which cannot sign`);
    if (!leaf.hasKeyUsage('digitalSignature') && !leaf.hasKeyUsage('nonRepudiation')) {
      return problem('key-usage', `certificate ${label(leaf)} does not allow signing (keyUsage lacks digitalSignature and nonRepudiation)`);
    }
  } else {
    const needed = ENCRYPTION_USAGE[keyType];
    if (!needed) return problem('key-usage', `certificate ${label(leaf)} has a ${keyType} key, which cannot encrypt`);
    if (!leaf.hasKeyUsage(needed)) {
      return problem('key-usage', `certificate ${label(leaf)} does not allow encryption (keyUsage lacks ${needed})`);
    }
  }
  const eku = leaf.extKeyUsage;
  if (eku && !eku.includes(OID.emailProtection) && !eku.includes(OID.anyExtendedKeyUsage)) {
    return problem('ext-key-usage', `certificate ${label(leaf)} is not for e-mail (extendedKeyUsage lacks emailProtection)`);
  }
  return undefined;
}

function addressProblem(leaf: Certificate, addresses: string[]): Problem | undefined {
  const missing = addresses.find((a) => !leaf.hasEmail(a));
  if (missing === undefined) return undefined;
  const names = leaf.emailAddresses.length > 0 ? `it names ${[...new Set(leaf.emailAddresses)].join(', ')}` : 'it names no address';
  return problem('address-mismatch', `certificate ${label(leaf)} is not for ${missing} (${names})`);
}

/**
 * checkEndEntity, then a path from the leaf to one of `anchors`. A leaf that is itself an
 * anchor is trusted directly. Leaf problems are reported before trust, so "untrusted" means
 * the certificate is otherwise usable.
 */
export function validatePath(leaf: Certificate, opts: PathOptions): PathResult {
  const leafResult = checkEndEntity(leaf, opts);
  if (!leafResult.ok) return leafResult;
  const search = new PathSearch(opts);
  if (search.isAnchor(leaf)) return { ok: true, chain: [leaf] };
  const chain = search.extend([leaf]);
  return chain ? { ok: true, chain } : search.failure();
}

/**
 * How telling a failure is when several candidate paths fail: a problem with an issuer whose
 * signature verified is about the real issuer; a bad signature may just be a same-named
 * stranger; "untrusted" says least.
 */
const enum Rank {
  Untrusted,
  BadSignature,
  IssuerProblem,
}

function rank(code: PathErrorCode): Rank {
  return code === 'untrusted' ? Rank.Untrusted : code === 'bad-signature' ? Rank.BadSignature : Rank.IssuerProblem;
}

class PathSearch {
  private readonly pool: Certificate[];
  private readonly anchors: Set<string>;
  private readonly at: Date;
  private readonly minRsaBits: number;
  private readonly verified = new Map<string, boolean>();
  private checksLeft = MAX_SIGNATURE_CHECKS;
  private best?: Failure;
  private gaveUp?: Failure;

  constructor(opts: PathOptions) {
    this.anchors = new Set(opts.anchors.map((c) => c.fingerprint));
    // Anchors first, so that among equally good candidates the search ends soonest.
    this.pool = uniqueByFingerprint([...opts.anchors, ...(opts.intermediates ?? [])]);
    this.at = opts.at ?? new Date();
    this.minRsaBits = opts.minRsaBits ?? DEFAULT_MIN_RSA_BITS;
  }

  isAnchor(cert: Certificate): boolean {
    return this.anchors.has(cert.fingerprint);
  }

  /** Depth-first search from the last certificate of `chain` up to an anchor. */
  extend(chain: Certificate[]): Certificate[] | undefined {
    const child = chain[chain.length - 1];
    const candidates = this.issuerCandidates(child, chain);
    if (candidates.length === 0) this.note(this.deadEnd(child), chain);
    for (const issuer of candidates) {
      const path = [...chain, issuer];
      if (this.checksLeft === 0 && !this.verified.has(pairKey(child, issuer))) {
        this.gaveUp ??= { ...problem('untrusted', `gave up looking for a path after ${MAX_SIGNATURE_CHECKS} signature checks`), chain };
        return undefined;
      }
      const linkProblem = this.linkProblem(child, issuer, chain);
      if (linkProblem) {
        this.note(linkProblem, path);
        continue;
      }
      if (this.isAnchor(issuer)) return path;
      if (path.length > MAX_DEPTH) {
        this.note(problem('untrusted', `no trust anchor within ${MAX_DEPTH} certificates above ${label(chain[0])}`), path);
        continue;
      }
      const found = this.extend(path);
      if (found) return found;
    }
    return undefined;
  }

  /**
   * Why no path was found. An unfinished search says so, unless it already met a real issuer
   * with a problem: bad signatures seen on the way may only be the flood that exhausted it.
   */
  failure(): Failure {
    if (this.gaveUp && (!this.best || rank(this.best.code) < Rank.IssuerProblem)) return this.gaveUp;
    // extend() notes a failure on every path it abandons, so one exists when it found none.
    return this.best!;
  }

  /**
   * Certificates whose subject is the child's issuer (exact DER, as in practice every CA
   * re-uses its encoding), not already in the chain; a matching key identifier first, a
   * contradicting one last.
   */
  private issuerCandidates(child: Certificate, chain: Certificate[]): Certificate[] {
    const used = new Set(chain.map((c) => c.fingerprint));
    return this.pool
      .filter((c) => !used.has(c.fingerprint) && c.subjectDer.equals(child.issuerDer))
      .sort((a, b) => keyIdScore(child, b) - keyIdScore(child, a));
  }

  private deadEnd(child: Certificate): Problem {
    if (child.isSelfIssued) return problem('untrusted', `certificate ${label(child)} is self-issued and not a trust anchor`);
    return problem('untrusted', `issuer "${child.issuer}" of certificate ${label(child)} is not a trust anchor and was not supplied`);
  }

  /** Can `issuer` have issued `child` at the top of `chain`? Signature first: otherwise its flaws are noise. */
  private linkProblem(child: Certificate, issuer: Certificate, chain: Certificate[]): Problem | undefined {
    if (!this.verifies(child, issuer)) {
      return problem('bad-signature', `signature on certificate ${label(child)} does not verify with the key of ${label(issuer)}`);
    }
    const basic = basicProblem(issuer, this.at, this.minRsaBits);
    if (basic) return basic;
    if (!issuer.isCA) return problem('not-ca', `certificate ${label(issuer)} issued ${label(child)} but is not a CA (basicConstraints cA is not set)`);
    if (!issuer.hasKeyUsage('keyCertSign')) {
      return problem('ca-key-usage', `CA certificate ${label(issuer)} may not sign certificates (keyUsage lacks keyCertSign)`);
    }
    const pathLen = issuer.basicConstraints?.pathLen;
    // RFC 5280 6.1.4 (l), (m): count the non-self-issued intermediates below this CA.
    const below = chain.slice(1).filter((c) => !c.isSelfIssued).length;
    if (pathLen !== undefined && below > pathLen) {
      return problem('path-length', `CA certificate ${label(issuer)} allows ${pathLen} intermediate CA(s) below it, the path has ${below}`);
    }
    return undefined;
  }

  private verifies(child: Certificate, issuer: Certificate): boolean {
    const key = pairKey(child, issuer);
    let ok = this.verified.get(key);
    if (ok === undefined) {
      this.checksLeft--;
      try {
        ok = child.x509.verify(issuer.publicKey);
      } catch {
        ok = false; // a key type that cannot verify this signature algorithm
      }
      this.verified.set(key, ok);
    }
    return ok;
  }

  /** Keeps the first failure of the highest rank, with the chain it happened on. */
  private note(found: Problem, chain: Certificate[]): void {
    if (!this.best || rank(found.code) > rank(this.best.code)) this.best = { ...found, chain };
  }
}

function uniqueByFingerprint(certs: Certificate[]): Certificate[] {
  const byFingerprint = new Map<string, Certificate>();
  for (const c of certs) if (!byFingerprint.has(c.fingerprint)) byFingerprint.set(c.fingerprint, c);
  return [...byFingerprint.values()];
}

function pairKey(child: Certificate, issuer: Certificate): string {
  return `${child.fingerprint}:${issuer.fingerprint}`;
}

/** 2: authorityKeyIdentifier matches the candidate's subjectKeyIdentifier, 0: contradicts it, 1: no information. */
function keyIdScore(child: Certificate, candidate: Certificate): number {
  if (!child.authorityKeyId || !candidate.subjectKeyId) return 1;
  return child.authorityKeyId.equals(candidate.subjectKeyId) ? 2 : 0;
}
