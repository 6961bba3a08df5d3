/**
 * Harness for the interop tests: running commands, the cstp CLI, and the three peers
 * (OpenSSL `openssl cms`, GnuPG `gpgsm`, NSS `cmsutil`) set up per the verified recipes in
 * shared/reference/interop-peers.md.
 *
 * Each test file makes one Workdir (a mkdtemp directory), at most one gpgsm home and one NSS
 * database in it, and removes it all in an after() hook: gpg-agent is per home and would
 * otherwise outlive the test process.
 */
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { P12_PASS, pkiPath } from '../helpers/pki';
import { toCrlf } from './mime-der';

export interface RunResult {
  rc: number;
  stdout: Buffer;
  stderr: string;
  /** The command line, for failure messages. */
  command?: string;
}

export interface RunOptions {
  input?: Buffer | string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill the process after this long; a hang is a failure, not a stuck CI run. */
  timeoutMs?: number;
}

/** Run a command, feeding `input` on stdin, capturing everything. Never throws on a non-zero exit. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString('utf8') + (timedOut ? `\n[killed after timeout]` : '');
      resolvePromise({ rc: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out), stderr, command: [cmd, ...args].join(' ') });
    });
    // A child that exits without reading stdin gives EPIPE; its exit status tells the story.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Command line with the long temp paths shortened: `node bin/cstp smime decrypt --key PKI/x.p12`. */
function shortCommand(command: string): string {
  return command
    .replace(process.execPath, 'node')
    .replace(/\S*\/bin\/cstp\b/g, 'bin/cstp')
    .replace(/\S*\/cstp-test-pki-[^/\s]+\//g, 'PKI/')
    .replace(/\S*\/cstp-interop-[^/\s]+\//g, 'WORK/');
}

/** A readable one-line summary of a failed command, for assertion messages. */
export function describeRun(what: string, r: RunResult): string {
  const cmd = r.command ? ` command=${JSON.stringify(shortCommand(r.command))}` : '';
  return `${what}: rc=${r.rc} stderr=${JSON.stringify(r.stderr.trim().slice(0, 800))}${cmd}`;
}

/** Names from `names` that are not on PATH. */
export function missingBinaries(...names: string[]): string[] {
  const dirs = (process.env.PATH ?? '').split(delimiter);
  const executable = (p: string): boolean => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  return names.filter((n) => !dirs.some((d) => d !== '' && executable(join(d, n))));
}

/** `skip` option for node:test: a reason when a peer is not installed, else false. */
export function skipUnless(...binaries: string[]): string | false {
  const missing = missingBinaries(...binaries);
  return missing.length ? `${missing.join(', ')} not installed` : false;
}

// ---------------------------------------------------------------------------------------------
// Scratch files

/** A private temp directory with uniquely named files. */
export class Workdir {
  readonly dir: string;
  private counter = 0;

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), `cstp-interop-${prefix}-`));
  }

  /** A fresh path in the work dir (not created). */
  path(name: string): string {
    return join(this.dir, `${++this.counter}-${name}`);
  }

  /** Write data to a fresh file and return its path. */
  write(name: string, data: Buffer | string): string {
    const p = this.path(name);
    writeFileSync(p, data);
    return p;
  }

  subdir(name: string): string {
    const p = join(this.dir, name);
    mkdirSync(p, { recursive: true, mode: 0o700 });
    return p;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// cstp, the product under test

export const REPO_ROOT = resolve(__dirname, '..', '..', '..');
export const CSTP_BIN = join(REPO_ROOT, 'bin', 'cstp');

/** `node bin/cstp ARGS`, the way a user runs it. */
export function cstp(args: string[], input?: Buffer, env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return run(process.execPath, [CSTP_BIN, ...args], { input, env: env ? { ...process.env, ...env } : undefined });
}

/** Short names for PKI files in command lines. */
export const crt = (name: string): string => pkiPath(`${name}.crt`);
export const key = (name: string): string => pkiPath(`${name}.key`);

/** SHA-1 fingerprint, hex without colons (gpgsm's 0xFPR) or with colons (trustlist.txt). */
export function sha1Fingerprint(certName: string, colons: boolean): string {
  const fp = new X509Certificate(readFileSync(crt(certName))).fingerprint; // "AB:CD:..."
  return colons ? fp : fp.replace(/:/g, '');
}

// ---------------------------------------------------------------------------------------------
// OpenSSL `openssl cms` (full S/MIME messages in and out)

export interface OpensslSignOptions {
  signer: string; // PKI name
  detached: boolean;
  md?: 'sha256' | 'sha384' | 'sha512';
  pss?: boolean;
  certfile?: string; // extra certificates (chain)
}

export interface OpensslEncryptOptions {
  cipher?: string; // openssl cipher name, default aes-256-cbc
  oaep?: boolean;
  /** false: openssl's own line endings (LF headers and base64), as a local LF mailbox would hold it. */
  crlf?: boolean;
}

/**
 * openssl output as a mail transport would deliver it: CRLF throughout. (-crlfeol fixes the
 * headers but not the base64 lines; our content is CRLF already, so canonicalising is lossless.)
 */
async function crlfOutput(p: Promise<RunResult>): Promise<RunResult> {
  const r = await p;
  return r.rc === 0 ? { ...r, stdout: toCrlf(r.stdout) } : r;
}

export const openssl = {
  /** Sign a MIME entity; output is an S/MIME message (CRLF) with MIME headers only. */
  sign(entity: Buffer, o: OpensslSignOptions): Promise<RunResult> {
    const args = ['cms', '-sign', '-binary', '-crlfeol', '-signer', crt(o.signer), '-inkey', key(o.signer)];
    if (!o.detached) args.push('-nodetach');
    if (o.md) args.push('-md', o.md);
    if (o.pss) args.push('-keyopt', 'rsa_padding_mode:pss');
    if (o.certfile) args.push('-certfile', o.certfile);
    return crlfOutput(run('openssl', args, { input: entity }));
  },

  /** Verify an S/MIME message against `trust`; stdout is the signed content. */
  verify(msg: Buffer, trust: string = crt('ca')): Promise<RunResult> {
    // No -binary here: with it, openssl 3.0 fails to verify even its own multipart/signed output.
    return run('openssl', ['cms', '-verify', '-CAfile', trust], { input: msg });
  },

  /** Encrypt a MIME entity to the given PKI names; output is an S/MIME message. */
  encrypt(entity: Buffer, recipients: string[], o: OpensslEncryptOptions = {}): Promise<RunResult> {
    const args = ['cms', '-encrypt', '-binary', `-${o.cipher ?? 'aes-256-cbc'}`];
    for (const r of recipients) {
      args.push('-recip', crt(r));
      // -keyopt applies to the -recip just before it.
      if (o.oaep) args.push('-keyopt', 'rsa_padding_mode:oaep', '-keyopt', 'rsa_oaep_md:sha256', '-keyopt', 'rsa_mgf1_md:sha256');
    }
    if (o.crlf === false) return run('openssl', args, { input: entity });
    return crlfOutput(run('openssl', [...args, '-crlfeol'], { input: entity }));
  },

  /** openssl's dump of the CMS structure (no key needed): the algorithms a message really uses. */
  async print(msg: Buffer): Promise<string> {
    const r = await run('openssl', ['cms', '-cmsout', '-print'], { input: msg });
    if (r.rc !== 0) throw new Error(describeRun('openssl cms -cmsout -print', r));
    return r.stdout.toString('utf8');
  },

  decrypt(msg: Buffer, recipient: string): Promise<RunResult> {
    return run('openssl', ['cms', '-decrypt', '-binary', '-recip', crt(recipient), '-inkey', key(recipient)], { input: msg });
  },
};

// ---------------------------------------------------------------------------------------------
// GnuPG gpgsm (raw CMS DER in and out)

/** A throwaway gpgsm home trusting the test root, with the given identities' keys imported. */
export class Gpgsm {
  readonly name = 'gpgsm';

  private constructor(readonly home: string, private readonly work: Workdir) {}

  static homeIn(work: Workdir): string {
    return join(work.dir, 'gnupg');
  }

  /** Stop the gpg-agent of the home in `work`, if any (also after a failed create()). */
  static async killAgent(work: Workdir): Promise<void> {
    await run('gpgconf', ['--homedir', Gpgsm.homeIn(work), '--kill', 'gpg-agent']);
  }

  static async create(work: Workdir, identities: string[]): Promise<Gpgsm> {
    const home = work.subdir('gnupg');
    // Offline: no CRL/OCSP lookups, no dirmngr daemon.
    writeFileSync(join(home, 'gpgsm.conf'), 'disable-crl-checks\ndisable-dirmngr\n');
    // s2k-count: the agent re-protects imported keys with the passphrase using its calibrated
    // (slow, ~0.4 s per use) KDF; the minimum count makes each sign/decrypt cheap. Test keys only.
    writeFileSync(join(home, 'gpg-agent.conf'), 'allow-loopback-pinentry\ns2k-count 65536\n');
    // Trusting a root non-interactively: its SHA-1 fingerprint with flag S (S/MIME) in trustlist.txt,
    // written before the agent starts so no reload is needed.
    writeFileSync(join(home, 'trustlist.txt'), `${sha1Fingerprint('ca', true)} S relax\n`);
    const g = new Gpgsm(home, work);
    await g.mustRun(['--import', crt('ca')], '', 'import ca');
    // gpgsm imports only the legacy PBE-SHA1-3DES PKCS#12 (PBES2 fails), and cannot import EC keys.
    for (const id of identities) await g.mustRun(['--import', pkiPath(`${id}.3des.p12`)], `${P12_PASS}\n`, `import ${id}`);
    return g;
  }

  private base(): string[] {
    return ['--homedir', this.home, '--batch', '--pinentry-mode', 'loopback', '--passphrase-fd', '0'];
  }

  /** Run gpgsm with the passphrase on stdin (file arguments carry the data). */
  gpgsm(args: string[], passphrase = `${P12_PASS}\n`): Promise<RunResult> {
    return run('gpgsm', [...this.base(), ...args], { input: passphrase });
  }

  private async mustRun(args: string[], input: string, what: string): Promise<void> {
    const r = await this.gpgsm(args, input);
    if (r.rc !== 0) throw new Error(describeRun(`gpgsm ${what}`, r));
  }

  /** Sign `data` as `signer`; returns CMS DER. */
  async sign(data: Buffer, signer: string, detached: boolean): Promise<RunResult & { der: Buffer }> {
    const input = this.work.write('gpgsm-in.eml', data);
    const output = this.work.path('gpgsm-signed.der');
    const r = await this.gpgsm(['-u', `0x${sha1Fingerprint(signer, false)}`, detached ? '--detach-sign' : '--sign', '--output', output, input]);
    return { ...r, der: r.rc === 0 ? readFileSync(output) : Buffer.alloc(0) };
  }

  /**
   * Verify a detached signature over `content`, or an opaque signed-data (content undefined).
   * Returns the extracted content for opaque signatures. Success means rc 0 and gpgsm's
   * status lines saying the signature is good, valid and fully trusted.
   */
  async verify(signature: Buffer, content?: Buffer): Promise<{ ok: boolean; content: Buffer; detail: string }> {
    const sig = this.work.write('gpgsm-sig.der', signature);
    const output = this.work.path('gpgsm-verified.eml');
    const args = ['--status-fd', '1', ...(content ? [] : ['--output', output]), '--verify', sig];
    if (content) args.push(this.work.write('gpgsm-content.eml', content));
    const r = await this.gpgsm(args);
    const status = r.stdout.toString('utf8');
    const ok = r.rc === 0 && /\bGOODSIG\b/.test(status) && /\bVALIDSIG\b/.test(status) && /\bTRUST_FULLY\b/.test(status);
    const extracted = !content && r.rc === 0 ? readFileSync(output) : Buffer.alloc(0);
    return { ok, content: extracted, detail: `rc=${r.rc} status=${JSON.stringify(status.trim())} stderr=${JSON.stringify(r.stderr.trim())}` };
  }

  /** Encrypt to `recipient` (RSA PKCS#1 v1.5; gpgsm's only key transport). */
  async encrypt(data: Buffer, recipient: string, cipherAlgo?: string): Promise<RunResult & { der: Buffer }> {
    const input = this.work.write('gpgsm-plain.eml', data);
    const output = this.work.path('gpgsm-enc.der');
    const args = ['-r', `0x${sha1Fingerprint(recipient, false)}`];
    if (cipherAlgo) args.push('--cipher-algo', cipherAlgo);
    const r = await this.gpgsm([...args, '--encrypt', '--output', output, input]);
    return { ...r, der: r.rc === 0 ? readFileSync(output) : Buffer.alloc(0) };
  }

  async decrypt(der: Buffer): Promise<RunResult & { plain: Buffer }> {
    const input = this.work.write('gpgsm-enc.der', der);
    const output = this.work.path('gpgsm-dec.eml');
    const r = await this.gpgsm(['--decrypt', '--output', output, input]);
    return { ...r, plain: r.rc === 0 ? readFileSync(output) : Buffer.alloc(0) };
  }

  /** Stop this home's gpg-agent (started on demand by gpgsm). */
  async close(): Promise<void> {
    await Gpgsm.killAgent(this.work);
  }
}

// ---------------------------------------------------------------------------------------------
// NSS certutil / pk12util / cmsutil (raw CMS DER in and out)

/** A throwaway NSS database trusting the test root for S/MIME, with the given identities' keys. */
export class Nss {
  readonly name = 'NSS cmsutil';

  private constructor(readonly db: string, private readonly work: Workdir) {}

  static async create(work: Workdir, identities: string[]): Promise<Nss> {
    const db = `sql:${work.subdir('nssdb')}`;
    const must = async (cmd: string, args: string[], what: string): Promise<void> => {
      const r = await run(cmd, args);
      if (r.rc !== 0) throw new Error(describeRun(what, r));
    };
    await must('certutil', ['-N', '-d', db, '--empty-password'], 'certutil -N');
    // "CT,C,C": the middle field is the S/MIME trust (C = trusted CA for e-mail).
    await must('certutil', ['-A', '-d', db, '-n', 'cstp Test Root CA', '-t', 'CT,C,C', '-i', crt('ca')], 'certutil -A ca');
    // OpenSSL-3-default PKCS#12 works; the nickname is the p12 friendlyName (= the PKI name).
    for (const id of identities) {
      await must('pk12util', ['-i', pkiPath(`${id}.p12`), '-d', db, '-W', P12_PASS, '-K', ''], `pk12util ${id}`);
    }
    return new Nss(db, work);
  }

  private cmsutil(args: string[]): Promise<RunResult> {
    return run('cmsutil', [...args.slice(0, 1), '-d', this.db, ...args.slice(1)]);
  }

  /** Sign with SHA-256, signingTime and SMIMECapabilities, like Thunderbird. */
  async sign(data: Buffer, signer: string, detached: boolean): Promise<RunResult & { der: Buffer }> {
    const input = this.work.write('nss-in.eml', data);
    const output = this.work.path('nss-signed.der');
    const r = await this.cmsutil(['-S', '-N', signer, '-H', 'SHA256', '-G', '-P', ...(detached ? ['-T'] : []), '-i', input, '-o', output]);
    return { ...r, der: r.rc === 0 ? readFileSync(output) : Buffer.alloc(0) };
  }

  /**
   * Verify (certUsageEmailSigner) a detached signature over `content`, or an opaque signed-data.
   * Without -h, cmsutil's exit code reflects verification (rc 1 on a bad or untrusted signature).
   */
  async verify(signature: Buffer, content?: Buffer): Promise<{ ok: boolean; content: Buffer; detail: string }> {
    const sig = this.work.write('nss-sig.der', signature);
    const output = this.work.path('nss-verified.eml');
    const args = ['-D', '-i', sig];
    if (content) args.push('-c', this.work.write('nss-content.eml', content), '-n');
    else args.push('-o', output);
    const r = await this.cmsutil(args);
    let extracted = Buffer.alloc(0);
    if (!content && r.rc === 0) extracted = readFileSync(output);
    return { ok: r.rc === 0, content: extracted, detail: describeRun('cmsutil -D', r) };
  }

  /** Envelope to `recipient` by nickname: AES-128-CBC + RSA PKCS#1 v1.5, NSS has no cipher option. */
  async encrypt(data: Buffer, recipient: string): Promise<RunResult & { der: Buffer }> {
    const input = this.work.write('nss-plain.eml', data);
    const output = this.work.path('nss-enc.der');
    const r = await this.cmsutil(['-E', '-r', recipient, '-i', input, '-o', output]);
    return { ...r, der: r.rc === 0 ? readFileSync(output) : Buffer.alloc(0) };
  }

  async decrypt(der: Buffer): Promise<RunResult & { plain: Buffer }> {
    const input = this.work.write('nss-enc.der', der);
    const output = this.work.path('nss-dec.eml');
    const r = await this.cmsutil(['-D', '-i', input, '-o', output]);
    return { ...r, plain: r.rc === 0 ? readFileSync(output) : Buffer.alloc(0) };
  }
}
