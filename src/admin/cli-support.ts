/**
 * What every `cstp` command shares: exit codes, option parsing, input/output of messages and
 * loading certificates and keys named on the command line.
 */
import { closeSync, createWriteStream, fstatSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { Certificate } from '../pki/certificate';
import { isPkcs12, loadCredentials, type Credentials } from '../pki/keys';
import type { Chunks } from '../smime/message';

/** 0 success; 1 a signature that is not good and trusted; 2 usage error; 3 the operation failed. */
export const EXIT = { ok: 0, notTrusted: 1, usage: 2, failed: 3 } as const;

/** A mistake in the command line: reported with exit code 2. */
export class UsageError extends Error {}

export interface Command {
  /** First line: the synopsis; then what it does. */
  usage: string;
  run(args: string[]): Promise<number>;
}

export const COMMON = {
  in: { type: 'string' },
  out: { type: 'string' },
} as const;

export const KEYS = {
  cert: { type: 'string', multiple: true },
  key: { type: 'string', multiple: true },
  'pass-env': { type: 'string' },
  'pass-file': { type: 'string' },
} as const;

export function printUsage(command: Command): number {
  process.stdout.write(`Usage: ${command.usage}\n`);
  return EXIT.ok;
}

export type Values = Record<string, string | boolean | string[] | undefined>;

export function parse(args: string[], options: ParseArgsConfig['options']): Values {
  try {
    return parseArgs({ args, options: { ...COMMON, ...options }, strict: true, allowPositionals: false }).values as Values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * Reads the whole input once. A regular file (also stdin redirected from one) is read into a
 * single buffer of its size; a pipe is collected in chunks and joined, briefly holding it twice.
 */
export async function readInput(path: string | undefined): Promise<Buffer> {
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
export async function writeOutput(path: string | undefined, chunks: Chunks): Promise<void> {
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

export function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export function loadCertificates(paths: string[] | undefined, what: string): Certificate[] {
  return (paths ?? []).flatMap((p) => Certificate.load(readFile(p, what)));
}

export function passphrase(values: { 'pass-env'?: string; 'pass-file'?: string }): string | undefined {
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
export function loadKeyPairs(values: { cert?: string[]; key?: string[]; 'pass-env'?: string; 'pass-file'?: string }): Credentials[] {
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
