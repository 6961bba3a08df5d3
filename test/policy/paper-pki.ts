/**
 * Certificates for the paper's example (section 4.5): the cstp gateways of amd and intel
 * (cstpbox@amd, cstpbox@intel), Julia's own certificate and Juro's key at amd. Self-signed with
 * the openssl CLI, since the policy checks usability, not chains; cached under the OS temp dir
 * keyed by this file's content, like test/helpers/pki.ts.
 */
import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Certificate } from '../../src/pki/certificate';

const CERTS: Record<string, { cn: string; email: string }> = {
  'gw-amd': { cn: 'cstp gateway amd', email: 'cstpbox@amd' },
  'gw-intel': { cn: 'cstp gateway intel', email: 'cstpbox@intel' },
  julia: { cn: 'Julia', email: 'julia@intel' },
  'juro-amd': { cn: 'Juro', email: 'juro@amd' },
};

function build(dir: string): void {
  for (const [name, { cn, email }] of Object.entries(CERTS)) {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '3650',
      '-subj', `/CN=${cn}/emailAddress=${email}`, '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment',
      '-addext', 'extendedKeyUsage=emailProtection', '-addext', `subjectAltName=email:${email}`,
    ], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  }
}

let cached: string | undefined;

function paperDir(): string {
  if (cached) return cached;
  const key = createHash('sha256').update(readFileSync(__filename)).digest('hex').slice(0, 12);
  const dir = join(tmpdir(), `cstp-test-paper-pki-${key}`);
  if (!existsSync(join(dir, 'juro-amd.crt'))) {
    const work = mkdtempSync(join(tmpdir(), 'cstp-paper-pki-build-'));
    build(work);
    try {
      renameSync(work, dir);
    } catch {
      rmSync(work, { recursive: true, force: true }); // another process won the race
    }
  }
  cached = dir;
  return dir;
}

export function paperCert(name: keyof typeof CERTS): Certificate {
  return Certificate.fromPem(readFileSync(join(paperDir(), `${name}.crt`)))[0];
}

export function paperKey(name: keyof typeof CERTS): KeyObject {
  return createPrivateKey(readFileSync(join(paperDir(), `${name}.key`)));
}
