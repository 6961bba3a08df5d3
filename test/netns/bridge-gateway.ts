/**
 * A cstp box inside a Lab namespace: the bridge provisioned by scripts/cstp-net (IP or transparent mode) and the
 * Haraka gateway listening on the transparent port, run as root with `ip netns exec`. The instance directory is
 * built like test/gateway/harness.ts's makeInstance (a copy of config/, links to plugins/ and dist/) with its own
 * cstp.ini and a store filled by the caller.
 */
import type { ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyStore } from '../../src/store/key-store';
import { HARAKA_BIN, REPO } from '../gateway/harness';
import type { ExecResult, Lab } from './lab';
import { makeTemp, removeTemp } from './paper/temp';

export const CSTP_NET = join(REPO, 'scripts', 'cstp-net');
/** The port the bridge rules divert SMTP to, and where the gateway's transparent listener is. */
export const PROXY_PORT = 10025;
const PASS = 'netns paper passphrase';

export type BridgeMode = 'ip' | 'transparent';

export interface BoxOptions {
  /** cstp.ini without [store] and [transparent], which are added. */
  ini: string;
  /** Fills the instance's store before the first start. */
  fill: (store: KeyStore) => void;
  /** Bridge name and its ports inside the box namespace. */
  bridge?: string;
  lanIf?: string;
  wanIf?: string;
}

export interface Decision {
  direction?: string;
  recipients?: string[];
  client?: { ip?: string };
  destination?: { host?: string; port?: number };
  deliveries: { action: string; route?: string; recipients?: string[]; certificates?: string[]; reply?: { code: number } }[];
  [key: string]: unknown;
}

export class BridgeBox {
  readonly dir: string;
  readonly bridge: string;
  readonly lanIf: string;
  readonly wanIf: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private out = '';
  private err = '';
  /** stdout of earlier runs (a restart keeps the history for decision lines). */
  private history = '';
  mode: BridgeMode | undefined;
  private pendingFill: ((store: KeyStore) => void) | undefined;

  /** `ns` is the Lab's short namespace name. */
  constructor(private readonly lab: Lab, readonly ns: string, opts: BoxOptions) {
    this.bridge = opts.bridge ?? 'br0';
    this.lanIf = opts.lanIf ?? 'lan0';
    this.wanIf = opts.wanIf ?? 'wan0';
    this.pendingFill = opts.fill;
    const dir = makeTemp(`cstp-box-${ns}-`);
    this.dir = dir;
    cpSync(join(REPO, 'config'), join(dir, 'config'), { recursive: true, verbatimSymlinks: true });
    symlinkSync(join(REPO, 'plugins'), join(dir, 'plugins'));
    symlinkSync(join(REPO, 'dist'), join(dir, 'dist'));
    // The plain listener stays on the namespace's own loopback: mail reaches the gateway only by diversion.
    const smtpIni = join(dir, 'config', 'smtp.ini');
    writeFileSync(smtpIni, readFileSync(smtpIni, 'utf8').replace(/^listen=.*$/m, 'listen=127.0.0.1:2525'));
    writeFileSync(
      join(dir, 'config', 'cstp.ini'),
      `${opts.ini}\n[store]\npath = var/store\npassphrase_file = var/store.passphrase\n` +
        `[transparent]\nlisten = 0.0.0.0:${PROXY_PORT}\n`,
    );
    mkdirSync(join(dir, 'var'), { mode: 0o700 });
    writeFileSync(join(dir, 'var', 'store.passphrase'), `${PASS}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'net.conf'), '# all settings are given as flags\n');
  }

  /** Fills the store once, before the first start (LMDB is then opened by this process only). */
  private async fillStore(): Promise<void> {
    const fill = this.pendingFill;
    if (!fill) return;
    this.pendingFill = undefined;
    const store = KeyStore.open({ path: join(this.dir, 'var', 'store'), passphrase: PASS });
    try {
      fill(store);
    } finally {
      await store.close();
    }
  }

  /**
   * cstp-net with this box's own state directory and an empty settings file: nothing outside the test's files and
   * namespaces is read or written (not /run/cstp-net, not /etc/cstp/net.conf).
   */
  private net(args: string[]): Promise<ExecResult> {
    const env = { ...process.env, CSTP_NET_STATE_DIR: join(this.dir, 'net-state') };
    return this.lab.exec(this.ns, [CSTP_NET, args[0], '--config', join(this.dir, 'net.conf'), ...args.slice(1)], { timeout: 30_000, env });
  }

  private async netChecked(args: string[]): Promise<string> {
    const r = await this.net(args);
    if (r.code !== 0) throw new Error(`cstp-net ${args.join(' ')} in ${this.ns} -> exit ${r.code}\n${r.stderr}${r.stdout}`);
    return r.stdout + r.stderr;
  }

  private ifArgs(): string[] {
    return ['--bridge', this.bridge, '--lan-if', this.lanIf, '--wan-if', this.wanIf];
  }

  /** Provisions the bridge and its rules: `address` (CIDR) only in IP mode. */
  async up(mode: BridgeMode, address?: string): Promise<string> {
    const args = ['up', ...this.ifArgs(), '--mode', mode, '--proxy-port', String(PROXY_PORT)];
    if (address) args.push('--address', address);
    const out = await this.netChecked(args);
    this.mode = mode;
    return out;
  }

  async down(): Promise<string> {
    const out = await this.netChecked(['down', ...this.ifArgs()]);
    this.mode = undefined;
    return out;
  }

  async status(): Promise<ExecResult> {
    return this.net(['status', ...this.ifArgs()]);
  }

  /** Starts the gateway; resolves once the transparent listener is up. */
  async start(ms = 30_000): Promise<void> {
    if (this.child) throw new Error(`gateway in ${this.ns} already running`);
    await this.fillStore();
    this.history += this.out;
    this.out = '';
    this.err = '';
    const child = this.lab.spawn(this.ns, [process.execPath, HARAKA_BIN, '-c', this.dir], { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (c: Buffer) => (this.out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (this.err += c.toString()));
    let gone = false;
    this.exited = new Promise((done) =>
      child.once('exit', () => {
        gone = true;
        done();
      }),
    );
    const deadline = Date.now() + ms;
    for (;;) {
      if (gone) throw new Error(`gateway in ${this.ns} exited before listening:\n${this.err}\n${this.out}`);
      const r = await this.lab.exec(this.ns, ['ss', '-ltnH', `sport = :${PROXY_PORT}`]);
      if (r.stdout.trim() !== '' && this.out.includes('Listening on')) return;
      if (Date.now() > deadline) throw new Error(`gateway in ${this.ns} not listening on ${PROXY_PORT} after ${ms} ms:\n${this.err}\n${this.out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stops the gateway as an operator would (SIGINT; SIGKILL after 5 s). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await this.exited;
      clearTimeout(timer);
    }
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  stdout(): string {
    return this.history + this.out;
  }

  stderr(): string {
    return this.err;
  }

  /** Every decision line logged so far (all runs). */
  decisions(): Decision[] {
    return this.stdout()
      .split('\n')
      .filter((l) => l.startsWith('{') && l.includes('"event":"decision"'))
      .map((l) => JSON.parse(l) as Decision);
  }

  /** Waits for at least `count` decision lines. */
  async waitDecisions(count: number, ms = 20_000): Promise<Decision[]> {
    const deadline = Date.now() + ms;
    for (;;) {
      const got = this.decisions();
      if (got.length >= count) return got;
      if (Date.now() > deadline) throw new Error(`${this.ns}: ${got.length} of ${count} decision lines after ${ms} ms:\n${this.stdout()}\n${this.err}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stops the gateway and removes the instance directory. The Lab removes the namespace and its rules. */
  async destroy(): Promise<void> {
    await this.stop();
    removeTemp(this.dir);
  }
}
