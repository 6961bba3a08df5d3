/**
 * `cstp init`, `cstp cert ...`, `cstp key import` and `cstp untrusted ...`: managing the
 * gateway's key and certificate store (src/store/). The store options are in store-options.ts.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { OID } from '../asn1/oids';
import { Certificate } from '../pki/certificate';
import { certificationRequest, gatewayIdentity, rfc3183Addresses, type KeyAlgorithm } from '../pki/issue';
import { checkEndEntity } from '../pki/path';
import { KeyStore, normaliseDomain, ROLES, type CertificateRole, type StoredCertificate } from '../store/key-store';
import {
  EXIT, KEYS, loadKeyPairs, readInput, UsageError, writeOutput, type Command, type Values,
} from './cli-support';
import { STORE_HELP, STORE_OPTIONS, withStore } from './store-options';

/** Shortest fingerprint prefix accepted on the command line: 32 bits leave no realistic collision in one store. */
const MIN_PREFIX = 8;

const USAGE = {
  init: `cstp init --domain D [--rsa-3072|--ec] [--email ADDR ...] [--days 730] [--csr FILE] [--out FILE] [--force]
  Creates the store if needed and a gateway identity for domain D: an RSA-2048 key (--rsa-3072, --ec for
  P-256) and a self-signed certificate for D (emailProtection; signing and key encipherment/agreement).
  Its addresses are the RFC 3183 domain addresses ${rfc3183Addresses('D').join(' and ')},
  unless --email is given. --out writes the certificate (PEM) for peers; --csr also writes a PKCS#10 request
  for a CA, whose certificate can replace the self-signed one with cstp key import. Run once per domain.
${STORE_HELP}`,
  certImport: `cstp cert import --role gateway|user|remote|ca [--in FILE] [--domain D ...] [--address A ...]
  Imports every certificate in FILE (PEM or DER; default stdin) in a role: gateway (a remote domain's gateway,
  found by --domain, which may be a wildcard *.example.org, default the domains of its addresses), user (local
  user) or remote (remote user), found by --address (default every address the certificate carries), or ca
  (trust anchor). A certificate stored in a role is trusted for it.`,
  certExport: `cstp cert export FINGERPRINT|--domain D [--der] [--out FILE]
  Writes a stored certificate (PEM, or --der), or with --domain this gateway's own certificate for D.`,
  certList: `cstp cert list [--role gateway|user|remote|ca|identity]
  One line per certificate: SHA-256 fingerprint, role, addresses or domains, validity, subject. The role
  identity lists this gateway's own certificates (one per local domain) and user keys (user-key).`,
  certShow: `cstp cert show FINGERPRINT
  Prints the certificate's details and the roles it is stored in. A unique prefix of at least ${MIN_PREFIX} hex digits will do.`,
  certRemove: `cstp cert remove FINGERPRINT [--role gateway|user|remote|ca]
  Removes the certificate from one role, or from every role.`,
  keyImport: `cstp key import --role gateway --domain D | --role user [--address A ...]  --key K [--cert C] [--pass-env VAR|--pass-file F]
  Imports a private key with its certificate (PKCS#12, or PEM/DER key plus PEM certificate and chain): as this
  gateway's identity for local domain D, or as a local user's key found by every address of the certificate
  (or --address). The key is stored encrypted with the store passphrase.`,
  untrustedList: `cstp untrusted list
  Certificates harvested from good signatures without a trusted path: fingerprint, times seen, first and
  last seen, where from, subject and addresses.`,
  untrustedTrust: `cstp untrusted trust FINGERPRINT [--as remote|ca]
  Moves a harvested certificate into the store as a remote user's certificate (default) or a trust anchor.`,
  untrustedDrop: `cstp untrusted drop FINGERPRINT
  Forgets a harvested certificate.`,
};

// ---------------------------------------------------------------------------
// Options and the store

interface Parsed {
  values: Values;
  positionals: string[];
}

/** Like cli-support's parse(), plus the store options and positional arguments (fingerprints). */
function parseStoreArgs(args: string[], options: ParseArgsConfig['options'], positionals: number): Parsed {
  let parsed: Parsed;
  try {
    parsed = parseArgs({ args, options: { ...STORE_OPTIONS, ...options }, strict: true, allowPositionals: positionals > 0 }) as Parsed;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (parsed.positionals.length > positionals) throw new UsageError(`unexpected argument "${parsed.positionals[positionals]}"`);
  return parsed;
}

function fingerprintArg(p: Parsed, command: string): string {
  const fpr = p.positionals[0]?.replace(/:/g, '').toLowerCase();
  if (!fpr) throw new UsageError(`${command} needs a certificate fingerprint`);
  if (!/^[0-9a-f]+$/.test(fpr) || fpr.length < MIN_PREFIX) throw new UsageError(`"${p.positionals[0]}" is not a fingerprint (at least ${MIN_PREFIX} hex digits)`);
  return fpr;
}

/** Entries of the one certificate a fingerprint prefix names (one per role it has). */
function findOne(store: KeyStore, prefix: string): StoredCertificate[] {
  const found = store.findCertificates(prefix);
  const distinct = new Set(found.map((s) => s.fingerprint));
  if (distinct.size === 0) throw new Error(`no certificate ${prefix} in the store`);
  if (distinct.size > 1) throw new Error(`fingerprint prefix ${prefix} is ambiguous (${distinct.size} certificates); give more digits`);
  return found;
}

function roleArg(value: unknown, allowed: readonly string[]): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !allowed.includes(value)) throw new UsageError(`--role ${String(value)}: use one of ${allowed.join(', ')}`);
  return value;
}

// ---------------------------------------------------------------------------
// init

function keyAlgorithm(v: Values): KeyAlgorithm {
  if (v['rsa-3072'] && v.ec) throw new UsageError('give at most one of --rsa-3072 and --ec');
  return v.ec ? 'ec-p256' : v['rsa-3072'] ? 'rsa-3072' : 'rsa-2048';
}

function validityDays(v: Values): number {
  const days = v.days === undefined ? 730 : Number(v.days);
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new UsageError(`--days ${String(v.days)}: a whole number from 1 to 3650`);
  return days;
}

async function init(args: string[]): Promise<number> {
  const { values: v } = parseStoreArgs(args, {
    domain: { type: 'string' }, 'rsa-3072': { type: 'boolean' }, ec: { type: 'boolean' }, email: { type: 'string', multiple: true },
    days: { type: 'string' }, csr: { type: 'string' }, out: { type: 'string' }, force: { type: 'boolean' },
  }, 0);
  if (typeof v.domain !== 'string') throw new UsageError('init needs --domain D');
  const domain = domainArg(v.domain);
  const algorithm = keyAlgorithm(v);
  const days = validityDays(v);
  return withStore(v, 'init', async (store) => {
    if (store.gatewayIdentity(domain) && !v.force) throw new Error(`a gateway identity for ${domain} exists already (--force replaces it)`);
    const { key: privateKey, cert, subject, emails } = gatewayIdentity(domain, { algorithm, days, emails: v.email as string[] | undefined });
    if (typeof v.csr === 'string') await writeOutput(v.csr, [Buffer.from(certificationRequest({ key: privateKey, subject, emails }))]);
    store.putGatewayIdentity(domain, { key: privateKey, cert, chain: [] });
    if (typeof v.out === 'string') await writeOutput(v.out, [Buffer.from(cert.toPem())]);
    process.stdout.write(`gateway identity for ${domain} in ${store.path}\n${describeCertificate(cert)}\n`);
    return EXIT.ok;
  });
}

function domainArg(value: string): string {
  try {
    return normaliseDomain(value);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

// ---------------------------------------------------------------------------
// cert

async function certImport(args: string[]): Promise<number> {
  const { values: v } = parseStoreArgs(args, {
    role: { type: 'string' }, in: { type: 'string' }, domain: { type: 'string', multiple: true }, address: { type: 'string', multiple: true },
  }, 0);
  const role = roleArg(v.role, ROLES) as CertificateRole | undefined;
  if (!role) throw new UsageError(`cert import needs --role (${ROLES.join(', ')})`);
  const names = nameArgs(v, role);
  const certs = Certificate.load(await readInput(v.in as string | undefined));
  return withStore(v, 'write', (store) => {
    for (const cert of certs) {
      const stored = store.addCertificate(cert, role, names);
      process.stdout.write(`imported ${stored.fingerprint} as ${role}${stored.names.length ? `: ${stored.names.join(', ')}` : ''}\n`);
    }
    return EXIT.ok;
  });
}

function nameArgs(v: Values, role: CertificateRole): string[] | undefined {
  const domains = v.domain as string[] | undefined;
  const addresses = v.address as string[] | undefined;
  if (domains && role !== 'gateway') throw new UsageError('--domain is for --role gateway; users are found by --address');
  if (addresses && (role === 'gateway' || role === 'ca')) throw new UsageError(`--address is for --role user or remote`);
  return domains?.map(domainArg) ?? addresses;
}

async function certExport(args: string[]): Promise<number> {
  const p = parseStoreArgs(args, { der: { type: 'boolean' }, out: { type: 'string' }, domain: { type: 'string' } }, 1);
  const v = p.values;
  if (v.domain !== undefined && p.positionals.length) throw new UsageError('give a fingerprint or --domain, not both');
  const cert = await withStore(v, 'read', (store) => {
    if (typeof v.domain !== 'string') return findOne(store, fingerprintArg(p, 'cert export'))[0].cert;
    const identity = store.gatewayIdentity(v.domain);
    if (!identity) throw new Error(`no gateway identity for ${v.domain} (cstp init --domain ${v.domain})`);
    return identity.cert;
  });
  await writeOutput(v.out as string | undefined, [v.der ? cert.der : Buffer.from(cert.toPem())]);
  return EXIT.ok;
}

async function certList(args: string[]): Promise<number> {
  const { values: v } = parseStoreArgs(args, { role: { type: 'string' } }, 0);
  const role = roleArg(v.role, [...ROLES, 'identity']);
  const lines = await withStore(v, 'read', (store) => {
    const out: string[] = [];
    if (!role || role === 'identity') out.push(...identityLines(store));
    if (role !== 'identity') {
      for (const s of store.certificates(role as CertificateRole | undefined)) out.push(listLine(s.cert, s.role, s.names));
    }
    return out;
  });
  process.stdout.write(lines.length ? `${lines.join('\n')}\n` : '');
  return EXIT.ok;
}

function identityLines(store: KeyStore): string[] {
  const lines = store.gatewayDomains().map((d) => listLine(store.gatewayIdentity(d)!.cert, 'identity', [d]));
  const byCert = new Map<string, { cert: Certificate; addresses: string[] }>();
  for (const address of store.userKeyAddresses()) {
    const cert = store.userKey(address)!.cert;
    const entry = byCert.get(cert.fingerprint) ?? { cert, addresses: [] };
    entry.addresses.push(address);
    byCert.set(cert.fingerprint, entry);
  }
  for (const { cert, addresses } of byCert.values()) lines.push(listLine(cert, 'user-key', addresses));
  return lines;
}

function listLine(cert: Certificate, role: string, names: string[]): string {
  const validity = `${day(cert.notBefore)}..${day(cert.notAfter)}`;
  return [cert.fingerprint, role.padEnd(8), names.join(',') || '-', validity, cert.subject].join('  ');
}

const day = (d: Date): string => d.toISOString().slice(0, 10);

async function certShow(args: string[]): Promise<number> {
  const p = parseStoreArgs(args, {}, 1);
  const entries = await withStore(p.values, 'read', (store) => findOne(store, fingerprintArg(p, 'cert show')));
  const roles = entries.map((s) => `${s.role}${s.names.length ? ` (${s.names.join(', ')})` : ''}, added ${s.added.toISOString()}`);
  process.stdout.write(`${describeCertificate(entries[0].cert)}\nStored as:   ${roles.join('; ')}\n`);
  return EXIT.ok;
}

/** The fields an administrator decides trust on, one per line. */
function describeCertificate(cert: Certificate): string {
  const key = cert.publicKey;
  const keyText = key.asymmetricKeyType === 'rsa' ? `RSA ${cert.rsaBits} bits` : key.asymmetricKeyType === 'ec' ? `EC ${key.asymmetricKeyDetails?.namedCurve}` : String(key.asymmetricKeyType);
  const usable = (['sign', 'encrypt'] as const).map((purpose) => {
    const r = checkEndEntity(cert, { purpose });
    return `${purpose}: ${r.ok ? 'yes' : `no (${r.reason})`}`;
  });
  return [
    `Fingerprint: ${cert.fingerprint} (SHA-256)`,
    `Subject:     ${cert.subject}`,
    `Issuer:      ${cert.issuer}${cert.isSelfIssued ? ' (self-issued)' : ''}`,
    `Serial:      ${cert.serial.toString('hex')}`,
    `Valid:       ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}`,
    `Key:         ${keyText}`,
    `Addresses:   ${[...new Set(cert.emailAddresses)].join(', ') || '-'}`,
    `Key usage:   ${cert.keyUsage ? [...cert.keyUsage].join(', ') : '(any)'}`,
    `Ext. usage:  ${cert.extKeyUsage ? cert.extKeyUsage.map(ekuName).join(', ') : '(any)'}`,
    `CA:          ${cert.isCA ? 'yes' : 'no'}`,
    `S/MIME use:  ${usable.join('; ')}`,
  ].join('\n');
}

function ekuName(oid: string): string {
  return oid === OID.emailProtection ? 'emailProtection' : oid === OID.anyExtendedKeyUsage ? 'anyExtendedKeyUsage' : oid;
}

async function certRemove(args: string[]): Promise<number> {
  const p = parseStoreArgs(args, { role: { type: 'string' } }, 1);
  const role = roleArg(p.values.role, ROLES) as CertificateRole | undefined;
  const prefix = fingerprintArg(p, 'cert remove');
  return withStore(p.values, 'write', (store) => {
    const fingerprint = findOne(store, prefix)[0].fingerprint;
    const removed = store.removeCertificate(fingerprint, role);
    if (removed === 0) throw new Error(`certificate ${fingerprint} is not stored as ${role}`);
    process.stdout.write(`removed ${fingerprint} from ${removed} role(s)\n`);
    return EXIT.ok;
  });
}

// ---------------------------------------------------------------------------
// key import

async function keyImport(args: string[]): Promise<number> {
  const { values: v } = parseStoreArgs(args, {
    ...KEYS, role: { type: 'string' }, domain: { type: 'string' }, address: { type: 'string', multiple: true },
  }, 0);
  const role = roleArg(v.role, ['gateway', 'user']);
  if (!role) throw new UsageError('key import needs --role gateway (with --domain) or --role user');
  if (role === 'gateway' && typeof v.domain !== 'string') throw new UsageError('key import --role gateway needs --domain D');
  if (role === 'user' && v.domain !== undefined) throw new UsageError('--domain is for --role gateway');
  if (role === 'gateway' && v.address !== undefined) throw new UsageError('--address is for --role user');
  const keys = loadKeyPairs(v as never);
  if (keys.length !== 1) throw new UsageError('key import needs exactly one --key (with --cert, or a PKCS#12 file)');
  const [creds] = keys;
  warnUnusable(creds.cert);
  return withStore(v, 'write', (store) => {
    if (role === 'gateway') {
      const domain = domainArg(v.domain as string);
      store.putGatewayIdentity(domain, creds);
      process.stdout.write(`gateway identity for ${domain}: ${creds.cert.fingerprint}\n`);
    } else {
      const addresses = store.putUserKey(creds, v.address as string[] | undefined);
      process.stdout.write(`user key for ${addresses.join(', ')}: ${creds.cert.fingerprint}\n`);
    }
    return EXIT.ok;
  });
}

/** A held key signs outbound and decrypts inbound mail; an unusable certificate is imported anyway (it may be renewed), but said. */
function warnUnusable(cert: Certificate): void {
  for (const purpose of ['sign', 'encrypt'] as const) {
    const r = checkEndEntity(cert, { purpose });
    if (!r.ok) process.stderr.write(`cstp: warning: cannot ${purpose} with it: ${r.reason}\n`);
  }
}

// ---------------------------------------------------------------------------
// untrusted

async function untrustedList(args: string[]): Promise<number> {
  const { values: v } = parseStoreArgs(args, {}, 0);
  const entries = await withStore(v, 'read', (store) => store.untrusted());
  for (const u of entries) {
    const addresses = [...new Set(u.cert.emailAddresses)].join(',') || '-';
    process.stdout.write(`${[u.fingerprint, `seen ${u.count}x`, `${u.firstSeen.toISOString()}..${u.lastSeen.toISOString()}`, `from ${u.seenFrom.join(',')}`, addresses, u.cert.subject].join('  ')}\n`);
  }
  return EXIT.ok;
}

async function untrustedTrust(args: string[]): Promise<number> {
  const p = parseStoreArgs(args, { as: { type: 'string' } }, 1);
  const as = (p.values.as as string | undefined) ?? 'remote';
  if (as !== 'remote' && as !== 'ca') throw new UsageError(`--as ${as}: use remote or ca`);
  const prefix = fingerprintArg(p, 'untrusted trust');
  return withStore(p.values, 'write', (store) => {
    const stored = store.trustUntrusted(untrustedFingerprint(store, prefix), as);
    process.stdout.write(`trusted ${stored.fingerprint} as ${as}${stored.names.length ? `: ${stored.names.join(', ')}` : ''}\n`);
    return EXIT.ok;
  });
}

async function untrustedDrop(args: string[]): Promise<number> {
  const p = parseStoreArgs(args, {}, 1);
  const prefix = fingerprintArg(p, 'untrusted drop');
  return withStore(p.values, 'write', (store) => {
    const fingerprint = untrustedFingerprint(store, prefix);
    store.dropUntrusted(fingerprint);
    process.stdout.write(`dropped ${fingerprint}\n`);
    return EXIT.ok;
  });
}

function untrustedFingerprint(store: KeyStore, prefix: string): string {
  const matches = store.untrusted().filter((u) => u.fingerprint.startsWith(prefix));
  if (matches.length === 0) throw new Error(`no untrusted certificate ${prefix}`);
  if (matches.length > 1) throw new Error(`fingerprint prefix ${prefix} is ambiguous; give more digits`);
  return matches[0].fingerprint;
}

// ---------------------------------------------------------------------------

/** `cstp init` is a group of one command, keyed '' (see the dispatcher). */
export const initCommands: Record<string, Command> = {
  '': { usage: USAGE.init, run: init },
};

export const certCommands: Record<string, Command> = {
  import: { usage: USAGE.certImport, run: certImport },
  export: { usage: USAGE.certExport, run: certExport },
  list: { usage: USAGE.certList, run: certList },
  show: { usage: USAGE.certShow, run: certShow },
  remove: { usage: USAGE.certRemove, run: certRemove },
};

export const keyCommands: Record<string, Command> = {
  import: { usage: USAGE.keyImport, run: keyImport },
};

export const untrustedCommands: Record<string, Command> = {
  list: { usage: USAGE.untrustedList, run: untrustedList },
  trust: { usage: USAGE.untrustedTrust, run: untrustedTrust },
  drop: { usage: USAGE.untrustedDrop, run: untrustedDrop },
};
