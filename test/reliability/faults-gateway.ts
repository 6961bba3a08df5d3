/**
 * The real gateway for the reliability tests: an instance directory with its cstp.ini and a filled store
 * (like test/gateway/paper-gateways.ts), started, killed with SIGKILL and restarted on the same port, or started
 * under a command prefix (setpriv, unshare with a tmpfs) for the store-fault tests.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyStore } from '../../src/store/key-store';
import { freePort, HARAKA_BIN, listening, makeInstance, removeInstance, stopGateway, type Gateway } from '../gateway/harness';
import { PASS } from '../gateway/paper-gateways';

export { PASS };

export interface Instance {
  dir: string;
  port: number;
}

/** cstp.ini plus the store section; `var` is where the store and passphrase go (default var/). */
export async function prepareInstance(ini: string, fill: (store: KeyStore) => void, opts: { varName?: string } = {}): Promise<Instance> {
  const port = await freePort();
  const dir = makeInstance(port, `${ini}\n[store]\npath = var/store\npassphrase_file = var/store.passphrase\n`);
  const varDir = join(dir, opts.varName ?? 'var');
  mkdirSync(varDir, { mode: 0o700 });
  writeFileSync(join(varDir, 'store.passphrase'), `${PASS}\n`, { mode: 0o600 });
  const store = KeyStore.open({ path: join(varDir, 'store'), passphrase: PASS });
  try {
    fill(store);
  } finally {
    await store.close();
  }
  return { dir, port };
}

/** Haraka on the instance, optionally run by `prefix` (argv before node, e.g. setpriv ...). */
export function launch(dir: string, prefix: string[] = []): Gateway {
  const argv = [...prefix, process.execPath, HARAKA_BIN, '-c', dir];
  const child = spawn(argv[0], argv.slice(1), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code, signal) => done(code ?? (signal ? 128 : null))));
  return { child, stdout: () => out, stderr: () => err, exited };
}

export async function start(dir: string, prefix: string[] = []): Promise<Gateway> {
  const gw = launch(dir, prefix);
  await listening(gw, 30_000);
  return gw;
}

/** kill -9, and wait until the process is gone (its listening socket with it). */
export async function kill9(gw: Gateway): Promise<void> {
  if (gw.child.exitCode !== null || gw.child.signalCode !== null) return;
  gw.child.kill('SIGKILL');
  await gw.exited;
}

export async function stopAndRemove(gw: Gateway | undefined, inst: Instance | undefined): Promise<void> {
  if (gw) await stopGateway(gw);
  if (inst) removeInstance(inst.dir);
}

/** The decision lines the gateway logged. */
export function decisions(gw: Gateway): Record<string, unknown>[] {
  return gw
    .stdout()
    .split('\n')
    .filter((l) => l.includes('"event":"decision"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `check` until it holds or `ms` pass; returns its last value. */
export async function waitFor<T>(check: () => T | Promise<T>, ms: number, every = 100): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await check();
  while (!v && Date.now() < deadline) {
    await sleep(every);
    v = await check();
  }
  return v;
}
