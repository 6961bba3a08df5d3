/**
 * First-start preparation of a Haraka instance directory: var/ for everything the gateway generates, and the TLS
 * certificate STARTTLS offers to clients when the admin configured none. Runs in the cstp-config plugin's
 * register(), i.e. before Haraka's tls plugin reads tls.ini and, under cluster, before any worker is forked.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, selfSignedCertificate, toPem } from '../pki/issue';

/** Where generated state lives; tls.ini's default key/cert are symbolic links into var/tls/. */
export function varDir(instanceDir: string): string {
  return join(instanceDir, 'var');
}

export function generatedTlsPaths(instanceDir: string): { key: string; cert: string } {
  const dir = join(varDir(instanceDir), 'tls');
  return { key: join(dir, 'key.pem'), cert: join(dir, 'cert.pem') };
}

/** Creates var/ (0700: it holds keys) if missing. */
export function ensureVarDir(instanceDir: string): string {
  const dir = varDir(instanceDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const VALIDITY_DAYS = 825; // the longest validity clients still accept for a server certificate

/**
 * Generates a self-signed server certificate and its key under var/tls/ unless both exist. Returns true when it
 * generated them. Each file is written under a temporary name and renamed, so a crash never leaves half a key.
 */
export function ensureTlsCertificate(instanceDir: string, name = hostname()): boolean {
  const paths = generatedTlsPaths(instanceDir);
  if (existsSync(paths.key) && existsSync(paths.cert)) return false;
  mkdirSync(join(varDir(instanceDir), 'tls'), { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPair('rsa-2048');
  const certificate = selfSignedCertificate({
    key: privateKey,
    subject: { commonName: name, organization: 'cstp gateway (generated)' },
    dnsNames: [...new Set([name, 'localhost'])],
    days: VALIDITY_DAYS,
    keyUsage: ['digitalSignature', 'keyEncipherment'],
    extKeyUsage: [SERVER_AUTH],
  });
  writeAtomically(paths.key, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  writeAtomically(paths.cert, toPem('CERTIFICATE', certificate.der), 0o644);
  return true;
}

/** The file is created with its final mode, so a key is never readable by others, not even for a moment. */
function writeAtomically(file: string, content: string, mode: number): void {
  const temp = `${file}.${process.pid}.tmp`;
  const fd = openSync(temp, 'w', mode);
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  chmodSync(temp, mode); // the umask may have narrowed the mode; make it exact
  renameSync(temp, file);
}
