/**
 * `cstp doctor`: checks a deployment — cstp.ini, the bridge and its nftables diversion (through
 * `scripts/cstp-net status --json`), the transparent listener, the native addon and capabilities, and
 * the key store and gateway identities — and prints one line per check with what is wrong and how to fix
 * it. Every check runs on its own: a part that is missing at runtime (addon not built, network script
 * absent, store not created) is reported, never crashed on.
 */
import { execFile } from 'node:child_process';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { closeSync, existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { ConfigError, cstpIniPath, instancePath, loadCstpConfig, type CstpConfig } from '../config/cstp-config';
import type { Certificate } from '../pki/certificate';
import { checkEndEntity } from '../pki/path';
import { DEMO_DOMAIN } from '../gateway/identities';
import { KeyStore } from '../store/key-store';
import { EXIT, parse, passphrase, UsageError, type Command, type Values } from './cli-support';

/** The deployment layout of docs/DEPLOYMENT.md. */
export const DEFAULT_INSTANCE = '/etc/cstp';
export const DEFAULT_NET_CONFIG = '/etc/cstp/net.conf';
/** A certificate expiring within this many days is a warning. */
export const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;
/** `cstp doctor` exits 1 when any check fails (0 otherwise, 2 on a usage error). */
const EXIT_FAILED_CHECK = 1;

const USAGE = `cstp doctor [--config DIR] [--net-config FILE] [--store-pass-file F] [--at TIME] [--json]
  Checks this gateway's deployment and prints one line per check, "ok|WARN|FAIL|skip name: detail (fix: ...)":
  config    cstp.ini of the Haraka instance DIR is valid (default: ${DEFAULT_INSTANCE} when it has a config/
            directory, else the current directory);
  net       the bridge, sysctls, policy routing and nftables diversion that scripts/cstp-net sets up from FILE
            (default ${DEFAULT_NET_CONFIG}), and that its PROXY_PORT is [transparent] listen's port;
  socket    something listens on the proxy port, on the wildcard address, and who holds it;
  addon     the native addon for transparent sockets loads; ip-transparent: this process may set
            IP_TRANSPARENT; gateway: the running gateway process has CAP_NET_RAW for source_address=client;
  store     the key store opens with its passphrase (the gateway's source: [store] passphrase_file, else
            the variable passphrase_env; --store-pass-file F overrides);
  identity  every local domain has a gateway identity whose key matches its certificate, which is usable
            and not expired (a warning within ${EXPIRY_WARNING_DAYS} days; --at TIME checks at TIME instead of now).
  The network, socket and addon checks are skipped when [transparent] listen is empty (relay or content
  filter deployments). --json prints {"ok", "instance", "checks": [{"name", "status", "detail", "fix"}]}.
  Exit status: 0 nothing failed (warnings allowed), 1 a check failed, 2 usage error.`;

export type Status = 'ok' | 'warn' | 'fail' | 'skip';

export interface Check {
  name: string;
  status: Status;
  detail: string;
  /** What to do about it; given for every warning and failure. */
  fix?: string;
}

export interface DoctorOptions {
  /** The Haraka instance directory (holds config/cstp.ini). */
  instance: string;
  /** cstp-net's configuration file. */
  netConfig: string;
  storePassFile?: string;
  /** The time certificates are checked at. */
  at: Date;
}

const ok = (name: string, detail: string): Check => ({ name, status: 'ok', detail });
const warn = (name: string, detail: string, fix: string): Check => ({ name, status: 'warn', detail, fix });
const fail = (name: string, detail: string, fix: string): Check => ({ name, status: 'fail', detail, fix });
const skip = (name: string, detail: string): Check => ({ name, status: 'skip', detail });

const firstLine = (e: unknown): string => ((e as Error)?.message ?? String(e)).split('\n')[0];

// ---------------------------------------------------------------------------
// The repository (for scripts/ and the addon), found from this file: src/admin/ or dist/src/admin/.

export function repositoryRoot(from = __dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name === 'cstp') return dir;
    } catch {
      /* not here */
    }
    if (dirname(dir) === dir) return resolve(from, '..', '..', '..');
  }
}

// ---------------------------------------------------------------------------
// config

/** [transparent] as the gateway reads it. */
interface TransparentSettings {
  listen: string;
  sourceAddress: 'client' | 'gateway';
}

function transparentSettings(config: CstpConfig): TransparentSettings {
  return { listen: config.transparent.listen.trim(), sourceAddress: config.transparent.source_address };
}

/** host:port or [v6]:port; the port of a listen setting. */
export function listenPort(listen: string): number | undefined {
  const m = /:(\d{1,5})$/.exec(listen);
  return m ? Number(m[1]) : undefined;
}

function checkConfig(o: DoctorOptions): { checks: Check[]; config?: CstpConfig } {
  const file = cstpIniPath(o.instance);
  if (!existsSync(join(o.instance, 'config'))) {
    return { checks: [fail('config', `${o.instance} is not a Haraka instance directory (it has no config/)`, `give the instance with --config DIR (the directory cstp.service runs "haraka -c" on, ${DEFAULT_INSTANCE} in docs/DEPLOYMENT.md)`)] };
  }
  let config: CstpConfig;
  try {
    config = loadCstpConfig(o.instance);
  } catch (e) {
    const problems = e instanceof ConfigError ? e.problems : [firstLine(e)];
    return { checks: [fail('config', `${file} is invalid: ${problems.join('; ')}`, `correct ${file} (every key is documented in the file shipped in config/cstp.ini); the gateway refuses to start with it (exit status 78)`)] };
  }
  const checks = [ok('config', existsSync(file) ? `${file} is valid` : `${file} does not exist: every setting has its default`)];
  const t = transparentSettings(config);
  if (t.listen && config.policy.local_networks.every((n) => n === '127.0.0.0/8' || n === '::1/128')) {
    checks.push(warn('config', `[policy] local_networks is only loopback (${config.policy.local_networks.join(', ')}): every client crossing the bridge counts as inbound, so nothing is signed or encrypted`, `set [policy] local_networks in ${file} to the networks of your own mail servers`));
  }
  if (config.policy.local_domains.length === 0) {
    checks.push(warn('config', '[policy] local_domains is empty: the gateway signs for no domain of yours (only a demo identity for localhost exists)', `list the mail domains this gateway serves in [policy] local_domains of ${file}`));
  }
  return { checks, config };
}

// ---------------------------------------------------------------------------
// net: scripts/cstp-net status --json

/** KEY=value lines of net.conf (shell syntax without expansion: quotes stripped, # comments). */
export function readNetConf(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/^\s*export\s+/, '').trim();
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m || line.startsWith('#')) continue;
    let value = m[2].trim();
    const quoted = /^(["'])(.*)\1$/.exec(value);
    value = quoted ? quoted[2] : value.replace(/\s+#.*$/, '');
    out.set(m[1], value);
  }
  return out;
}

interface NetStatus {
  ok: boolean;
  mode?: string;
  bridge?: string;
  checks: { name: string; ok: boolean; expected?: unknown; actual?: unknown; required?: boolean }[];
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  error?: string;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Run> {
  return new Promise((done) => {
    execFile(file, args, { env, timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: string | number; killed?: boolean }) | null;
      const code = e ? (typeof e.code === 'number' ? e.code : null) : 0;
      done({ code, stdout: String(stdout), stderr: String(stderr), error: e && code === null ? (e.killed ? `timed out after ${timeoutMs / 1000} s` : firstLine(e)) : undefined });
    });
  });
}

const show = (v: unknown): string => (v === undefined || v === null || v === '' ? '(nothing)' : typeof v === 'string' ? v : JSON.stringify(v));

async function checkNet(o: DoctorOptions, t: TransparentSettings | undefined): Promise<Check[]> {
  if (!t) return [skip('net', 'no valid cstp.ini, so whether the bridge is used is unknown')];
  if (!t.listen) {
    if (existsSync(o.netConfig)) {
      return [warn('net', `${o.netConfig} exists but [transparent] listen is empty, so the bridge is not checked (the gateway still takes diverted connections from cstp.socket when that is active)`, `set [transparent] listen = 0.0.0.0:PROXY_PORT in ${cstpIniPath(o.instance)} for an inline deployment, or remove ${o.netConfig}`)];
    }
    return [skip('net', '[transparent] listen is empty: no inline bridge (relay or content-filter deployment)')];
  }
  const checks: Check[] = [];
  if (!existsSync(o.netConfig)) {
    return [fail('net', `${o.netConfig} does not exist`, `write it (BRIDGE, LAN_IF, WAN_IF, MODE, ...; examples in docs/DEPLOYMENT.md), then systemctl start cstp-net`)];
  }
  const conf = readNetConf(readFileSync(o.netConfig, 'utf8'));
  const proxyPort = Number(conf.get('PROXY_PORT') || 10025);
  const port = listenPort(t.listen);
  if (port !== proxyPort) {
    checks.push(fail('net', `${o.netConfig} diverts to port ${proxyPort} (PROXY_PORT) but [transparent] listen is ${t.listen}`, `use the same port in both: PROXY_PORT in ${o.netConfig}, listen in ${cstpIniPath(o.instance)} and ListenStream= of cstp.socket`));
  }
  const script = join(repositoryRoot(), 'scripts', 'cstp-net');
  if (!existsSync(script)) return [...checks, fail('net', `${script} is missing, so the network cannot be checked`, 'reinstall cstp (the script ships in scripts/)')];
  const r = await run(script, ['status', '--config', o.netConfig, '--json'], process.env, 30_000);
  let status: NetStatus;
  try {
    status = JSON.parse(r.stdout) as NetStatus;
    if (!Array.isArray(status.checks)) throw new Error('no checks');
  } catch {
    const why = r.error ?? (r.stderr.trim().split('\n')[0] || `exit status ${r.code}, no JSON status`);
    return [...checks, fail('net', `${script} status --json failed: ${why}`, `run ${script} status --config ${o.netConfig} to see why`)];
  }
  const where = `${status.mode ?? '?'} mode, bridge ${status.bridge ?? '?'}`;
  // Checks cstp-net marks as not required (the listener) are the socket check's business here.
  const required = status.checks.filter((c) => c.required !== false);
  const failed = required.filter((c) => !c.ok);
  const bridge = required.find((c) => c.name.startsWith('bridge'));
  if (bridge && !bridge.ok && required.every((c) => !c.ok || !/^nft/.test(c.name))) {
    return [...checks, fail('net', `not provisioned (${where}): bridge ${show(bridge.actual)}, no cstp nftables table in place`, 'systemctl start cstp-net (or scripts/cstp-net up), then check again')];
  }
  for (const c of failed) {
    checks.push(fail(`net ${c.name}`, `expected ${show(c.expected)}, found ${show(c.actual)}`, `systemctl reload cstp-net (runs cstp-net up again: idempotent, re-reads ${o.netConfig}); a restart of nftables.service flushes cstp's tables`));
  }
  if (failed.length === 0 && status.ok !== false) checks.push(ok('net', `${required.length} checks pass (${where})`));
  else if (failed.length === 0) checks.push(fail('net', `cstp-net reports a problem without naming a check (${where})`, `run ${script} status --config ${o.netConfig}`));
  return checks;
}

// ---------------------------------------------------------------------------
// socket: who listens on the proxy port

interface Listener {
  address: string;
  port: number;
  inode: string;
}

/** LISTEN sockets from /proc/net/tcp and tcp6 (addresses in host byte order per 32-bit word). */
export function tcpListeners(procNet = '/proc/net'): Listener[] {
  const out: Listener[] = [];
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(join(procNet, file), 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue;
      const [addrHex, portHex] = f[1].split(':');
      out.push({ address: procAddress(addrHex), port: parseInt(portHex, 16), inode: f[9] });
    }
  }
  return out;
}

function procAddress(hex: string): string {
  const words = hex.match(/.{8}/g) ?? [];
  const bytes = Buffer.concat(words.map((w) => {
    const b = Buffer.from(w, 'hex');
    return Buffer.from([b[3], b[2], b[1], b[0]]); // host order is little-endian on every platform cstp runs on
  }));
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.every((b) => b === 0)) return '::';
  const groups = (bytes.toString('hex').match(/.{4}/g) ?? []).map((g) => g.replace(/^0+(?=.)/, ''));
  return groups.join(':');
}

/** The processes holding a socket inode (needs root for other users' processes). */
function socketHolders(inode: string): { pid: number; name: string }[] {
  const target = `socket:[${inode}]`;
  const out: { pid: number; name: string }[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === target) {
          out.push({ pid: Number(pid), name: readFileSync(`/proc/${pid}/comm`, 'utf8').trim() });
          break;
        }
      } catch {
        /* gone */
      }
    }
  }
  return out;
}

/**
 * Whether the listeners on `port` have IP_TRANSPARENT, from `ss --inet-sockopt` (iproute2 >= 5.10 on Linux >= 5.10);
 * undefined when ss cannot tell.
 */
async function transparentOption(port: number): Promise<Map<string, boolean> | undefined> {
  const r = await run('ss', ['-ltnH', '--inet-sockopt', `sport = :${port}`], process.env, 10_000);
  if (r.code !== 0 || !r.stdout.includes('inet-sockopt')) return undefined;
  const out = new Map<string, boolean>();
  let local: string | undefined;
  for (const line of r.stdout.split('\n')) {
    const opts = /inet-sockopt:\s*\(([^)]*)\)/.exec(line);
    if (opts && local !== undefined) out.set(local, opts[1].split(/\s+/).includes('transparent'));
    else if (/^\S/.test(line)) local = line.trim().split(/\s+/)[3]?.replace(/^\[(.*)\]:(\d+)$/, '$1:$2').replace(/^\*:/, '0.0.0.0:');
  }
  return out;
}

async function checkSocket(t: TransparentSettings | undefined): Promise<Check[]> {
  if (!t) return [skip('socket', 'no valid cstp.ini, so the proxy port is unknown')];
  if (!t.listen) return [skip('socket', '[transparent] listen is empty: no transparent listener is expected')];
  const port = listenPort(t.listen);
  if (port === undefined) return [fail('socket', `[transparent] listen = ${t.listen} names no port`, 'write it as 0.0.0.0:10025')];
  const found = tcpListeners().filter((l) => l.port === port);
  if (found.length === 0) {
    return [fail('socket', `nothing listens on port ${port}: diverted SMTP connections are answered with a TCP reset (fail closed; senders retry later)`, 'systemctl start cstp.socket cstp.service; journalctl -u cstp.service shows why the gateway stopped')];
  }
  const wildcard = found.find((l) => l.address === '0.0.0.0' || l.address === '::');
  const holders = found.flatMap((l) => socketHolders(l.inode));
  const by = holders.length ? `, held by ${holders.map((h) => (h.pid === 1 ? 'systemd (cstp.socket)' : `${h.name} pid ${h.pid}`)).join(', ')}` : '';
  if (!wildcard) {
    return [fail('socket', `port ${port} is bound to ${found.map((l) => l.address).join(', ')}${by}: diverted connections keep their original destination address and only reach a listener on 0.0.0.0`, `listen on 0.0.0.0:${port} (ListenStream= of cstp.socket, [transparent] listen)`)];
  }
  const where = `${wildcard.address}:${port}`;
  const transparent = (await transparentOption(port))?.get(where);
  if (transparent === false) {
    return [fail('socket', `${where} is listening${by} but without IP_TRANSPARENT: the kernel drops the diverted SYNs for it`, 'let cstp.socket (Transparent=yes) or the gateway ([transparent] listen, through the native addon) own the port, and stop whatever else holds it')];
  }
  return [ok('socket', `listening on ${where}${by}${transparent ? ', with IP_TRANSPARENT' : ' (whether with IP_TRANSPARENT, ss --inet-sockopt cannot tell here)'}`)];
}

// ---------------------------------------------------------------------------
// addon, IP_TRANSPARENT, the gateway process's capabilities

interface Native {
  transparentSupport(): { ok: true } | { ok: false; reason: string };
  listenTransparent(host: string, port: number, backlog?: number): number;
}

function loadNative(): Native | string {
  try {
    return require('../transparent/native') as Native;
  } catch (e) {
    return `this cstp has no transparent-socket support (${firstLine(e)})`;
  }
}

const CAP_NET_ADMIN = 12;
const CAP_NET_RAW = 13;

/** Effective capabilities of a process from /proc/PID/status. */
function effectiveCaps(pid: number | 'self'): bigint | undefined {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? BigInt(`0x${m[1]}`) : undefined;
  } catch {
    return undefined;
  }
}

const hasCap = (caps: bigint, cap: number): boolean => (caps & (1n << BigInt(cap))) !== 0n;

/** Processes running `haraka -c DIR` for this instance. */
function gatewayProcesses(instance: string): number[] {
  let want: string;
  try {
    want = realpathSync(instance);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const at = argv.indexOf('-c');
      // node .../haraka/bin/haraka -c DIR (not wrappers such as timeout or setpriv naming it in their arguments)
      if (at < 0 || !/(^|\/)node(js)?[\d.]*$/.test(argv[0]) || !/(^|\/)haraka(\.js)?$/.test(argv[1] ?? '')) continue;
      const dir = argv[at + 1];
      const abs = isAbsolute(dir) ? dir : resolve(readlinkSync(`/proc/${pid}/cwd`), dir);
      if (realpathSync(abs) === want) out.push(Number(pid));
    } catch {
      /* gone or not ours */
    }
  }
  return out;
}

function checkTransparent(o: DoctorOptions, t: TransparentSettings | undefined): Check[] {
  if (!t) return [skip('addon', 'no valid cstp.ini, so whether transparent sockets are used is unknown')];
  if (!t.listen) return [skip('addon', '[transparent] listen is empty: transparent sockets are not used')];
  const checks: Check[] = [];
  const native = loadNative();
  const rebuild = `install g++, make and python3, then run "npm ci" (or "npx node-gyp rebuild") in ${repositoryRoot()}`;
  if (typeof native === 'string') {
    checks.push(fail('addon', native, 'install a cstp release with src/transparent and the native addon'));
  } else {
    const support = native.transparentSupport();
    if (!support.ok) {
      checks.push(fail('addon', support.reason, rebuild));
    } else {
      checks.push(ok('addon', 'the native addon for transparent sockets loads'));
      checks.push(tryIpTransparent(native));
    }
  }
  checks.push(checkGatewayCaps(o, t));
  return checks;
}

function tryIpTransparent(native: Native): Check {
  try {
    closeSync(native.listenTransparent('127.0.0.1', 0));
    return ok('ip-transparent', `this process (uid ${process.getuid?.()}) can set IP_TRANSPARENT`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EPERM' || code === 'EACCES') {
      return warn('ip-transparent', `this process (uid ${process.getuid?.()}) may not set IP_TRANSPARENT: it needs CAP_NET_RAW (or CAP_NET_ADMIN)`, 'run cstp doctor as root; the gateway gets CAP_NET_RAW from AmbientCapabilities= in cstp.service');
    }
    return fail('ip-transparent', `a transparent socket cannot be made: ${firstLine(e)}`, 'check the kernel (IP_TRANSPARENT needs Linux) and the addon build');
  }
}

function checkGatewayCaps(o: DoctorOptions, t: TransparentSettings): Check {
  const pids = gatewayProcesses(o.instance);
  if (pids.length === 0) {
    return warn('gateway', `no gateway process ("haraka -c ${o.instance}") is running`, 'systemctl start cstp.service (with cstp.socket active, connections wait in the listen queue until it runs)');
  }
  // Every process: in a cluster (smtp.ini nodes) the workers make the connections to destination servers.
  for (const pid of pids) {
    const caps = effectiveCaps(pid);
    if (caps === undefined) return warn('gateway', `gateway pid ${pid}: its capabilities cannot be read`, 'run cstp doctor as root');
    if (t.sourceAddress === 'client' && !hasCap(caps, CAP_NET_RAW) && !hasCap(caps, CAP_NET_ADMIN)) return lacksNetRaw(pid);
  }
  return ok('gateway', `gateway pid ${pids.join(', ')} runs${t.sourceAddress === 'client' ? ' with CAP_NET_RAW: outbound connections can carry the client\'s address' : ''}`);
}

function lacksNetRaw(pid: number): Check {
  return warn('gateway', `gateway pid ${pid} lacks CAP_NET_RAW: connections to destination servers carry the box's own address, not the client's (source_address = client)`, 'start it through cstp.service (AmbientCapabilities=CAP_NET_RAW), or set [transparent] source_address = gateway to make this the intent');
}

// ---------------------------------------------------------------------------
// store and identities

interface PassphraseSource {
  pass?: string;
  from: string;
  problem?: Check;
}

function storePassphrase(o: DoctorOptions, config: CstpConfig): PassphraseSource {
  if (o.storePassFile) {
    const pass = passphrase({ 'pass-file': o.storePassFile });
    return pass ? { pass, from: o.storePassFile } : { from: o.storePassFile, problem: fail('store', `store passphrase file ${o.storePassFile} is empty`, 'give the file the passphrase the store was created with') };
  }
  const s = config.store;
  const file = s.passphrase_file ? instancePath(o.instance, s.passphrase_file) : '';
  if (file && existsSync(file)) {
    let pass: string;
    try {
      pass = readFileSync(file, 'utf8').trim();
    } catch (e) {
      return { from: file, problem: fail('store', `cannot read the store passphrase file ${file}: ${(e as NodeJS.ErrnoException).code ?? firstLine(e)}`, 'run cstp doctor as root (the file is readable by the gateway\'s user only)') };
    }
    return pass ? { pass, from: file } : { from: file, problem: fail('store', `store passphrase file ${file} is empty`, 'put the passphrase the store was created with into it') };
  }
  const env = process.env[s.passphrase_env];
  if (env) return { pass: env, from: `$${s.passphrase_env}` };
  const credential = file.startsWith('/run/credentials/')
    ? ' (a systemd credential: it exists only while cstp.service runs; give its source file with --store-pass-file, e.g. /etc/cstp/store.passphrase)'
    : '';
  return { from: file, problem: fail('store', `no store passphrase: ${file ? `${file} does not exist and ` : ''}$${s.passphrase_env} is not set${credential}`, `give the passphrase the store was created with: --store-pass-file F or ${s.passphrase_env}`) };
}

function checkStoreAndIdentities(o: DoctorOptions, config: CstpConfig | undefined): Promise<Check[]> | Check[] {
  if (!config) return [skip('store', 'no valid cstp.ini, so the store and its passphrase are unknown')];
  const path = instancePath(o.instance, config.store.path);
  if (!existsSync(join(path, 'store.mdb'))) {
    return [fail('store', `no key store at ${path}`, 'start the gateway once (its first start creates the store and a gateway identity for every local domain), or run cstp init --domain D')];
  }
  const source = storePassphrase(o, config);
  if (source.problem) return [source.problem];
  const checks: Check[] = [];
  if (source.from.startsWith('/') && existsSync(source.from)) {
    const mode = statSync(source.from).mode & 0o777;
    if (mode & 0o077) checks.push(warn('store', `passphrase file ${source.from} is readable by others (mode ${mode.toString(8).padStart(4, '0')})`, `chmod 600 ${source.from}`));
  }
  let store: KeyStore;
  try {
    store = KeyStore.open({ path, passphrase: source.pass!, readOnly: true });
  } catch (e) {
    const msg = firstLine(e);
    if (/wrong passphrase/.test(msg)) {
      return [...checks, fail('store', `${msg}: the passphrase from ${source.from} is not the one the store was created with, so no private key can be decrypted`, `put the store's own passphrase into ${source.from} (the keys cannot be recovered without it; otherwise move the store away and let the gateway create new identities)`)];
    }
    return [...checks, fail('store', `the key store does not open: ${msg}`, `check ${path} (owner, mode 0700, free disk space)`)];
  }
  return (async () => {
    try {
      checks.push(ok('store', `${store.path} opens with the passphrase from ${source.from}`));
      checks.push(...identityChecks(store, config, o.at));
      return checks;
    } finally {
      await store.close();
    }
  })();
}

function identityChecks(store: KeyStore, config: CstpConfig, at: Date): Check[] {
  const configured = config.policy.local_domains.filter((d) => !d.startsWith('*.'));
  const domains = config.policy.local_domains.length > 0 ? configured : [DEMO_DOMAIN];
  if (domains.length === 0) return [skip('identity', 'every local domain is a wildcard (*.domain): no single domain to hold an identity for')];
  return domains.map((domain) => identityCheck(store, domain, at));
}

function identityCheck(store: KeyStore, domain: string, at: Date): Check {
  const name = `identity ${domain}`;
  let creds;
  try {
    creds = store.gatewayIdentity(domain);
  } catch (e) {
    return fail(name, `the gateway key for ${domain} cannot be read: ${firstLine(e)}`, `replace it: cstp key import --role gateway --domain ${domain} ..., or cstp init --domain ${domain} --force`);
  }
  if (!creds) {
    return fail(name, `no gateway identity for ${domain}: mail from ${domain} cannot be signed and peers have no certificate to encrypt to`, `restart cstp.service (it creates a missing identity at startup), or cstp init --domain ${domain}, or cstp key import --role gateway --domain ${domain} --key K --cert C`);
  }
  const { key, cert } = creds;
  const renew = `renew it: cstp init --domain ${domain} --force (a new self-signed certificate; send it to your peers) or cstp key import --role gateway --domain ${domain} with a CA-issued one`;
  if (!sameKey(key, cert.publicKey)) {
    return fail(name, `the private key held for ${domain} does not match its certificate ${cert.fingerprint}`, `import the matching pair: cstp key import --role gateway --domain ${domain} --key K --cert C`);
  }
  const what = `certificate ${cert.fingerprint.slice(0, 16)}…`;
  if (at < cert.notBefore) return fail(name, `${what} is not valid before ${day(cert.notBefore)}`, `check the clock, or ${renew}`);
  if (at > cert.notAfter) return fail(name, `${what} expired on ${day(cert.notAfter)}`, renew);
  const unusable = usageProblems(cert, at);
  if (unusable) return fail(name, `${what}: ${unusable}`, renew);
  const daysLeft = Math.floor((cert.notAfter.getTime() - at.getTime()) / DAY_MS);
  if (daysLeft < EXPIRY_WARNING_DAYS) return warn(name, `${what} expires on ${day(cert.notAfter)} (in ${daysLeft} days)`, renew);
  return ok(name, `${what} valid until ${day(cert.notAfter)}, key matches`);
}

function usageProblems(cert: Certificate, at: Date): string | undefined {
  const problems = (['sign', 'encrypt'] as const).flatMap((purpose) => {
    const r = checkEndEntity(cert, { purpose, at });
    return r.ok ? [] : [`cannot ${purpose}: ${r.reason}`];
  });
  return problems.length ? problems.join('; ') : undefined;
}

/** Compares public keys via JWK (so EC point encodings compare equal), SPKI for types without one. */
function sameKey(privateKey: KeyObject, publicKey: KeyObject): boolean {
  const id = (k: KeyObject): string => {
    try {
      const { kty, crv, n, e, x, y } = k.export({ format: 'jwk' });
      return JSON.stringify([kty, crv, n, e, x, y]);
    } catch {
      return k.export({ type: 'spki', format: 'der' }).toString('hex');
    }
  };
  return id(createPublicKey(privateKey)) === id(publicKey);
}

const day = (d: Date): string => d.toISOString().slice(0, 10);

// ---------------------------------------------------------------------------

/** Every check, in order; never throws for what it finds. */
export async function runDoctor(o: DoctorOptions): Promise<Check[]> {
  const { checks, config } = checkConfig(o);
  const t = config ? transparentSettings(config) : undefined;
  const guarded = async (name: string, f: () => Check[] | Promise<Check[]>): Promise<Check[]> => {
    try {
      return await f();
    } catch (e) {
      return [fail(name, `the check itself failed: ${firstLine(e)}`, 'report this; CSTP_DEBUG=1 cstp doctor shows more')];
    }
  };
  checks.push(...(await guarded('net', () => checkNet(o, t))));
  checks.push(...(await guarded('socket', () => checkSocket(t))));
  checks.push(...(await guarded('addon', () => checkTransparent(o, t))));
  checks.push(...(await guarded('store', () => checkStoreAndIdentities(o, config))));
  return checks;
}

const LABEL: Record<Status, string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skip: 'skip' };

export function formatCheck(c: Check): string {
  return `${LABEL[c.status]} ${c.name}: ${c.detail}${c.fix ? ` (fix: ${c.fix})` : ''}`;
}

/** The deployed instance when there is one (also when run from /opt/cstp, itself an instance), else the current directory. */
function defaultInstance(): string {
  return existsSync(join(DEFAULT_INSTANCE, 'config')) ? DEFAULT_INSTANCE : '.';
}

function timeArg(value: unknown): Date {
  if (value === undefined) return new Date();
  const at = new Date(String(value));
  if (Number.isNaN(at.getTime())) throw new UsageError(`--at ${String(value)}: not an ISO 8601 time`);
  return at;
}

async function doctor(args: string[]): Promise<number> {
  const v: Values = parse(args, {
    config: { type: 'string' }, 'net-config': { type: 'string' }, 'store-pass-file': { type: 'string' }, at: { type: 'string' }, json: { type: 'boolean' },
  });
  const instance = resolve((v.config as string | undefined) ?? defaultInstance());
  const checks = await runDoctor({
    instance,
    netConfig: resolve((v['net-config'] as string | undefined) ?? DEFAULT_NET_CONFIG),
    storePassFile: v['store-pass-file'] as string | undefined,
    at: timeArg(v.at),
  });
  const failed = checks.some((c) => c.status === 'fail');
  if (v.json) process.stdout.write(`${JSON.stringify({ ok: !failed, instance, checks }, null, 2)}\n`);
  else process.stdout.write(`${checks.map(formatCheck).join('\n')}\n`);
  return failed ? EXIT_FAILED_CHECK : EXIT.ok;
}

/** `cstp doctor` is a group of one command, keyed '' (see the dispatcher). */
export const doctorCommands: Record<string, Command> = {
  '': { usage: USAGE, run: doctor },
};
