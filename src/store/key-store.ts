/**
 * The gateway's key and certificate store: one LMDB environment (a directory, 0700, holding
 * store.mdb and its lock file, 0600) with a named sub-database per kind of record.
 *
 * LMDB lets several Haraka worker processes read at once while writes are serialised by its
 * own lock; every write here is one synchronous transaction, durable when the call returns.
 * Values are JSON with certificates as base64 DER, so the files stay readable by any tool and
 * independent of class layouts. Private keys are sealed (see seal.ts) before they reach LMDB;
 * neither they nor the passphrase appear in any error message.
 *
 * Certificates stored with a role were put there by an administrator (or trusted from the
 * untrusted store) and are thereby trusted for that role; the untrusted store only collects
 * what verified signatures carried, for review.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { join, resolve } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { Certificate, normaliseAddress } from '../pki/certificate';
import type { Credentials } from '../pki/keys';
import { StoreError } from './errors';
import { checkDataFile, probeDataFile } from './file-check';
import { deriveKek, newKdfParams, seal, unseal, type KdfParams, type Sealed } from './seal';

export { StoreError };

/** gateway: a remote domain's gateway (indexed by domain); user/remote: local/remote users (by address); ca: trust anchor. */
export type CertificateRole = 'gateway' | 'user' | 'remote' | 'ca';
export const ROLES: readonly CertificateRole[] = ['gateway', 'user', 'remote', 'ca'];

export type Route = 'second-connection' | 'relay';

export interface KeyStoreOptions {
  /** The store directory. */
  path: string;
  passphrase: string;
  /** Opens an existing store without write access (worker processes that only look up). */
  readOnly?: boolean;
  /**
   * Read every record in a child process first (probeDataFile), so damaged data pages are a StoreError here
   * rather than a crash later; for a long-running process's startup (the gateway).
   */
  verify?: boolean;
}

export interface StoredCertificate {
  fingerprint: string;
  role: CertificateRole;
  cert: Certificate;
  /** Addresses (user, remote) or domains (gateway) the certificate is found by; empty for ca. */
  names: string[];
  added: Date;
}

export interface UntrustedCertificate {
  fingerprint: string;
  cert: Certificate;
  firstSeen: Date;
  lastSeen: Date;
  /** Distinct senders or peers it came from, most recent last (bounded). */
  seenFrom: string[];
  count: number;
}

export interface DecryptionKey {
  key: KeyObject;
  cert: Certificate;
}

export interface RouteMemory {
  route: Route;
  at: Date;
}

export interface PeerCapabilities {
  /** DER of the SMIMECapabilities attribute value, as the peer signed it. */
  der: Buffer;
  at: Date;
}

/** The data file inside the store directory; LMDB adds `store.mdb-lock` next to it. */
const DATA_FILE = 'store.mdb';
const CHECK_ID = 'meta:check';
const CHECK_TEXT = 'cstp key store';
/** How many distinct sources an untrusted certificate remembers. */
const MAX_SEEN_FROM = 16;
/** Separates the parts of index keys; no address or domain can contain a control character. */
const SEP = '\x1f';

// The JSON records, one interface per sub-database.
interface KeyRecord { key: Sealed; cert: string; chain: string[] }
interface CertRecord { der: string; names: string[]; added: string }
interface UntrustedRecord { der: string; firstSeen: string; lastSeen: string; seenFrom: string[]; count: number }
interface RouteRecord { route: Route; at: string }
interface CapabilitiesRecord { der: string; at: string }

interface Databases {
  meta: Database<unknown, string>;
  /** domain -> KeyRecord: this gateway's identity for each local domain. */
  identities: Database<KeyRecord, string>;
  /** address -> KeyRecord: local users' keys held by the gateway. */
  userKeys: Database<KeyRecord, string>;
  /** fingerprint SEP role -> CertRecord. */
  certs: Database<CertRecord, string>;
  /** kind SEP name SEP fingerprint SEP role -> role; kind is 'addr' (user, remote) or 'domain' (gateway). */
  certIndex: Database<CertificateRole, string>;
  untrusted: Database<UntrustedRecord, string>;
  routes: Database<RouteRecord, string>;
  capabilities: Database<CapabilitiesRecord, string>;
}

/** How often unchanged peer capabilities are written again (their timestamp says when they were last seen). */
const CAPABILITIES_REFRESH_MS = 24 * 3600 * 1000;

const DATABASE_NAMES: (keyof Databases)[] = ['meta', 'identities', 'userKeys', 'certs', 'certIndex', 'untrusted', 'routes', 'capabilities'];

export class KeyStore {
  readonly path: string;
  readonly readOnly: boolean;
  private readonly root: RootDatabase;
  private readonly db: Databases;
  private readonly kek: KeyObject;
  /** Keys already unsealed in this process (see readKey). */
  private readonly unsealed = new Map<string, Credentials>();

  private constructor(path: string, readOnly: boolean, root: RootDatabase, db: Databases, kek: KeyObject) {
    this.path = path;
    this.readOnly = readOnly;
    this.root = root;
    this.db = db;
    this.kek = kek;
  }

  /** Opens (and unless readOnly, creates) the store; a wrong passphrase is a StoreError here, not at first use. */
  static open(opts: KeyStoreOptions): KeyStore {
    if (!opts.passphrase) throw new StoreError(`empty passphrase for key store ${opts.path}`);
    const dir = resolve(opts.path);
    const readOnly = opts.readOnly === true;
    const dataFile = join(dir, DATA_FILE);
    if (readOnly && !existsSync(dataFile)) throw new StoreError(`no key store at ${dir} (run cstp init)`);
    if (!readOnly) prepareFiles(dir, dataFile);
    // LMDB dies of SIGSEGV/SIGBUS on a damaged header or a truncated file: say so instead.
    const databases = checkDataFile(dataFile, dir);
    if (opts.verify && databases > 0) probeDataFile(dataFile, dir, DATABASE_NAMES, databases);
    let root: RootDatabase;
    try {
      root = open({ path: dataFile, noSubdir: true, maxDbs: 16, readOnly });
    } catch (e) {
      throw new StoreError(`cannot open key store ${dir}: ${(e as Error).message}`);
    }
    try {
      if (!readOnly) restrictModes(dataFile);
      const db = openDatabases(root, readOnly, dir);
      const kek = storeKek(root, db, opts.passphrase, readOnly, dir);
      const check = db.meta.get(CHECK_ID) as Sealed | undefined;
      if (!check) throw new StoreError(`key store ${dir} has no passphrase check record`);
      if (unseal(kek, CHECK_ID, check)?.toString('utf8') !== CHECK_TEXT) throw new StoreError(`wrong passphrase for key store ${dir}`);
      return new KeyStore(dir, readOnly, root, db, kek);
    } catch (e) {
      void root.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.root.close();
  }

  // -------------------------------------------------------------------------
  // Gateway identities and user keys

  /** Sets this gateway's key, certificate and chain for a local domain (replacing any). */
  putGatewayIdentity(domain: string, creds: Credentials): void {
    const name = normaliseDomain(domain);
    this.write(() => this.db.identities.putSync(name, this.keyRecord(`identity:${name}`, creds)));
  }

  gatewayIdentity(domain: string): Credentials | undefined {
    const name = lookupDomain(domain);
    return this.readKey(this.db.identities, `identity:${name}`, name);
  }

  /** The local domains this gateway holds an identity for. */
  gatewayDomains(): string[] {
    this.fresh();
    return [...this.db.identities.getKeys()];
  }

  removeGatewayIdentity(domain: string): boolean {
    const name = normaliseDomain(domain);
    return this.write(() => this.db.identities.removeSync(name));
  }

  /** Stores a local user's key under every address its certificate carries (or the given ones). */
  putUserKey(creds: Credentials, addresses: string[] = [...creds.cert.emailAddresses]): string[] {
    const names = unique(addresses.map(normaliseAddress));
    if (names.length === 0) throw new StoreError(`certificate "${creds.cert.subject}" names no e-mail address; give one`);
    this.write(() => {
      for (const a of names) this.db.userKeys.putSync(a, this.keyRecord(`user:${a}`, creds));
    });
    return names;
  }

  userKey(address: string): Credentials | undefined {
    const name = normaliseAddress(address);
    return this.readKey(this.db.userKeys, `user:${name}`, name);
  }

  /** The addresses a local user key is held for. */
  userKeyAddresses(): string[] {
    this.fresh();
    return [...this.db.userKeys.getKeys()];
  }

  removeUserKey(address: string): boolean {
    const name = normaliseAddress(address);
    return this.write(() => this.db.userKeys.removeSync(name));
  }

  /** Every private key held (gateway identities, then user keys), each once: what inbound decryption tries. */
  decryptionKeys(): DecryptionKey[] {
    const out = new Map<string, DecryptionKey>();
    for (const domain of this.gatewayDomains()) {
      const c = this.gatewayIdentity(domain);
      if (c && !out.has(c.cert.fingerprint)) out.set(c.cert.fingerprint, { key: c.key, cert: c.cert });
    }
    for (const address of this.userKeyAddresses()) {
      const c = this.userKey(address);
      if (c && !out.has(c.cert.fingerprint)) out.set(c.cert.fingerprint, { key: c.key, cert: c.cert });
    }
    return [...out.values()];
  }

  // -------------------------------------------------------------------------
  // Certificates with a role

  /**
   * Adds (or re-indexes) a certificate in a role. `names` defaults to the certificate's
   * addresses for user/remote and to their domains for gateway; gateway names may be
   * wildcards (`*.example.org` matches every subdomain, at any depth, not example.org itself).
   */
  addCertificate(cert: Certificate, role: CertificateRole, names?: string[]): StoredCertificate {
    return this.write(() => this.putCertificate(cert, role, names));
  }

  /** All certificates with a role, or with the given role; ordered by fingerprint. */
  certificates(role?: CertificateRole): StoredCertificate[] {
    this.fresh();
    const out: StoredCertificate[] = [];
    for (const { key, value } of this.db.certs.getRange()) {
      const stored = storedCertificate(key, value);
      if (!role || stored.role === role) out.push(stored);
    }
    return out;
  }

  /** Certificates whose fingerprint starts with `prefix` (hex, any case), in every role they have. */
  findCertificates(prefix: string): StoredCertificate[] {
    this.fresh();
    const start = prefix.toLowerCase();
    const out: StoredCertificate[] = [];
    for (const { key, value } of this.db.certs.getRange({ start })) {
      if (!key.startsWith(start)) break;
      out.push(storedCertificate(key, value));
    }
    return out;
  }

  /** Removes a certificate from one role or from all; returns how many entries went. */
  removeCertificate(fingerprint: string, role?: CertificateRole): number {
    const fpr = fingerprint.toLowerCase();
    return this.write(() => {
      let removed = 0;
      for (const r of role ? [role] : ROLES) {
        if (this.unindex(fpr, r)) removed++;
      }
      return removed;
    });
  }

  /**
   * Encryption candidates for a recipient: user certificates (local or remote role) by exact
   * address, and gateway certificates of the address's domain, or else of the nearest parent
   * wildcard. Validity and usage are for the caller to check.
   */
  recipientCertificates(address: string): { user: Certificate[]; gateway: Certificate[] } {
    this.fresh();
    const addr = normaliseAddress(address);
    const user = this.indexed('user', addr).concat(this.indexed('remote', addr));
    return { user, gateway: addr.includes('@') ? this.gatewayCertificates(domainOf(addr)) : [] };
  }

  /** Gateway certificates for a domain: an exact entry, else `*.parent` from the nearest parent up. */
  gatewayCertificates(domain: string): Certificate[] {
    this.fresh();
    for (const candidate of domainCandidates(lookupDomain(domain))) {
      const found = this.indexed('gateway', candidate);
      if (found.length) return found;
    }
    return [];
  }

  trustAnchors(): Certificate[] {
    return this.certificates('ca').map((s) => s.cert);
  }

  // -------------------------------------------------------------------------
  // Untrusted store

  /** Records a certificate met on a good signature with no trusted path; counts repeat sightings. */
  harvest(cert: Certificate, seenFrom: string, at = new Date()): UntrustedCertificate {
    return this.write(() => {
      const old = this.db.untrusted.get(cert.fingerprint);
      const sources = (old?.seenFrom ?? []).filter((s) => s !== seenFrom).concat(seenFrom).slice(-MAX_SEEN_FROM);
      const record: UntrustedRecord = {
        der: cert.der.toString('base64'),
        firstSeen: old?.firstSeen ?? at.toISOString(),
        lastSeen: at.toISOString(),
        seenFrom: sources,
        count: (old?.count ?? 0) + 1,
      };
      this.db.untrusted.putSync(cert.fingerprint, record);
      return untrustedEntry(cert.fingerprint, record);
    });
  }

  untrusted(): UntrustedCertificate[] {
    this.fresh();
    return [...this.db.untrusted.getRange()].map(({ key, value }) => untrustedEntry(key, value));
  }

  /** Moves a harvested certificate into a role (ca, or remote user under its addresses). */
  trustUntrusted(fingerprint: string, as: 'ca' | 'remote'): StoredCertificate {
    const fpr = fingerprint.toLowerCase();
    return this.write(() => {
      const record = this.db.untrusted.get(fpr);
      if (!record) throw new StoreError(`no untrusted certificate ${fpr}`);
      const stored = this.putCertificate(fromBase64(record.der), as);
      this.db.untrusted.removeSync(fpr);
      return stored;
    });
  }

  dropUntrusted(fingerprint: string): boolean {
    return this.write(() => this.db.untrusted.removeSync(fingerprint.toLowerCase()));
  }

  // -------------------------------------------------------------------------
  // Delivery route memory and peer capabilities

  route(destination: string): RouteMemory | undefined {
    this.fresh();
    const r = this.db.routes.get(destination.toLowerCase());
    return r && { route: r.route, at: new Date(r.at) };
  }

  setRoute(destination: string, route: Route, at = new Date()): void {
    if (route !== 'second-connection' && route !== 'relay') throw new StoreError(`unknown route ${String(route)}`);
    this.write(() => this.db.routes.putSync(destination.toLowerCase(), { route, at: at.toISOString() }));
  }

  /** The SMIMECapabilities a peer announced in its last verified signature. */
  capabilities(address: string): PeerCapabilities | undefined {
    this.fresh();
    const r = this.db.capabilities.get(normaliseAddress(address));
    return r && { der: Buffer.from(r.der, 'base64'), at: new Date(r.at) };
  }

  /**
   * Only for capabilities from a verified signature: they choose the cipher used toward the peer. Unchanged
   * capabilities are written again at most once a day: every inbound signed message reports them, and a
   * synchronous commit per message was a third of the inbound time (docs/BENCHMARKS.md).
   */
  setCapabilities(address: string, der: Buffer, at = new Date()): void {
    const key = normaliseAddress(address);
    const known = this.capabilities(key);
    if (known && known.der.equals(der) && at.getTime() - known.at.getTime() < CAPABILITIES_REFRESH_MS && at >= known.at) return;
    this.write(() => this.db.capabilities.putSync(key, { der: der.toString('base64'), at: at.toISOString() }));
  }

  // -------------------------------------------------------------------------

  /** Runs `action` in one write transaction; LMDB serialises it against other processes. */
  private write<T>(action: () => T): T {
    if (this.readOnly) throw new StoreError(`key store ${this.path} is open read-only`);
    try {
      return this.root.transactionSync(action);
    } catch (e) {
      throw ioError(e, `cannot write to key store ${this.path}`);
    }
  }

  /** Moves reads to the newest committed snapshot, so writes by other processes are seen at once. */
  private fresh(): void {
    this.root.resetReadTxn();
  }

  private keyRecord(recordId: string, creds: Credentials): KeyRecord {
    const pkcs8 = creds.key.export({ type: 'pkcs8', format: 'der' });
    try {
      return { key: seal(this.kek, recordId, pkcs8), cert: creds.cert.der.toString('base64'), chain: creds.chain.map((c) => c.der.toString('base64')) };
    } finally {
      pkcs8.fill(0);
    }
  }

  private readKey(db: Database<KeyRecord, string>, recordId: string, name: string): Credentials | undefined {
    this.fresh();
    const record = db.get(name);
    if (!record) return undefined;
    // Unsealing and parsing a key costs about half an RSA signature; the gateway reads one per message.
    // Keyed by the seal's random IV and its tag (new on every write), so a replaced key is never served stale.
    const cacheKey = `${recordId}\0${record.key.iv}\0${record.key.tag}`;
    const cached = this.unsealed.get(cacheKey);
    if (cached) return cached;
    const creds = this.unsealRecord(recordId, name, record);
    if (this.unsealed.size >= UNSEALED_MAX) this.unsealed.clear();
    this.unsealed.set(cacheKey, creds);
    return creds;
  }

  private unsealRecord(recordId: string, name: string, record: KeyRecord): Credentials {
    const pkcs8 = unseal(this.kek, recordId, record.key);
    if (!pkcs8) throw new StoreError(`the key for ${name} in ${this.path} does not decrypt (altered or moved record)`);
    try {
      const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
      return { key, cert: fromBase64(record.cert), chain: record.chain.map(fromBase64) };
    } finally {
      pkcs8.fill(0);
    }
  }

  private indexed(role: CertificateRole, name: string): Certificate[] {
    const prefix = `${indexKind(role)}${SEP}${name}${SEP}`;
    const out: Certificate[] = [];
    for (const { key, value } of this.db.certIndex.getRange({ start: prefix, end: `${prefix}\x7f` })) {
      if (value !== role) continue;
      const fpr = key.slice(prefix.length).split(SEP)[0];
      const record = this.db.certs.get(certKey(fpr, role));
      if (record) out.push(fromBase64(record.der));
    }
    return out;
  }

  /** Inside a write transaction: replaces the certificate's entry and index keys in `role`. */
  private putCertificate(cert: Certificate, role: CertificateRole, names?: string[]): StoredCertificate {
    const indexed = indexNames(cert, role, names);
    const added = new Date();
    this.unindex(cert.fingerprint, role);
    this.db.certs.putSync(certKey(cert.fingerprint, role), { der: cert.der.toString('base64'), names: indexed, added: added.toISOString() });
    for (const n of indexed) this.db.certIndex.putSync(indexKey(role, n, cert.fingerprint), role);
    return { fingerprint: cert.fingerprint, role, cert, names: indexed, added };
  }

  /** Removes a certificate's entry and index keys in one role; inside a write transaction. */
  private unindex(fingerprint: string, role: CertificateRole): boolean {
    const record = this.db.certs.get(certKey(fingerprint, role));
    if (!record) return false;
    for (const n of record.names) this.db.certIndex.removeSync(indexKey(role, n, fingerprint));
    this.db.certs.removeSync(certKey(fingerprint, role));
    return true;
  }
}

/**
 * LMDB reports a failed write or read of its file (disk full, I/O error, permissions) as an Error with a
 * numeric errno and a long text ("No space left on device: Attempting to write page at position ..."). That
 * becomes a StoreError naming the store and the system's reason; nothing was committed. Other errors (ours,
 * e.g. a StoreError from inside a transaction) pass unchanged.
 */
function ioError(e: unknown, what: string): unknown {
  const err = e as NodeJS.ErrnoException & { code?: unknown };
  if (e instanceof StoreError || !(e instanceof Error) || typeof err.code !== 'number') return e;
  const reason = err.message.split(':')[0].trim() || `error ${err.code}`;
  return new StoreError(`${what}: ${reason}`, { cause: e });
}

// ---------------------------------------------------------------------------
// Opening

/** The directory 0700 and both LMDB files 0600 before LMDB opens them, so they are never readable by others. */
function prepareFiles(dir: string, dataFile: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if ((statSync(dir).mode & 0o077) !== 0) chmodSync(dir, 0o700);
  for (const f of [dataFile, `${dataFile}-lock`]) {
    if (!existsSync(f)) closeSync(openSync(f, 'a', 0o600));
  }
}

function restrictModes(dataFile: string): void {
  for (const f of [dataFile, `${dataFile}-lock`]) {
    if ((statSync(f).mode & 0o077) !== 0) chmodSync(f, 0o600);
  }
}

function openDatabases(root: RootDatabase, readOnly: boolean, dir: string): Databases {
  const out: Partial<Record<keyof Databases, Database>> = {};
  for (const name of DATABASE_NAMES) {
    try {
      out[name] = root.openDB({ name, encoding: 'json' });
    } catch (e) {
      if (readOnly) throw new StoreError(`key store ${dir} is not initialised (${name}: ${(e as Error).message})`);
      throw e;
    }
  }
  return out as Databases;
}

/**
 * The key-encryption key, creating the KDF parameters and the passphrase check record on first
 * open. Creation is one transaction, so two processes creating the store at once agree on one
 * salt; scrypt runs inside it only then, never while an existing store's writers wait.
 */
function storeKek(root: RootDatabase, db: Databases, passphrase: string, readOnly: boolean, dir: string): KeyObject {
  const existing = db.meta.get('kdf') as KdfParams | undefined;
  if (existing) return deriveKek(passphrase, existing);
  if (readOnly) throw new StoreError(`key store ${dir} is not initialised (run cstp init)`);
  const created = root.transactionSync((): { params: KdfParams; kek?: KeyObject } => {
    const raced = db.meta.get('kdf') as KdfParams | undefined;
    if (raced) return { params: raced };
    const params = newKdfParams();
    const kek = deriveKek(passphrase, params);
    db.meta.putSync('kdf', params);
    db.meta.putSync(CHECK_ID, seal(kek, CHECK_ID, Buffer.from(CHECK_TEXT)));
    return { params, kek };
  });
  return created.kek ?? deriveKek(passphrase, created.params);
}

// ---------------------------------------------------------------------------
// Keys, names and records

const certKey = (fingerprint: string, role: CertificateRole): string => `${fingerprint}${SEP}${role}`;
const indexKind = (role: CertificateRole): string => (role === 'gateway' ? 'domain' : 'addr');
const indexKey = (role: CertificateRole, name: string, fingerprint: string): string =>
  `${indexKind(role)}${SEP}${name}${SEP}${fingerprint}${SEP}${role}`;
/**
 * Parsed certificates by their stored encoding: lookups run for every message, and parsing a
 * certificate costs far more than reading it. Keyed by the exact DER, so a cached object can
 * never stand for other bytes; bounded, and simply emptied when full.
 */
const parsed = new Map<string, Certificate>();
const PARSED_MAX = 4096;
const UNSEALED_MAX = 256;

function fromBase64(b64: string): Certificate {
  let cert = parsed.get(b64);
  if (!cert) {
    cert = Certificate.fromDer(Buffer.from(b64, 'base64'));
    if (parsed.size >= PARSED_MAX) parsed.clear();
    parsed.set(b64, cert);
  }
  return cert;
}
const unique = (xs: string[]): string[] => [...new Set(xs)];

function storedCertificate(key: string, value: CertRecord): StoredCertificate {
  const [fingerprint, role] = key.split(SEP) as [string, CertificateRole];
  return { fingerprint, role, cert: fromBase64(value.der), names: value.names, added: new Date(value.added) };
}

function untrustedEntry(fingerprint: string, r: UntrustedRecord): UntrustedCertificate {
  return {
    fingerprint, cert: fromBase64(r.der), firstSeen: new Date(r.firstSeen), lastSeen: new Date(r.lastSeen), seenFrom: r.seenFrom, count: r.count,
  };
}

function indexNames(cert: Certificate, role: CertificateRole, names: string[] | undefined): string[] {
  if (role === 'ca') return [];
  if (role === 'gateway') {
    const domains = unique((names ?? cert.emailAddresses.map(domainOf)).map(normaliseDomain).filter((d) => d !== ''));
    if (domains.length === 0) throw new StoreError(`gateway certificate "${cert.subject}" names no domain; give one`);
    return domains;
  }
  const addresses = unique((names ?? [...cert.emailAddresses]).map(normaliseAddress));
  if (addresses.length === 0) throw new StoreError(`certificate "${cert.subject}" names no e-mail address; give one`);
  return addresses;
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/** Lower case, no trailing dot: how domains are keyed. Lookups accept anything (a junk domain just finds nothing). */
function lookupDomain(domain: string): string {
  return domain.trim().toLowerCase().replace(/\.$/, '');
}

/** lookupDomain, checked: what may be stored. A leading `*.` is the wildcard marker. */
export function normaliseDomain(domain: string): string {
  const d = lookupDomain(domain);
  if (!/^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(d) && !/^\[[^\]]+\]$/.test(d)) throw new StoreError(`not a domain name: "${domain}"`);
  return d;
}

/** a.b.example.org -> a.b.example.org, *.b.example.org, *.example.org, *.org. */
function domainCandidates(domain: string): string[] {
  const labels = domain.split('.');
  const out = [domain];
  for (let i = 1; i < labels.length; i++) out.push(`*.${labels.slice(i).join('.')}`);
  return out;
}
