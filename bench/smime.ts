/**
 * `npm run bench:smime`: cstp's S/MIME engine side by side with the `openssl cms` CLI and
 * `openssl speed rsa2048`, in one run on one machine, printing ops/s and ratios.
 * Machines are noisy: compare the ratios, not the absolute figures.
 *
 * Environment: CSTP_BENCH_SECONDS (time per in-process measurement, default 2),
 * CSTP_BENCH_CLI_RUNS (openssl cms invocations per operation, default 20), CSTP_BENCH_ROUNDS
 * (alternating rounds for the sign+encrypt target, default 5).
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Certificate } from '../src/pki/certificate';
import { decryptMessage, encryptMessage, signAndEncryptMessage, signMessage, verifyMessage } from '../src/smime/message';
import { pkiPath, pkiRead } from '../test/helpers/pki';

const SECONDS = Number(process.env.CSTP_BENCH_SECONDS ?? 2);
const CLI_RUNS = Number(process.env.CSTP_BENCH_CLI_RUNS ?? 20);
const ROUNDS = Number(process.env.CSTP_BENCH_ROUNDS ?? 5);

const cert = (n: string): Certificate => Certificate.fromPem(pkiRead(`${n}.crt`))[0];
const creds = (n: string) => ({ cert: cert(n), key: createPrivateKey(pkiRead(`${n}.key`)), chain: [] as Certificate[] });
const join2 = (c: Iterable<Buffer>): Buffer => Buffer.concat([...c]);

function message(size: number): Buffer {
  const body = randomBytes(Math.ceil((size * 3) / 4)).toString('base64').slice(0, size).replace(/.{76}/g, '$&\r\n');
  return Buffer.from(
    'From: user@a.example\r\nTo: gateway@b.example\r\nSubject: bench\r\nMIME-Version: 1.0\r\n' +
      `Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n${body}\r\n`,
  );
}

/** Runs fn repeatedly for SECONDS and returns operations per second. */
function opsPerSecond(fn: () => void): number {
  for (let i = 0; i < 3; i++) fn(); // warm up
  const end = process.hrtime.bigint() + BigInt(Math.round(SECONDS * 1e9));
  const start = process.hrtime.bigint();
  let n = 0;
  do {
    fn();
    n++;
  } while (process.hrtime.bigint() < end);
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

function cliOpsPerSecond(args: string[]): number {
  execFileSync('openssl', args, { stdio: 'ignore' });
  const start = process.hrtime.bigint();
  for (let i = 0; i < CLI_RUNS; i++) execFileSync('openssl', args, { stdio: 'ignore' });
  return CLI_RUNS / (Number(process.hrtime.bigint() - start) / 1e9);
}

function opensslSpeedRsa2048Sign(): number {
  const out = execFileSync('openssl', ['speed', '-seconds', String(Math.max(1, Math.round(SECONDS))), 'rsa2048'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  const line = out.split('\n').find((l) => /^rsa\s+2048 bits/.test(l));
  if (!line) throw new Error(`cannot read openssl speed output:\n${out}`);
  return Number(line.trim().split(/\s+/)[5]); // rsa 2048 bits <sign s> <verify s> <sign/s> <verify/s>
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * The target, sign+encrypt of 10 KB >= 0.7x `openssl speed rsa2048` sign/s per core,
 * measured in alternating rounds so that both sides see the same machine load; the raw Node
 * RSA sign rate in the same rounds separates Node-vs-OpenSSL from cstp's own overhead.
 */
function targetRounds(msg: Buffer, signer: ReturnType<typeof creds>, recipient: Certificate): void {
  const digest = Buffer.alloc(32, 1);
  const rounds: { speed: number; raw: number; cstp: number }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    rounds.push({
      speed: opensslSpeedRsa2048Sign(),
      raw: opsPerSecond(() => sign('sha256', digest, signer.key)),
      cstp: opsPerSecond(() => join2(signAndEncryptMessage(msg, signer, [recipient]))),
    });
  }
  const ratios = rounds.map((r) => r.cstp / r.speed);
  console.log(`target, ${ROUNDS} alternating rounds (one core each): medians`);
  console.log(row(['', 'msg|sign/s', 'vs openssl']));
  console.log(row(['openssl speed rsa2048', median(rounds.map((r) => r.speed)), '1.00x']));
  console.log(row(['node crypto.sign RSA', median(rounds.map((r) => r.raw)), `${median(rounds.map((r) => r.raw / r.speed)).toFixed(2)}x`]));
  console.log(row(['cstp sign+encrypt 10KB', median(rounds.map((r) => r.cstp)), `${median(ratios).toFixed(2)}x`]));
  console.log(`per-round ratios: ${ratios.map((r) => r.toFixed(2)).join(' ')}; target >= 0.70x: ${median(ratios) >= 0.7 ? 'MET' : 'NOT MET'}`);
}

function row(cells: (string | number)[]): string {
  return cells.map((c, i) => (typeof c === 'number' ? c.toFixed(c >= 100 ? 0 : 1) : c).padStart(i === 0 ? 0 : 12).padEnd(i === 0 ? 22 : 0)).join('');
}

function main(): void {
  const dir = mkdtempSync(join(tmpdir(), 'cstp-bench-'));
  const signer = creds('user-a-rsa');
  const recipient = cert('gw-b-rsa');
  const recipientKey = creds('gw-b-rsa');
  const trust = { anchors: [cert('ca')] };
  const P = (f: string): string => pkiPath(f);
  const ops = ['sign', 'verify', 'encrypt', 'decrypt', 'sign+encrypt'];

  console.log(`cstp S/MIME engine vs openssl cms CLI; ${cpus().length} cores (${cpus()[0]?.model}), Node ${process.version}, OpenSSL ${process.versions.openssl}`);
  console.log(`in-process: ${SECONDS}s per measurement, one thread; CLI: ${CLI_RUNS} runs per operation, process start included\n`);
  for (const size of [10 * 1024, 1024 * 1024]) {
    const label = size >= 1024 * 1024 ? '1 MB' : '10 KB';
    const msg = message(size);
    const signed = join2(signMessage(msg, signer));
    const encrypted = join2(encryptMessage(msg, [recipient]));
    const files = { msg: join(dir, 'msg.eml'), signed: join(dir, 'signed.eml'), enc: join(dir, 'enc.eml'), out: join(dir, 'out.eml') };
    writeFileSync(files.msg, msg);
    writeFileSync(files.signed, signed);
    writeFileSync(files.enc, encrypted);
    const cstp: Record<string, () => void> = {
      sign: () => join2(signMessage(msg, signer)),
      verify: () => verifyMessage(signed, trust),
      encrypt: () => join2(encryptMessage(msg, [recipient])),
      decrypt: () => decryptMessage(encrypted, [recipientKey]),
      'sign+encrypt': () => join2(signAndEncryptMessage(msg, signer, [recipient])),
    };
    const signArgs = ['cms', '-sign', '-binary', '-md', 'sha256', '-in', files.msg, '-signer', P('user-a-rsa.crt'), '-inkey', P('user-a-rsa.key'), '-out', files.out];
    const cli: Record<string, () => number> = {
      sign: () => cliOpsPerSecond(signArgs),
      verify: () => cliOpsPerSecond(['cms', '-verify', '-in', files.signed, '-CAfile', P('ca.crt'), '-out', files.out]),
      encrypt: () => cliOpsPerSecond(['cms', '-encrypt', '-binary', '-aes-256-cbc', '-in', files.msg, '-out', files.out, P('gw-b-rsa.crt')]),
      decrypt: () => cliOpsPerSecond(['cms', '-decrypt', '-in', files.enc, '-recip', P('gw-b-rsa.crt'), '-inkey', P('gw-b-rsa.key'), '-out', files.out]),
      // Two processes per message, as a pipe filter running openssl would.
      'sign+encrypt': () => 1 / (1 / cliOpsPerSecond(signArgs) + 1 / cliOpsPerSecond(['cms', '-encrypt', '-binary', '-aes-256-cbc', '-in', files.msg, '-out', files.out, P('gw-b-rsa.crt')])),
    };
    console.log(row([`${label} (ops/s)`, 'cstp', 'openssl cms', 'ratio']));
    for (const op of ops) {
      const r = { cstp: opsPerSecond(cstp[op]), openssl: cli[op]() };
      console.log(row([op, r.cstp, r.openssl, `${(r.cstp / r.openssl).toFixed(2)}x`]));
    }
    console.log('');
  }
  targetRounds(message(10 * 1024), signer, recipient);
  rmSync(dir, { recursive: true, force: true });
}

main();
