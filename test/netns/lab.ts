/**
 * Network-namespace labs for tests: namespaces, veth pairs, bridges and addresses built with iproute2, commands run
 * inside them, and a teardown that runs on every exit path (normal exit, SIGINT, SIGTERM, uncaught errors).
 *
 * A Lab touches nothing outside the namespaces it creates: veth pairs are created with both ends directly inside
 * their namespaces, and every command runs under `ip netns exec`. Tests must use only documentation addresses
 * (192.0.2.0/24, 198.51.100.0/24, 2001:db8::/32) inside them.
 *
 *   const reason = netnsUnavailable();
 *   describe('...', { skip: reason }, () => {
 *     const lab = new Lab();
 *     after(() => lab.destroy());
 *     ...
 *   });
 */
import { execFileSync, spawn as spawnChild, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Milliseconds before the command is killed (SIGKILL); default 10 000. */
  timeout?: number;
  /** Written to the command's standard input, which is then closed. */
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** Reject when the command exits non-zero (or is killed), with its output in the message. */
  check?: boolean;
}

let cachedReason: string | null = null;

function commandWorks(argv: string[]): boolean {
  try {
    execFileSync(argv[0], argv.slice(1), { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

function probe(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'network namespace tests need root';
  if (!commandWorks(['ip', '-V'])) return 'iproute2 `ip` is not installed';
  if (!commandWorks(['nft', '--version'])) return '`nft` (nftables) is not installed';
  if (!commandWorks(['ss', '-V'])) return '`ss` (iproute2) is not installed';
  const ns = `cprobe-${process.pid.toString(36)}`;
  try {
    execFileSync('ip', ['netns', 'add', ns], { stdio: 'pipe', timeout: 10_000 });
  } catch (err) {
    return `\`ip netns add\` fails: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
  }
  try {
    const rules = [
      'table inet cstp_probe {',
      '  chain p { type filter hook prerouting priority mangle; policy accept;',
      '    meta l4proto tcp socket transparent 1 meta mark set 1 accept',
      '    meta l4proto tcp th dport 25 tproxy ip to :10025 meta mark set 1 accept',
      '  }',
      '}',
      'table bridge cstp_probe {',
      '  chain p { type filter hook prerouting priority -300; policy accept;',
      '    ether type ip tcp dport 25 ether daddr set 02:00:00:00:00:01 meta pkttype set host',
      '  }',
      '}',
    ].join('\n');
    try {
      execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: rules, stdio: 'pipe', timeout: 10_000 });
    } catch (err) {
      return `nftables tproxy/socket/bridge rules are not supported: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
    }
    return undefined;
  } finally {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 10_000 });
    } catch {
      /* best effort */
    }
  }
}

/**
 * Why network-namespace tests cannot run here, or undefined when they can. `commands` are extra programs the caller
 * needs (e.g. ['python3', '--version']: each entry is a command line that must exit 0). With CSTP_REQUIRE_NETNS=1 in
 * the environment, a reason is thrown instead of returned, so CI can never skip these tests silently.
 */
export function netnsUnavailable(commands: string[][] = []): string | undefined {
  if (cachedReason === null) cachedReason = probe() ?? '';
  let reason: string | undefined = cachedReason || undefined;
  if (reason === undefined) {
    for (const argv of commands) {
      if (!commandWorks(argv)) {
        reason = `\`${argv.join(' ')}\` does not run here`;
        break;
      }
    }
  }
  if (reason !== undefined && process.env.CSTP_REQUIRE_NETNS === '1') {
    throw new Error(`CSTP_REQUIRE_NETNS=1 but netns tests cannot run: ${reason}`);
  }
  return reason;
}

// ---- teardown on every exit path -------------------------------------------------------------------------------

const live = new Set<Lab>();
let hooked = false;

function destroyAllSync(): void {
  for (const lab of [...live]) lab.destroySync();
}

function onSignal(signal: NodeJS.Signals): void {
  destroyAllSync();
  process.removeListener(signal, onSignal);
  // Keep the default meaning of the signal when nobody else handles it.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', destroyAllSync);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  // A monitor does not change how the error is handled; it just lets us clean up before the process dies.
  process.on('uncaughtExceptionMonitor', destroyAllSync);
}

let counter = 0;

export class Lab {
  /** Unique among live processes: `c` + pid in base 36 + `_` + a per-process counter. */
  readonly prefix: string;
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private destroying: Promise<void> | undefined;
  private destroyed = false;

  constructor() {
    this.prefix = `c${process.pid.toString(36)}_${counter++}`;
    hook();
    live.add(this);
  }

  /** The full namespace name for a short name given to ns(). */
  name(ns: string): string {
    return `${this.prefix}-${ns}`;
  }

  /** Creates namespace `<prefix>-<name>` with lo up; returns the full name. */
  async ns(name: string): Promise<string> {
    if (this.destroyed) throw new Error('lab destroyed');
    const full = this.name(name);
    // The prefix holds our own pid, so an existing namespace of that name is left over from a dead process.
    if ((await run(['ip', 'netns', 'list'])).stdout.split('\n').some((l) => l.split(' ')[0] === full)) {
      await run(['ip', 'netns', 'del', full]);
    }
    await run(['ip', 'netns', 'add', full], true);
    this.namespaces.push(full);
    await run(['ip', '-n', full, 'link', 'set', 'lo', 'up'], true);
    return full;
  }

  /** A veth pair with `ifA` in nsA and `ifB` in nsB, both up; created inside the namespaces, never in the root one. */
  async veth(nsA: string, ifA: string, nsB: string, ifB: string, macA?: string, macB?: string): Promise<void> {
    const a = this.name(nsA);
    const b = this.name(nsB);
    const argv = ['ip', '-n', a, 'link', 'add', ifA];
    if (macA) argv.push('address', macA);
    argv.push('type', 'veth', 'peer', 'name', ifB);
    if (macB) argv.push('address', macB);
    argv.push('netns', b);
    await run(argv, true);
    await run(['ip', '-n', a, 'link', 'set', ifA, 'up'], true);
    await run(['ip', '-n', b, 'link', 'set', ifB, 'up'], true);
  }

  /** A bridge (STP off) enslaving `ports`, all up. */
  async bridge(ns: string, name: string, ports: string[], mac?: string): Promise<void> {
    const n = this.name(ns);
    const argv = ['ip', '-n', n, 'link', 'add', name];
    if (mac) argv.push('address', mac);
    argv.push('type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    await run(argv, true);
    for (const port of ports) await run(['ip', '-n', n, 'link', 'set', port, 'master', name], true);
    await run(['ip', '-n', n, 'link', 'set', name, 'up'], true);
  }

  /** Adds an address (IPv6 without duplicate address detection, so it is usable at once). */
  async addr(ns: string, ifname: string, cidr: string): Promise<void> {
    const argv = ['ip', '-n', this.name(ns), 'addr', 'add', cidr, 'dev', ifname];
    if (cidr.includes(':')) argv.push('nodad');
    await run(argv, true);
  }

  /** Runs argv inside the namespace and collects its output. */
  exec(ns: string, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return run(['ip', 'netns', 'exec', this.name(ns), ...argv], opts.check ?? false, opts);
  }

  /**
   * Starts argv inside the namespace; the process is killed by destroy(). stdio defaults to pipes: read stdout and
   * stderr (or pass `stdio: ['ignore', 'ignore', 'inherit']`, say), or a chatty child blocks once a pipe is full.
   */
  spawn(ns: string, argv: string[], opts: SpawnOptions = {}): ChildProcess {
    if (this.destroyed) throw new Error('lab destroyed');
    const child = spawnChild('ip', ['netns', 'exec', this.name(ns), ...argv], { stdio: 'pipe', ...opts });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    child.once('error', () => this.children.delete(child));
    return child;
  }

  /** Resolves once something listens on TCP `port` in the namespace; rejects after `ms`. */
  async waitListening(ns: string, port: number, ms = 5_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const r = await this.exec(ns, ['ss', '-ltnH', `sport = :${port}`]);
      if (r.code === 0 && r.stdout.trim() !== '') return;
      if (Date.now() > deadline) throw new Error(`nothing listens on ${port} in ${this.name(ns)} after ${ms} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Kills tracked children (SIGTERM, then SIGKILL after 1 s) and every process left in the namespaces, then deletes them. Idempotent. */
  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      const waits = [...this.children].map(
        (child) =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            const timer = setTimeout(() => child.kill('SIGKILL'), 1_000);
            child.once('exit', () => {
              clearTimeout(timer);
              done();
            });
            child.kill('SIGTERM');
          }),
      );
      await Promise.all(waits);
      this.destroySync();
    })();
    return this.destroying;
  }

  /** The synchronous teardown used on process exit. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const child of this.children) {
      try {
        child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
    this.children.clear();
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5_000 });
        for (const pid of pids.split(/\s+/).filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      } catch {
        /* best effort */
      }
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5_000 });
      } catch {
        /* already gone */
      }
    }
  }
}

function run(argv: string[], check = false, opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((done, fail) => {
    const child = spawnChild(argv[0], argv.slice(1), { stdio: 'pipe', env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeout ?? 10_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      fail(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (check && code !== 0) fail(new Error(`${argv.join(' ')} -> exit ${code}\n${stderr}${stdout}`));
      else done({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}
