/**
 * The `cstp` command line. `cstp smime ...` works on complete RFC 5322 messages, stdin to
 * stdout unless --in/--out, like `openssl cms` in S/MIME mode.
 *
 * Exit codes: 0 success; 1 a signature that is not good and trusted (verify, unwrap);
 * 2 usage error; 3 the operation failed (bad input, no matching key, unreadable file...).
 * Failures print one line on stderr; nothing is written to --out unless the operation succeeded.
 */
import { closeSync, createWriteStream, fstatSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { Certificate } from '../pki/certificate';
import { isPkcs12, loadCredentials, type Credentials } from '../pki/keys';
import type { ContentCipher } from '../smime/cms/enveloped-data';
import type { DigestName } from '../smime/cms/digest';
import {
  decryptMessage, describeLayer, encryptMessage, signMessage, unwrapMessage, verifyMessage, type Chunks,
  type SignatureReport, type VerifiedMessage,
} from '../smime/message';

export const EXIT = { ok: 0, notTrusted: 1, usage: 2, failed: 3 } as const;

class UsageError extends Error {}

const COMMON = {
  in: { type: 'string' },
  out: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;
const KEYS = {
  cert: { type: 'string', multiple: true },
  key: { type: 'string', multiple: true },
  'pass-env': { type: 'string' },
  'pass-file': { type: 'string' },
} as const;

const USAGE: Record<string, string> = {
  sign: `cstp smime sign --cert C.pem --key K.pem [--chain CA.pem] [--opaque] [--digest sha256|sha384|sha512] [--pss]
  Signs a message: multipart/signed (default) or --opaque application/pkcs7-mime signed-data.
  --key may be a PKCS#12 file (then --cert is optional) with --pass-env VAR or --pass-file F.`,
  encrypt: `cstp smime encrypt --recipient R.pem [--recipient R2.pem ...] [--cipher aes-256-cbc|aes-128-cbc|aes-256-gcm|aes-128-gcm] [--oaep] [--ski]
  Encrypts a message to every recipient certificate. Default AES-256-CBC with RSA PKCS#1 v1.5 key transport
  (readable by Thunderbird, Outlook, gpgsm); *-gcm gives AuthEnvelopedData; --oaep uses RSAES-OAEP-SHA256;
  EC certificates get ECDH key agreement; --ski identifies recipients by subjectKeyIdentifier.`,
  decrypt: `cstp smime decrypt --cert C.pem --key K.pem [--cert C2.pem --key K2.pem ...]
  Decrypts a message; writes the content with the outer header fields restored.`,
  verify: `cstp smime verify --trust CA.pem [--trust ...] [--out content.eml]
  Verifies a signed message on its exact bytes; reports on stderr; writes the content (outer header fields
  restored) and exits 0 only when the signature is good and the signer trusted; 1 otherwise.`,
  unwrap: `cstp smime unwrap [--cert C.pem --key K.pem ...] --trust CA.pem [--trust ...] [--max-depth 16]
  Undoes every S/MIME layer it can (decrypt, verify, repeat) and writes the plain message with one
  ${'X-Cstp-Security'} header per layer. Exits 0 when every layer was opened and every signature is good and trusted.`,
};

const TOP_USAGE = `cstp: the cryptographic SMTP transparent proxy

Usage:
  cstp smime sign|encrypt|decrypt|verify|unwrap [options]   S/MIME on RFC 5322 messages (stdin to stdout)
  cstp <command> --help                                     help for one command

Common options: --in FILE (default stdin), --out FILE (default stdout).

${Object.values(USAGE).join('\n\n')}
`;

// ---------------------------------------------------------------------------
// I/O

/**
 * Reads the whole input once. A regular file (also stdin redirected from one) is read into a
 * single buffer of its size; a pipe is collected in chunks and joined, briefly holding it twice.
 */
async function readInput(path: string | undefined): Promise<Buffer> {
  const fd = path ? openSync(path, 'r') : 0;
  try {
    if (fstatSync(fd).isFile()) return readFileSync(fd);
  } finally {
    if (path) closeSync(fd);
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Writes output chunks. A file is written under a temporary name and renamed on success,
 * so a failure half-way never leaves a truncated message behind.
 */
async function writeOutput(path: string | undefined, chunks: Chunks): Promise<void> {
  if (!path) {
    await pipeline(Readable.from(chunks, { objectMode: false }), process.stdout as Writable, { end: false });
    return;
  }
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await pipeline(Readable.from(chunks, { objectMode: false }), createWriteStream(tmp, { mode: 0o600 }));
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function loadCertificates(paths: string[] | undefined, what: string): Certificate[] {
  return (paths ?? []).flatMap((p) => Certificate.load(readFile(p, what)));
}

function passphrase(values: { 'pass-env'?: string; 'pass-file'?: string }): string | undefined {
  if (values['pass-env'] !== undefined) {
    const v = process.env[values['pass-env']];
    if (v === undefined) throw new UsageError(`environment variable ${values['pass-env']} is not set`);
    return v;
  }
  if (values['pass-file'] !== undefined) return readFile(values['pass-file'], 'passphrase file').toString('utf8').replace(/\r?\n$/, '');
  return undefined;
}

/**
 * Pairs --key with --cert. With as many --cert as --key they pair in order (a PKCS#12 --key
 * is then checked against its --cert); otherwise a PKCS#12 --key carries its own
 * certificate and every other --key takes the next --cert.
 */
function loadKeyPairs(values: { cert?: string[]; key?: string[]; 'pass-env'?: string; 'pass-file'?: string }): Credentials[] {
  const certs = [...(values.cert ?? [])];
  const keys = values.key ?? [];
  const pass = passphrase(values);
  const positional = certs.length === keys.length;
  const out = keys.map((keyPath) => {
    const keyData = readFile(keyPath, 'key');
    if (isPkcs12(keyData)) {
      const certPath = positional ? certs.shift() : undefined;
      return loadCredentials(certPath ? readFile(certPath, 'certificate') : keyData, certPath ? keyData : undefined, pass ?? '');
    }
    const certPath = certs.shift();
    if (!certPath) throw new UsageError(`--key ${keyPath} needs a --cert (or give a PKCS#12 file)`);
    return loadCredentials(readFile(certPath, 'certificate'), keyData, pass);
  });
  if (certs.length) throw new UsageError(`--cert ${certs[0]} has no matching --key`);
  return out;
}

// ---------------------------------------------------------------------------
// Commands

type Values = Record<string, string | boolean | string[] | undefined>;

function parse(args: string[], options: ParseArgsConfig['options']): Values {
  try {
    return parseArgs({ args, options: { ...COMMON, ...options }, strict: true, allowPositionals: false }).values as Values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

async function smimeSign(args: string[]): Promise<number> {
  const v = parse(args, { ...KEYS, chain: { type: 'string', multiple: true }, opaque: { type: 'boolean' }, digest: { type: 'string' }, pss: { type: 'boolean' } });
  if (v.help) return help('sign');
  const keys = loadKeyPairs(v as never);
  if (keys.length !== 1) throw new UsageError('sign needs exactly one --key (with --cert, or a PKCS#12 file)');
  const digest = v.digest as string | undefined;
  if (digest && !['sha256', 'sha384', 'sha512'].includes(digest)) throw new UsageError(`--digest ${digest}: use sha256, sha384 or sha512`);
  const [creds] = keys;
  const chain = [...creds.chain, ...loadCertificates(v.chain as string[] | undefined, 'chain')];
  const input = await readInput(v.in as string | undefined);
  await writeOutput(v.out as string | undefined, signMessage(input, { ...creds, chain }, {
    opaque: v.opaque === true, digest: digest as DigestName | undefined, pss: v.pss === true,
  }));
  return EXIT.ok;
}

const CIPHERS: ContentCipher[] = ['aes-256-cbc', 'aes-128-cbc', 'aes-256-gcm', 'aes-128-gcm'];

async function smimeEncrypt(args: string[]): Promise<number> {
  const v = parse(args, { recipient: { type: 'string', multiple: true }, cipher: { type: 'string' }, oaep: { type: 'boolean' }, ski: { type: 'boolean' } });
  if (v.help) return help('encrypt');
  const recipients = loadCertificates(v.recipient as string[] | undefined, 'recipient certificate');
  if (recipients.length === 0) throw new UsageError('encrypt needs at least one --recipient');
  const cipher = (v.cipher as string | undefined) ?? 'aes-256-cbc';
  if (!CIPHERS.includes(cipher as ContentCipher)) throw new UsageError(`--cipher ${cipher}: use one of ${CIPHERS.join(', ')}`);
  const input = await readInput(v.in as string | undefined);
  await writeOutput(v.out as string | undefined, encryptMessage(input, recipients, {
    cipher: cipher as ContentCipher,
    rsaKeyTransport: v.oaep ? 'rsa-oaep' : 'rsa-pkcs1',
    recipientIdentifier: v.ski ? 'subjectKeyIdentifier' : 'issuerAndSerialNumber',
  }));
  return EXIT.ok;
}

async function smimeDecrypt(args: string[]): Promise<number> {
  const v = parse(args, KEYS);
  if (v.help) return help('decrypt');
  const keys = loadKeyPairs(v as never);
  if (keys.length === 0) throw new UsageError('decrypt needs --cert and --key (or a PKCS#12 --key)');
  const input = await readInput(v.in as string | undefined);
  const { message, envelope } = decryptMessage(input, keys);
  process.stderr.write(`cstp: decrypted (${envelope.cipher}, ${envelope.keyEncryption}) for ${envelope.recipient.subject}\n`);
  await writeOutput(v.out as string | undefined, [message]);
  return EXIT.ok;
}

function describeSigner(r: SignatureReport): string {
  const who = r.signer ? `"${r.signer.subject}"` : 'unknown signer';
  const when = r.signingTime ? `, signed ${r.signingTime.toISOString()}` : '';
  return `${r.verdict}: ${r.reason}; ${who}${when}`;
}

async function smimeVerify(args: string[]): Promise<number> {
  const v = parse(args, { trust: { type: 'string', multiple: true }, chain: { type: 'string', multiple: true } });
  if (v.help) return help('verify');
  const anchors = loadCertificates(v.trust as string[] | undefined, 'trust anchor');
  const intermediates = loadCertificates(v.chain as string[] | undefined, 'chain');
  const input = await readInput(v.in as string | undefined);
  const result: VerifiedMessage = verifyMessage(input, { anchors, intermediates });
  for (const s of result.signers) process.stderr.write(`cstp: verify: ${describeSigner(s)}\n`);
  if (result.verdict !== 'good-trusted') return EXIT.notTrusted;
  await writeOutput(v.out as string | undefined, [result.message]);
  return EXIT.ok;
}

async function smimeUnwrap(args: string[]): Promise<number> {
  const v = parse(args, { ...KEYS, trust: { type: 'string', multiple: true }, chain: { type: 'string', multiple: true }, 'max-depth': { type: 'string' } });
  if (v.help) return help('unwrap');
  const keys = loadKeyPairs(v as never);
  const anchors = loadCertificates(v.trust as string[] | undefined, 'trust anchor');
  const intermediates = loadCertificates(v.chain as string[] | undefined, 'chain');
  const maxDepth = v['max-depth'] === undefined ? undefined : Number(v['max-depth']);
  if (maxDepth !== undefined && !(Number.isInteger(maxDepth) && maxDepth > 0)) throw new UsageError('--max-depth takes a positive integer');
  const input = await readInput(v.in as string | undefined);
  const { message, layers } = unwrapMessage(input, { keys, trust: { anchors, intermediates }, maxDepth });
  layers.forEach((l, i) => process.stderr.write(`cstp: unwrap: ${describeLayer(l, i)}\n`));
  await writeOutput(v.out as string | undefined, [message]);
  const complete = layers.every((l) => (l.type === 'signed' ? l.report.verdict === 'good-trusted' : l.status === 'decrypted'));
  return complete ? EXIT.ok : EXIT.notTrusted;
}

const SMIME: Record<string, (args: string[]) => Promise<number>> = {
  sign: smimeSign, encrypt: smimeEncrypt, decrypt: smimeDecrypt, verify: smimeVerify, unwrap: smimeUnwrap,
};

function help(command?: string): number {
  process.stdout.write(command ? `Usage: ${USAGE[command]}\n` : TOP_USAGE);
  return EXIT.ok;
}

async function dispatch(argv: string[]): Promise<number> {
  const [group, command, ...rest] = argv;
  if (group === undefined || group === '--help' || group === '-h' || group === 'help') return help();
  if (group !== 'smime') throw new UsageError(`unknown command "${group}" (try cstp --help)`);
  if (command === undefined || command === '--help' || command === '-h') return help();
  const run = SMIME[command];
  if (!run) throw new UsageError(`unknown command "smime ${command}" (try cstp --help)`);
  return run(rest);
}

/** Runs the CLI; resolves to the exit code. Never throws. */
export async function main(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (e) {
    const err = e as Error;
    if (err instanceof UsageError) {
      process.stderr.write(`cstp: ${err.message}\n`);
      return EXIT.usage;
    }
    const message = (err.message || String(err)).split('\n')[0];
    process.stderr.write(`cstp: ${message}\n`);
    if (process.env.CSTP_DEBUG) process.stderr.write(`${err.stack}\n`);
    return EXIT.failed;
  }
}
