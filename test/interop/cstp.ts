/**
 * The `cstp smime` CLI contract (issue 2), wrapped for the interop tests. Every call goes
 * through `node bin/cstp`, exactly as a user would run it; nothing here imports src/.
 *
 *   cstp smime sign    --cert C.pem --key K.pem [--chain CA.pem] [--opaque] [--digest sha256|sha384|sha512] [--pss]
 *   cstp smime encrypt --recipient R.pem [...] [--cipher aes-256-cbc|aes-128-cbc|aes-256-gcm|aes-128-gcm] [--oaep]
 *   cstp smime decrypt --cert C.pem --key K.pem      (--key may be a .p12 with --pass-env VAR or --pass-file F)
 *   cstp smime verify  --trust CA.pem [--trust ...] [--out content.eml]     # exit 0 only for good+trusted
 *   cstp smime unwrap  --cert C.pem --key K.pem [...] --trust CA.pem
 */
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { P12_PASS, pkiPath } from '../helpers/pki';
import { RunResult, Workdir, cstp, crt, describeRun, key } from './peers';

export interface SignOptions {
  signer: string; // PKI name
  opaque?: boolean;
  digest?: 'sha256' | 'sha384' | 'sha512';
  pss?: boolean;
  chain?: string; // path
}

export function sign(msg: Buffer, o: SignOptions): Promise<RunResult> {
  const args = ['smime', 'sign', '--cert', crt(o.signer), '--key', key(o.signer)];
  if (o.chain) args.push('--chain', o.chain);
  if (o.opaque) args.push('--opaque');
  if (o.digest) args.push('--digest', o.digest);
  if (o.pss) args.push('--pss');
  return cstp(args, msg);
}

export interface EncryptOptions {
  cipher?: 'aes-256-cbc' | 'aes-128-cbc' | 'aes-256-gcm' | 'aes-128-gcm';
  oaep?: boolean;
}

export function encrypt(msg: Buffer, recipients: string[], o: EncryptOptions = {}): Promise<RunResult> {
  const args = ['smime', 'encrypt', ...recipients.flatMap((r) => ['--recipient', crt(r)])];
  if (o.cipher) args.push('--cipher', o.cipher);
  if (o.oaep) args.push('--oaep');
  return cstp(args, msg);
}

/** How decrypt/unwrap get the private key. */
export type KeySource =
  | { pem: string } // --cert NAME.crt --key NAME.key
  // --key NAME.p12 (or .3des.p12) with a passphrase; withCert also passes --cert NAME.crt, the
  // issue's literal form `decrypt --cert C.pem --key K` with K a PKCS#12 file.
  | { p12: string; legacy?: boolean; via: 'env' | 'file'; withCert?: boolean };

const PASS_VAR = 'CSTP_INTEROP_P12_PASS';

function keyArgs(work: Workdir, keys: KeySource[]): { args: string[]; env?: NodeJS.ProcessEnv } {
  const args: string[] = [];
  let env: NodeJS.ProcessEnv | undefined;
  for (const k of keys) {
    if ('pem' in k) {
      args.push('--cert', crt(k.pem), '--key', key(k.pem));
      continue;
    }
    if (k.withCert) args.push('--cert', crt(k.p12));
    args.push('--key', pkiPath(`${k.p12}${k.legacy ? '.3des' : ''}.p12`));
    if (k.via === 'env') {
      args.push('--pass-env', PASS_VAR);
      env = { [PASS_VAR]: P12_PASS };
    } else {
      args.push('--pass-file', work.write('p12-pass.txt', `${P12_PASS}\n`));
    }
  }
  return { args, env };
}

export function decrypt(work: Workdir, msg: Buffer, keySource: KeySource): Promise<RunResult> {
  const { args, env } = keyArgs(work, [keySource]);
  return cstp(['smime', 'decrypt', ...args], msg, env);
}

export interface VerifyResult extends RunResult {
  /** What --out received (empty when cstp wrote nothing). */
  content: Buffer;
}

export async function verify(work: Workdir, msg: Buffer, trust: string[] = ['ca']): Promise<VerifyResult> {
  const out = work.path('verified.eml');
  const r = await cstp(['smime', 'verify', ...trust.flatMap((t) => ['--trust', crt(t)]), '--out', out], msg);
  return { ...r, content: existsSync(out) ? readFileSync(out) : Buffer.alloc(0) };
}

export function unwrap(work: Workdir, msg: Buffer, keys: KeySource[], trust: string[] = ['ca']): Promise<RunResult> {
  const { args, env } = keyArgs(work, keys);
  return cstp(['smime', 'unwrap', ...args, ...trust.flatMap((t) => ['--trust', crt(t)])], msg, env);
}

/** Assert success and return stdout; the failure message carries cstp's one-line reason. */
export function ok(r: RunResult, what: string): Buffer {
  assert.equal(r.rc, 0, describeRun(what.startsWith('cstp ') ? what : `cstp ${what}`, r));
  return r.stdout;
}

/** Assert a clean refusal: non-zero exit, no crash, a one-line reason on stderr. */
export function refused(r: RunResult, what: string): void {
  assert.notEqual(r.rc, 0, `cstp ${what} should have failed but exited 0 (${r.command ?? ''})`);
  const lines = r.stderr.trim().split('\n').filter((l) => l.trim() !== '');
  assert.ok(lines.length >= 1, `cstp ${what}: no reason on stderr`);
  assert.ok(!/^\s+at .+\(.*:\d+:\d+\)$/m.test(r.stderr), `cstp ${what}: stack trace on stderr: ${r.stderr}`);
}
