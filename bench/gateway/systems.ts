/**
 * The systems under test of the gateway benchmark, each a Haraka 3.3.4 instance (same version, this
 * repository's config/smtp.ini with `nodes` set per system: 0 is one process, N a cluster master with N workers)
 * on a loopback port, started once and kept warm across rounds, forwarding to Postfix's smtp-sink:
 *   relay  (a) plain synchronous relay: rcpt_to.in_host_list + queue/smtp_forward, no cstp plugin, log level warn;
 *   cstp   (b)/(c) the cstp gateway as shipped (config/ of this repository), a store filled per role;
 *   pipe   (d) the pipe filter: bench/gateway/pipe-filter-plugin.ts (openssl cms per message).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, cpSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyStore } from '../../src/store/key-store';
import { freePort, HARAKA_BIN, makeInstanceWithStore, REPO } from '../../test/gateway/harness';

export interface Server {
  name: string;
  port: number;
  dir: string;
  child: ChildProcess;
  log: string;
  /** Processes whose CPU time and memory are the system's: Haraka and its cluster workers. */
  pids(): number[];
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves once the port answers with a 220 greeting. */
async function greets(port: number, ms: number, exited: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let buf = '';
      s.setTimeout(1000, () => (s.destroy(), resolve(false)));
      s.on('data', (d: Buffer) => {
        buf += d.toString();
        if (/^220 [^\n]*\n/m.test(buf)) {
          s.end('QUIT\r\n');
          resolve(true);
        }
      });
      s.on('error', () => resolve(false));
      s.on('close', () => resolve(false));
    });
    if (ok) return;
    if (exited()) throw new Error(`${what} exited before listening`);
    if (Date.now() > deadline) throw new Error(`${what} not listening after ${ms} ms`);
    await sleep(100);
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** smtp-sink on a free loopback port; with `dumpDir` it writes each message there (slow: only for captures). */
export async function startSink(dumpDir?: string): Promise<Server> {
  const port = await freePort();
  const root = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  const dump = dumpDir ? ['-d', `${dumpDir}/%M.`] : [];
  const child = spawn('smtp-sink', [...root, ...dump, '-m', '1000', `127.0.0.1:${port}`, '1024'], { stdio: 'ignore' });
  try {
    await greets(port, 5000, () => child.exitCode !== null, 'smtp-sink');
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return { name: 'smtp-sink', port, dir: dumpDir ?? '', child, log: '', pids: () => [child.pid!], stop: () => stopChild(child) };
}

/** Messages an smtp-sink wrote with -d, without its own X-* and Received lines (LF line ends). */
export function sinkDumps(dir: string): string[] {
  return readdirSync(dir).sort().map((f) => {
    const text = readFileSync(join(dir, f), 'latin1');
    const lines = text.split('\n');
    let i = lines.findIndex((l) => l.startsWith('Received: '));
    for (i++; i < lines.length && /^[ \t]/.test(lines[i]); i++);
    // smtp-sink appends an empty line after the message.
    return lines.slice(i).join('\n').replace(/\n\n$/, '\n');
  });
}

export interface SpawnOptions {
  /** Extra node options for the Haraka process, e.g. --cpu-prof. */
  nodeArgs?: string[];
  env?: Record<string, string>;
  /** smtp.ini nodes (default: as the instance directory has it). */
  nodes?: number;
}

/** A process and its live children (a cluster master's workers). */
function withChildren(pid: number): number[] {
  try {
    return [pid, ...readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)];
  } catch {
    return [pid];
  }
}

async function spawnHaraka(name: string, dir: string, port: number, opts: SpawnOptions): Promise<Server> {
  if (opts.nodes !== undefined) {
    const smtpIni = join(dir, 'config', 'smtp.ini');
    writeFileSync(smtpIni, readFileSync(smtpIni, 'utf8').replace(/^nodes=.*$/m, `nodes=${opts.nodes}`));
  }
  const log = join(dir, 'haraka.log');
  const fd = openSync(log, 'w');
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), HARAKA_BIN, '-c', dir], {
    cwd: dir,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, ...opts.env },
  });
  closeSync(fd);
  try {
    await greets(port, 30_000, () => child.exitCode !== null, `${name} (log ${log}): ${safeRead(log).slice(-2000)}`);
  } catch (err) {
    child.kill('SIGKILL');
    if (!process.env.CSTP_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    name,
    port,
    dir,
    child,
    log,
    pids: () => withChildren(child.pid!),
    stop: async () => {
      await stopChild(child);
      if (!process.env.CSTP_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
    },
  };
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/**
 * An instance directory for the plain Haraka baselines: this repository's smtp.ini (listen replaced) and
 * connection.ini, Haraka's default log format at level warn, the recipient domain in host_list.
 */
function baselineInstance(port: number, plugins: string[], extra: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'cstp-bench-haraka-'));
  mkdirSync(join(dir, 'config'));
  const smtpIni = readFileSync(join(REPO, 'config', 'smtp.ini'), 'utf8').replace(/^listen=.*$/m, `listen=127.0.0.1:${port}`);
  writeFileSync(join(dir, 'config', 'smtp.ini'), smtpIni);
  cpSync(join(REPO, 'config', 'connection.ini'), join(dir, 'config', 'connection.ini'));
  writeFileSync(join(dir, 'config', 'log.ini'), '[main]\nlevel=warn\ntimestamps=false\n');
  writeFileSync(join(dir, 'config', 'plugins'), `${plugins.join('\n')}\n`);
  writeFileSync(join(dir, 'config', 'host_list'), 'intel\n');
  for (const [file, text] of Object.entries(extra)) writeFileSync(join(dir, 'config', file), text);
  return dir;
}

/** (a) Haraka as a plain synchronous relay to the sink. */
export async function startRelay(sinkPort: number, opts: SpawnOptions = {}): Promise<Server> {
  const port = await freePort();
  const dir = baselineInstance(port, ['rcpt_to.in_host_list', 'queue/smtp_forward'], {
    'smtp_forward.ini': `host=127.0.0.1\nport=${sinkPort}\n`,
  });
  return spawnHaraka('relay', dir, port, opts);
}

export interface PipeKeys {
  signerCert: string;
  signerKey: string;
  recipientCert: string;
}

/** (d) Haraka with the openssl pipe filter, forwarding to the sink. */
export async function startPipeFilter(sinkPort: number, keys: PipeKeys, opts: SpawnOptions = {}): Promise<Server> {
  const port = await freePort();
  const dir = baselineInstance(port, ['rcpt_to.in_host_list', 'bench-pipe-filter'], {});
  mkdirSync(join(dir, 'plugins', 'bench-pipe-filter'), { recursive: true });
  writeFileSync(
    join(dir, 'plugins', 'bench-pipe-filter', 'package.json'),
    JSON.stringify({ name: 'bench-pipe-filter', private: true, main: join(REPO, 'dist', 'bench', 'gateway', 'pipe-filter-plugin.js') }),
  );
  return spawnHaraka('pipe', dir, port, {
    ...opts,
    env: {
      ...opts.env,
      BENCH_PIPE_NEXT_HOP: `127.0.0.1:${sinkPort}`,
      BENCH_PIPE_SIGNER_CERT: keys.signerCert,
      BENCH_PIPE_SIGNER_KEY: keys.signerKey,
      BENCH_PIPE_RECIPIENT_CERT: keys.recipientCert,
    },
  });
}

const PASS = 'bench store passphrase';

/** (b)/(c) the cstp gateway as configured in this repository, with `ini` as its cstp.ini and a filled store. */
export async function startCstp(name: string, ini: string, fill: (store: KeyStore) => void, opts: SpawnOptions = {}): Promise<Server> {
  const port = await freePort();
  const dir = await makeInstanceWithStore(port, ini, PASS, fill);
  return spawnHaraka(name, dir, port, opts);
}

/** Starts them all; when one fails, stops those that started (no process outlives the benchmark) and throws. */
export async function startAll<T extends Server[]>(starts: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(starts as Promise<Server>[]);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.stop().catch(() => undefined) : undefined)));
    throw failed.reason;
  }
  return settled.map((r) => (r as PromiseFulfilledResult<Server>).value) as T;
}
