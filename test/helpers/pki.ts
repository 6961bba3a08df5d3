/**
 * A throwaway test PKI made with the openssl CLI, generated once and shared by every test
 * process (cached under the OS temp dir, keyed by this file's content; created in a private
 * directory and renamed into place, so concurrent test files never see a half-built PKI).
 *
 * Layout (all PEM; <name>.crt, <name>.key, <name>.p12 pass "test" with OpenSSL 3 defaults,
 * <name>.3des.p12 pass "test" with PBE-SHA1-3DES + SHA-1 MAC):
 *   ca            root CA, RSA-3072                    other-ca   a second, untrusted root
 *   inter         intermediate CA under ca, pathlen 0
 *   user-a-rsa    user@a.example, RSA-2048             gw-b-rsa   gateway@b.example, RSA-2048
 *   user-a-ec     user@a.example, ECDSA P-256          gw-b-ec    gateway@b.example, P-256 keyAgreement
 *   user-p384     p384@a.example, ECDSA P-384          user-ed25519  ed@a.example, Ed25519
 *   user-inter    inter@a.example, RSA, issued by inter (needs the chain)
 *   multi-rsa     multi@a.example + alias@a.example    bad-noeku  bad@a.example, EKU clientAuth only
 *   expired       old@a.example, validity 2020-2021    weak-rsa   weak@a.example, RSA-1024
 *   sign-only     signonly@a.example, keyUsage digitalSignature only
 *   stranger      stranger@c.example, issued by other-ca
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildOnce } from './build-once';

export const P12_PASS = 'test';

function openssl(cwd: string, args: string[], input?: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['pipe', 'ignore', 'pipe'], input });
}

interface Leaf {
  name: string;
  alg: 'rsa' | 'rsa1024' | 'ec' | 'p384' | 'ed25519';
  subject: string;
  keyUsage: string;
  eku: string;
  san: string;
  issuer?: 'ca' | 'inter' | 'other-ca';
  expired?: boolean;
}

const LEAVES: Leaf[] = [
  { name: 'user-a-rsa', alg: 'rsa', subject: '/O=A Example/CN=User A (RSA)/emailAddress=user@a.example', keyUsage: 'digitalSignature,keyEncipherment', eku: 'emailProtection', san: 'email:user@a.example' },
  { name: 'gw-b-rsa', alg: 'rsa', subject: '/O=B Example/CN=Gateway B (RSA)/emailAddress=gateway@b.example', keyUsage: 'digitalSignature,keyEncipherment', eku: 'emailProtection', san: 'email:gateway@b.example' },
  { name: 'user-a-ec', alg: 'ec', subject: '/O=A Example/CN=User A (P-256)/emailAddress=user@a.example', keyUsage: 'digitalSignature,keyAgreement', eku: 'emailProtection', san: 'email:user@a.example' },
  { name: 'gw-b-ec', alg: 'ec', subject: '/O=B Example/CN=Gateway B (P-256)/emailAddress=gateway@b.example', keyUsage: 'digitalSignature,keyAgreement', eku: 'emailProtection', san: 'email:gateway@b.example' },
  { name: 'user-p384', alg: 'p384', subject: '/O=A Example/CN=User P-384', keyUsage: 'digitalSignature,keyAgreement', eku: 'emailProtection', san: 'email:p384@a.example' },
  { name: 'user-ed25519', alg: 'ed25519', subject: '/O=A Example/CN=User Ed25519', keyUsage: 'digitalSignature', eku: 'emailProtection', san: 'email:ed@a.example' },
  { name: 'user-inter', alg: 'rsa', subject: '/O=A Example/CN=User via Intermediate', keyUsage: 'digitalSignature,keyEncipherment', eku: 'emailProtection', san: 'email:inter@a.example', issuer: 'inter' },
  { name: 'multi-rsa', alg: 'rsa', subject: '/O=A Example/CN=Multi Address (RSA)', keyUsage: 'digitalSignature,keyEncipherment', eku: 'emailProtection', san: 'email:multi@a.example,email:alias@A.Example' },
  { name: 'bad-noeku', alg: 'rsa', subject: '/O=A Example/CN=Bad No EKU/emailAddress=bad@a.example', keyUsage: 'digitalSignature,keyEncipherment', eku: 'clientAuth', san: 'email:bad@a.example' },
  { name: 'expired', alg: 'rsa', subject: '/O=A Example/CN=Expired', keyUsage: 'digitalSignature,keyEncipherment', eku: 'emailProtection', san: 'email:old@a.example', expired: true },
  { name: 'weak-rsa', alg: 'rsa1024', subject: '/O=A Example/CN=Weak RSA-1024', keyUsage: 'digitalSignature,keyEncipherment', eku: 'emailProtection', san: 'email:weak@a.example' },
  { name: 'sign-only', alg: 'rsa', subject: '/O=A Example/CN=Sign Only', keyUsage: 'digitalSignature', eku: 'emailProtection', san: 'email:signonly@a.example' },
  { name: 'stranger', alg: 'rsa', subject: '/O=C Example/CN=Stranger', keyUsage: 'digitalSignature,keyEncipherment', eku: 'emailProtection', san: 'email:stranger@c.example', issuer: 'other-ca' },
];

function genKey(dir: string, name: string, alg: Leaf['alg'] | 'rsa3072'): void {
  const args: Record<string, string[]> = {
    rsa: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
    rsa1024: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'],
    rsa3072: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:3072'],
    ec: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-pkeyopt', 'ec_param_enc:named_curve'],
    p384: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384', '-pkeyopt', 'ec_param_enc:named_curve'],
    ed25519: ['-algorithm', 'ED25519'],
  };
  openssl(dir, ['genpkey', ...args[alg], '-out', `${name}.key`]);
}

function makeCa(dir: string, name: string, subject: string, issuer?: string): void {
  genKey(dir, name, 'rsa3072');
  if (!issuer) {
    openssl(dir, ['req', '-x509', '-new', '-key', `${name}.key`, '-sha256', '-days', '3650', '-subj', subject,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectKeyIdentifier=hash', '-out', `${name}.crt`]);
    return;
  }
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`]);
  writeFileSync(join(dir, `${name}.ext`), 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n');
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.crt`, '-CAkey', `${issuer}.key`,
    '-set_serial', '500', '-days', '3650', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`]);
}

function makeLeaf(dir: string, leaf: Leaf, serial: number): void {
  const issuer = leaf.issuer ?? 'ca';
  genKey(dir, leaf.name, leaf.alg);
  openssl(dir, ['req', '-new', '-key', `${leaf.name}.key`, '-subj', leaf.subject, '-out', `${leaf.name}.csr`]);
  const ext = [
    'basicConstraints=critical,CA:FALSE', `keyUsage=critical,${leaf.keyUsage}`, `extendedKeyUsage=${leaf.eku}`,
    `subjectAltName=${leaf.san}`, 'subjectKeyIdentifier=hash', 'authorityKeyIdentifier=keyid,issuer',
  ].join('\n');
  if (leaf.expired) {
    // `openssl x509 -req` in 3.0 cannot backdate; `openssl ca` can.
    mkdirSync(join(dir, 'ca-db'), { recursive: true });
    writeFileSync(join(dir, 'ca-db', 'index.txt'), '');
    writeFileSync(join(dir, 'ca.cnf'), [
      '[ca]', 'default_ca=d', '[d]', 'database=ca-db/index.txt', 'new_certs_dir=ca-db', `serial=ca-db/serial`,
      'default_md=sha256', 'policy=p', 'unique_subject=no', 'copy_extensions=none', '[p]', 'commonName=supplied',
      `[x]`, ...ext.split('\n'),
    ].join('\n'));
    writeFileSync(join(dir, 'ca-db', 'serial'), serial.toString(16).padStart(4, '0') + '\n');
    openssl(dir, ['ca', '-batch', '-config', 'ca.cnf', '-extensions', 'x', '-cert', `${issuer}.crt`, '-keyfile', `${issuer}.key`,
      '-startdate', '20200101000000Z', '-enddate', '20210101000000Z', '-in', `${leaf.name}.csr`, '-out', `${leaf.name}.crt`, '-notext']);
  } else {
    writeFileSync(join(dir, `${leaf.name}.ext`), ext + '\n');
    openssl(dir, ['x509', '-req', '-in', `${leaf.name}.csr`, '-CA', `${issuer}.crt`, '-CAkey', `${issuer}.key`,
      '-set_serial', String(serial), '-days', '3650', '-sha256', '-extfile', `${leaf.name}.ext`, '-out', `${leaf.name}.crt`]);
  }
  const chain = issuer === 'inter' ? 'chain-inter.pem' : `${issuer}.crt`;
  const p12 = ['pkcs12', '-export', '-inkey', `${leaf.name}.key`, '-in', `${leaf.name}.crt`, '-certfile', chain, '-name', leaf.name];
  openssl(dir, [...p12, '-passout', `pass:${P12_PASS}`, '-out', `${leaf.name}.p12`]);
  openssl(dir, [...p12, '-passout', `pass:${P12_PASS}`, '-keypbe', 'PBE-SHA1-3DES', '-certpbe', 'PBE-SHA1-3DES', '-macalg', 'sha1', '-out', `${leaf.name}.3des.p12`]);
}

function build(dir: string): void {
  makeCa(dir, 'ca', '/O=cstp Test/CN=cstp Test Root CA');
  makeCa(dir, 'other-ca', '/O=Elsewhere/CN=Untrusted Root CA');
  makeCa(dir, 'inter', '/O=cstp Test/CN=cstp Test Intermediate CA', 'ca');
  writeFileSync(join(dir, 'chain-inter.pem'), readFileSync(join(dir, 'inter.crt'), 'utf8') + readFileSync(join(dir, 'ca.crt'), 'utf8'));
  LEAVES.forEach((leaf, i) => makeLeaf(dir, leaf, 1001 + i));
}

let cached: string | undefined;

/** Directory holding the test PKI; built on first use. */
export function pkiDir(): string {
  cached ??= buildOnce('test-pki', __filename, 'stranger.crt', build);
  return cached;
}

export const pkiPath = (file: string): string => join(pkiDir(), file);
export const pkiRead = (file: string): Buffer => readFileSync(pkiPath(file));
