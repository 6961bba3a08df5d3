/**
 * Runs the real gateway for end-to-end tests: a temporary Haraka instance directory holding a copy of the
 * repository's config/ and a link to its plugins/, started as `haraka -c DIR` on a free loopback port.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KeyStore } from '../../src/store/key-store';

export const REPO = resolve(__dirname, '..', '..', '..');
export const HARAKA_BIN = join(REPO, 'node_modules', 'haraka', 'bin', 'haraka');

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

/** A fresh instance directory; `cstpIni` replaces config/cstp.ini when given. */
export function makeInstance(port: number, cstpIni?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'cstp-gw-'));
  // verbatimSymlinks keeps tls.ini's relative links pointing into this instance's own var/tls/.
  cpSync(join(REPO, 'config'), join(dir, 'config'), { recursive: true, verbatimSymlinks: true });
  // plugins/<name>/package.json points at ../../dist/plugins/<name>/, so dist/ must sit beside plugins/.
  symlinkSync(join(REPO, 'plugins'), join(dir, 'plugins'));
  symlinkSync(join(REPO, 'dist'), join(dir, 'dist'));
  const smtpIni = join(dir, 'config', 'smtp.ini');
  // One process per test gateway (nodes=0): the tests start many at once; test/gateway/cluster.test.ts and the
  // netns bridge test run the shipped cluster setting. CSTP_TEST_NODES=N runs every test gateway as a cluster.
  const nodes = process.env.CSTP_TEST_NODES ?? '0';
  writeFileSync(smtpIni, readFileSync(smtpIni, 'utf8').replace(/^listen=.*$/m, `listen=127.0.0.1:${port}`).replace(/^nodes=.*$/m, `nodes=${nodes}`));
  if (cstpIni !== undefined) writeFileSync(join(dir, 'config', 'cstp.ini'), cstpIni);
  return dir;
}

/**
 * An instance whose cstp.ini is `ini` plus a [store] in var/ (passphrase file 0600), the store filled by `fill`
 * before the gateway starts (LMDB is then opened by the gateway alone).
 */
export async function makeInstanceWithStore(port: number, ini: string, passphrase: string, fill: (store: KeyStore) => void): Promise<string> {
  const dir = makeInstance(port, `${ini}\n[store]\npath = var/store\npassphrase_file = var/store.passphrase\n`);
  mkdirSync(join(dir, 'var'), { mode: 0o700 });
  writeFileSync(join(dir, 'var', 'store.passphrase'), `${passphrase}\n`, { mode: 0o600 });
  const store = KeyStore.open({ path: join(dir, 'var', 'store'), passphrase });
  try {
    fill(store);
  } finally {
    await store.close();
  }
  return dir;
}

export function removeInstance(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface Gateway {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

export function spawnGateway(dir: string): Gateway {
  const child = spawn(process.execPath, [HARAKA_BIN, '-c', dir], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Resolves once Haraka logs that it listens; rejects if it exits first or takes longer than `ms`. */
export async function listening(gw: Gateway, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  let exited = false;
  void gw.exited.then(() => (exited = true));
  while (!gw.stdout().includes('Listening on')) {
    if (exited) throw new Error(`gateway exited before listening:\n${gw.stderr()}\n${gw.stdout()}`);
    if (Date.now() > deadline) throw new Error(`gateway not listening after ${ms} ms:\n${gw.stdout()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Stops the gateway as an operator would (Ctrl-C) and returns its exit code. */
export async function stopGateway(gw: Gateway): Promise<number | null> {
  if (gw.child.exitCode !== null || gw.child.signalCode !== null) return gw.child.exitCode;
  gw.child.kill('SIGINT');
  const timer = setTimeout(() => gw.child.kill('SIGKILL'), 5_000);
  try {
    return await gw.exited;
  } finally {
    clearTimeout(timer);
  }
}

export interface SwaksResult {
  code: number;
  output: string;
}

/** swaks against the gateway; its transcript and exit code (swaks exits non-zero on any refusal). */
export async function swaks(port: number, args: string[]): Promise<SwaksResult> {
  const argv = ['--server', '127.0.0.1', '--port', String(port), '--from', 'juro@amd.example', '--to', 'julia@intel.example', '--timeout', '10', ...args];
  return new Promise((done) => {
    execFile('swaks', argv, { timeout: 15_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      done({ code, output: stdout + stderr });
    });
  });
}

/** Every stdout line that is a JSON object, parsed. */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
