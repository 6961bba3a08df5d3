/**
 * Certificates for the paper's example (section 4.5): the cstp gateways of amd and intel
 * (cstpbox@amd, cstpbox@intel), Julia's own certificate and Juro's key at amd. Self-signed with
 * the openssl CLI, since the policy checks usability, not chains; cached under the OS temp dir
 * keyed by this file's content, like test/helpers/pki.ts.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Certificate } from '../../src/pki/certificate';
import { buildOnce } from '../helpers/build-once';

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
  cached ??= buildOnce('test-paper-pki', __filename, 'juro-amd.crt', build);
  return cached;
}

export function paperCert(name: keyof typeof CERTS): Certificate {
  return Certificate.fromPem(readFileSync(join(paperDir(), `${name}.crt`)))[0];
}

export function paperKey(name: keyof typeof CERTS): KeyObject {
  return createPrivateKey(readFileSync(join(paperDir(), `${name}.key`)));
}
