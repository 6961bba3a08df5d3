/**
 * `cstp doctor` against temporary Haraka instance directories (test/gateway/harness.ts makeInstance): the
 * configuration and key checks here, the network checks inside a network namespace when root and nftables allow.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { gatewayIdentity } from '../../src/pki/issue';
import { KeyStore } from '../../src/store/key-store';
import { makeInstance, removeInstance } from '../gateway/harness';
import { Lab, netnsUnavailable } from '../netns/lab';

const REPO = resolve(__dirname, '../../..');
const BIN = join(REPO, 'bin', 'cstp');
const CSTP_NET = join(REPO, 'scripts', 'cstp-net');
const PASS = 'doctor test passphrase';

interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail' | 'skip';
  detail: string;
  fix?: string;
}

interface Doctor {
  code: number | null;
  stdout: string;
  stderr: string;
  checks: Check[];
}

const instances: string[] = [];
after(() => instances.forEach(removeInstance));

/** An instance with `ini` as cstp.ini and a store (passphrase PASS) filled by `fill`. */
async function instance(ini: string, fill?: (store: KeyStore) => void): Promise<string> {
  const dir = makeInstance(2525, ini);
  instances.push(dir);
  mkdirSync(join(dir, 'var'), { mode: 0o700 });
  writeFileSync(join(dir, 'var', 'store.passphrase'), `${PASS}\n`, { mode: 0o600 });
  if (fill) {
    const store = KeyStore.open({ path: join(dir, 'var', 'store'), passphrase: PASS });
    try {
      fill(store);
    } finally {
      await store.close();
    }
  }
  return dir;
}

function identity(store: KeyStore, domain: string, days = 730): void {
  const { key, cert } = gatewayIdentity(domain, { days });
  store.putGatewayIdentity(domain, { key, cert, chain: [] });
}

/**
 * Runs `cstp doctor --json` and, unless `prefix` runs it inside a namespace (where only the JSON is looked at, to
 * keep those tests short), the text form too; both must agree on the exit code.
 */
function doctor(args: string[], env: Record<string, string> = {}, prefix: string[] = []): Doctor {
  const base = { ...process.env, ...env };
  delete base.CSTP_STORE_PASSPHRASE;
  Object.assign(base, env);
  const netConfig = args.includes('--net-config') ? [] : ['--net-config', join(tmpdir(), 'cstp-doctor-no-net.conf')];
  const argv = [...prefix, process.execPath, BIN, 'doctor', ...netConfig, ...args];
  const json = spawnSync(argv[0], [...argv.slice(1), '--json'], { env: base, encoding: 'utf8', timeout: 60_000 });
  const text = prefix.length === 0 ? spawnSync(argv[0], argv.slice(1), { env: base, encoding: 'utf8', timeout: 60_000 }) : json;
  assert.equal(json.status, text.status, `--json and text exit differently:\n${json.stderr}\n${text.stderr}`);
  if (text.status === 2) return { code: 2, stdout: text.stdout, stderr: text.stderr, checks: [] };
  const parsed = JSON.parse(json.stdout) as { ok: boolean; checks: Check[] };
  assert.equal(parsed.ok, json.status === 0);
  return { code: text.status, stdout: text.stdout, stderr: text.stderr, checks: parsed.checks };
}

const named = (d: Doctor, name: string): Check[] => d.checks.filter((c) => c.name === name);

function one(d: Doctor, name: string): Check {
  const found = named(d, name);
  assert.equal(found.length, 1, `one "${name}" check expected in:\n${d.stdout}`);
  return found[0];
}

const GOOD_INI = '[policy]\nlocal_domains = amd.example\n';

test('a good store: the store opens, the identity is ok, network checks are skipped without [transparent] listen; exit 0', async () => {
  const dir = await instance(GOOD_INI, (s) => identity(s, 'amd.example'));
  const d = doctor(['--config', dir]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  assert.equal(one(d, 'config').status, 'ok');
  assert.equal(one(d, 'store').status, 'ok');
  assert.match(one(d, 'store').detail, /opens with the passphrase from .*store\.passphrase/);
  const id = one(d, 'identity amd.example');
  assert.equal(id.status, 'ok');
  assert.match(id.detail, /valid until \d{4}-\d\d-\d\d, key matches/);
  for (const name of ['net', 'socket', 'addon']) assert.equal(one(d, name).status, 'skip');
  assert.match(d.stdout, /^ok store: /m);
  assert.match(d.stdout, /^ok identity amd\.example: /m);
  assert.match(d.stdout, /^skip net: \[transparent\] listen is empty/m);
  assert.equal(d.checks.filter((c) => c.status === 'fail' || c.status === 'warn').length, 0, d.stdout);
});

test('a wrong passphrase fails with a clear message and exit 1', async () => {
  const dir = await instance(GOOD_INI, (s) => identity(s, 'amd.example'));
  const file = join(dir, 'var', 'store.passphrase');
  writeFileSync(file, 'not the passphrase\n');
  const d = doctor(['--config', dir]);
  assert.equal(d.code, 1);
  const store = one(d, 'store');
  assert.equal(store.status, 'fail');
  assert.match(store.detail, /^wrong passphrase for key store .*var\/store: the passphrase from .*store\.passphrase is not the one the store was created with/);
  assert.match(d.stdout, /^FAIL store: wrong passphrase for key store .* \(fix: put the store's own passphrase into /m);
  assert.equal(named(d, 'identity amd.example').length, 0, 'no identity checks without an open store');

  // --store-pass-file overrides the configured file; the passphrase variable is used when no file exists.
  const right = join(dir, 'right.pass');
  writeFileSync(right, `${PASS}\n`, { mode: 0o600 });
  assert.equal(doctor(['--config', dir, '--store-pass-file', right]).code, 0);
  rmSync(file);
  assert.equal(doctor(['--config', dir], { CSTP_STORE_PASSPHRASE: PASS }).code, 0);
  const none = doctor(['--config', dir]);
  assert.equal(none.code, 1);
  assert.match(one(none, 'store').detail, /no store passphrase: .*store\.passphrase does not exist and \$CSTP_STORE_PASSPHRASE is not set/);
});

test('a passphrase file readable by others is a warning', async () => {
  const dir = await instance(GOOD_INI, (s) => identity(s, 'amd.example'));
  chmodSync(join(dir, 'var', 'store.passphrase'), 0o644);
  const d = doctor(['--config', dir]);
  assert.equal(d.code, 0);
  const warned = named(d, 'store').find((c) => c.status === 'warn');
  assert.match(warned?.detail ?? '', /readable by others \(mode 0644\)/);
  assert.match(warned?.fix ?? '', /^chmod 600 /);
});

test('a local domain without a gateway identity fails, naming the domain', async () => {
  const dir = await instance('[policy]\nlocal_domains = amd.example, intel.example, *.sub.example\n', (s) => identity(s, 'amd.example'));
  const d = doctor(['--config', dir]);
  assert.equal(d.code, 1);
  assert.equal(one(d, 'identity amd.example').status, 'ok');
  const missing = one(d, 'identity intel.example');
  assert.equal(missing.status, 'fail');
  assert.match(missing.detail, /^no gateway identity for intel\.example/);
  assert.match(missing.fix ?? '', /cstp init --domain intel\.example/);
  assert.equal(named(d, 'identity *.sub.example').length, 0, 'wildcards hold no identity');
  assert.match(d.stdout, /^FAIL identity intel\.example: no gateway identity for intel\.example/m);
});

test('a certificate expiring within 30 days warns (exit 0); expired at --at fails', async () => {
  const dir = await instance(GOOD_INI, (s) => identity(s, 'amd.example', 10));
  const d = doctor(['--config', dir]);
  assert.equal(d.code, 0, d.stdout);
  const id = one(d, 'identity amd.example');
  assert.equal(id.status, 'warn');
  assert.match(id.detail, /expires on \d{4}-\d\d-\d\d \(in (9|10) days\)/);
  assert.match(id.fix ?? '', /cstp init --domain amd\.example --force/);
  assert.match(d.stdout, /^WARN identity amd\.example: certificate [0-9a-f]{16}… expires on /m);

  const later = new Date(Date.now() + 20 * 86_400_000).toISOString();
  const expired = doctor(['--config', dir, '--at', later]);
  assert.equal(expired.code, 1);
  assert.match(one(expired, 'identity amd.example').detail, /expired on \d{4}-\d\d-\d\d/);
  assert.equal(doctor(['--config', dir, '--at', 'yesterday']).code, 2, '--at must be a time');
});

test('a private key that does not match its certificate fails', async () => {
  const dir = await instance(GOOD_INI, (s) => {
    const a = gatewayIdentity('amd.example');
    const b = gatewayIdentity('amd.example');
    s.putGatewayIdentity('amd.example', { key: a.key, cert: b.cert, chain: [] });
  });
  const d = doctor(['--config', dir]);
  assert.equal(d.code, 1);
  assert.match(one(d, 'identity amd.example').detail, /^the private key held for amd\.example does not match its certificate [0-9a-f]{64}/);
});

test('an invalid cstp.ini fails naming the key; the checks that need it are skipped', async () => {
  const dir = await instance('[policy]\nmixed_recipients = liberl\n');
  const d = doctor(['--config', dir]);
  assert.equal(d.code, 1);
  const config = one(d, 'config');
  assert.equal(config.status, 'fail');
  assert.match(config.detail, /cstp\.ini is invalid: .*\[policy\] mixed_recipients: must be one of restrictive, liberal \(got "liberl"\)/);
  for (const name of ['net', 'socket', 'addon', 'store']) assert.equal(one(d, name).status, 'skip');
  assert.match(d.stdout, /^FAIL config: /m);

  const noInstance = doctor(['--config', join(dir, 'nowhere')]);
  assert.equal(noInstance.code, 1);
  assert.match(one(noInstance, 'config').detail, /is not a Haraka instance directory/);
});

test('no store yet: says the first start creates it', async () => {
  const dir = await instance(GOOD_INI);
  const d = doctor(['--config', dir]);
  assert.equal(d.code, 1);
  assert.match(one(d, 'store').detail, /^no key store at .*var\/store$/);
  assert.match(one(d, 'store').fix ?? '', /first start creates the store/);
});

test('usage: --help and unknown options', () => {
  const help = spawnSync(process.execPath, [BIN, 'doctor', '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: cstp doctor \[--config DIR\]/);
  const bad = spawnSync(process.execPath, [BIN, 'doctor', '--bogus'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^cstp: Unknown option '--bogus'/);
});

// ---------------------------------------------------------------------------
// The network checks, for real: a bridge provisioned by scripts/cstp-net inside a namespace.

const netReason = netnsUnavailable() ?? (existsSync(CSTP_NET) ? undefined : 'scripts/cstp-net is not there');

describe('network checks inside a namespace', { skip: netReason }, () => {
  const lab = new Lab();
  after(() => lab.destroy());

  test('not provisioned, then provisioned and listening (ok), then a table removed (FAIL naming it)', async () => {
    await lab.ns('box');
    await lab.ns('peer');
    await lab.veth('box', 'lan0', 'peer', 'l0');
    await lab.veth('box', 'wan0', 'peer', 'w0');
    const ini = '[policy]\nlocal_domains = amd.example\nlocal_networks = 192.0.2.0/25\n[transparent]\nlisten = 0.0.0.0:10025\n';
    const dir = await instance(ini, (s) => identity(s, 'amd.example'));
    const netConf = join(dir, 'net.conf');
    writeFileSync(netConf, 'BRIDGE=br0\nLAN_IF=lan0\nWAN_IF=wan0\nMODE=transparent\nPROXY_PORT=10025\n');
    const inBox = ['ip', 'netns', 'exec', lab.name('box')];
    const args = ['--config', dir, '--net-config', netConf];

    const before = doctor(args, {}, inBox);
    assert.equal(before.code, 1);
    assert.match(one(before, 'net').detail, /^not provisioned \(transparent mode, bridge br0\)/);
    assert.match(one(before, 'net').fix ?? '', /systemctl start cstp-net/);
    assert.match(one(before, 'socket').detail, /^nothing listens on port 10025: diverted SMTP connections are answered with a TCP reset/);

    // As cstp-net.service runs it: root limited to its CapabilityBoundingSet.
    const bounding = unitValue(readUnit('cstp-net.service'), 'Service', 'CapabilityBoundingSet')!.split(/\s+/);
    const setpriv = ['setpriv', `--bounding-set=-all,${bounding.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',')}`, '--inh-caps=-all'];
    await lab.exec('box', [...setpriv, CSTP_NET, 'up', '--config', netConf], { check: true, timeout: 30_000 });
    // A listener without IP_TRANSPARENT would never see a diverted SYN.
    const plain = lab.spawn('box', [process.execPath, '-e', "require('net').createServer().listen(10025, '0.0.0.0')"]);
    await lab.waitListening('box', 10025);
    const opaque = doctor(args, {}, inBox);
    assert.equal(opaque.code, 1);
    assert.match(one(opaque, 'socket').detail, new RegExp(`^0\\.0\\.0\\.0:10025 is listening, held by node pid ${plain.pid} but without IP_TRANSPARENT`));
    await new Promise((done) => {
      plain.once('exit', done);
      plain.kill();
    });

    const up = doctor(args, {}, inBox);
    assert.equal(one(up, 'net').status, 'ok', up.stdout);
    assert.match(one(up, 'net').detail, /^\d+ checks pass \(transparent mode, bridge br0\)$/);
    assert.equal(one(up, 'store').status, 'ok');
    assert.equal(one(up, 'identity amd.example').status, 'ok');
    assert.equal(one(up, 'gateway').status, 'warn', 'no haraka runs for this instance');
    if (one(up, 'addon').status === 'ok') {
      assert.equal(one(up, 'ip-transparent').status, 'ok', 'root may set IP_TRANSPARENT');
      // The gateway's own way to listen when there is no cstp.socket: the addon's IP_TRANSPARENT socket.
      const native = join(REPO, 'dist', 'src', 'transparent', 'native.js');
      const code = `const fd = require(${JSON.stringify(native)}).listenTransparent('0.0.0.0', 10025); require('net').createServer().listen({ fd })`;
      const transparent = lab.spawn('box', [process.execPath, '-e', code]);
      await lab.waitListening('box', 10025);
      const good = doctor(args, {}, inBox);
      assert.match(one(good, 'socket').detail, new RegExp(`^listening on 0\\.0\\.0\\.0:10025, held by node pid ${transparent.pid}, with IP_TRANSPARENT$`));
      assert.equal(good.code, 0, good.stdout);
    } else {
      assert.match(one(up, 'addon').fix ?? '', /npm ci/);
    }

    await lab.exec('box', ['nft', 'delete', 'table', 'inet', 'cstp_ip'], { check: true });
    const broken = doctor(args, {}, inBox);
    assert.equal(broken.code, 1);
    const missing = broken.checks.filter((c) => c.status === 'fail' && c.name.startsWith('net '));
    assert.equal(missing.length, 1, broken.stdout);
    assert.match(missing[0].name, /cstp_ip/);
    assert.match(missing[0].detail, /^expected present, found missing$/);
    assert.match(missing[0].fix ?? '', /^systemctl reload cstp-net/);

    writeFileSync(netConf, 'BRIDGE=br0\nLAN_IF=lan0\nWAN_IF=wan0\nMODE=transparent\nPROXY_PORT=10026\n');
    const mismatch = doctor(args, {}, inBox);
    assert.ok(named(mismatch, 'net').some((c) => c.status === 'fail' && /diverts to port 10026 \(PROXY_PORT\) but \[transparent\] listen is 0\.0\.0\.0:10025/.test(c.detail)), mismatch.stdout);
  });
});

/** Why the gateway cannot run as `nobody` here (the checkout must be readable by others), or undefined. */
function nobodyReason(): string | undefined {
  if (netReason) return netReason;
  const haraka = join(REPO, 'node_modules', 'haraka', 'bin', 'haraka');
  const r = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'test', '-r', haraka], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `user nobody cannot read ${haraka} (the checkout is not readable by other users)`;
}

describe('the gateway as cstp.service runs it', { skip: nobodyReason() }, () => {
  const lab = new Lab();
  const work = mkdtempSync(join(tmpdir(), 'cstp-layout-'));
  after(async () => {
    await lab.destroy();
    rmSync(work, { recursive: true, force: true });
  });

  test("a dedicated user with the unit's capabilities in the /etc/cstp layout starts, listens transparently, and doctor sees it", async () => {
    await lab.ns('gw');
    const uid = Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout);
    const gid = Number(spawnSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).stdout);
    chmodSync(work, 0o755);
    // docs/DEPLOYMENT.md: /etc/cstp (root) with links to the code and to the state directory, which alone is the user's.
    const inst = join(work, 'etc-cstp');
    const state = join(work, 'var-lib-cstp');
    const cred = join(work, 'credentials');
    mkdirSync(inst, { mode: 0o755 });
    cpSync(join(REPO, 'config'), join(inst, 'config'), { recursive: true, verbatimSymlinks: true });
    symlinkSync(join(REPO, 'plugins'), join(inst, 'plugins'));
    symlinkSync(join(REPO, 'dist'), join(inst, 'dist'));
    symlinkSync(state, join(inst, 'var'));
    symlinkSync(join(state, 'haraka-queue'), join(inst, 'queue'));
    mkdirSync(join(state, 'haraka-queue'), { recursive: true, mode: 0o700 });
    chmodSync(state, 0o700);
    mkdirSync(cred, { mode: 0o500 });
    writeFileSync(join(cred, 'store.passphrase'), `${PASS}\n`, { mode: 0o400 });
    for (const p of [state, join(state, 'haraka-queue'), cred, join(cred, 'store.passphrase')]) chownSync(p, uid, gid);
    writeFileSync(join(inst, 'config', 'cstp.ini'),
      `[policy]\nlocal_domains = amd.example\nlocal_networks = 192.0.2.0/25\n[transparent]\nlisten = 0.0.0.0:10025\n[store]\npassphrase_file = ${join(cred, 'store.passphrase')}\n`);

    const unit = readUnit('cstp.service');
    const caps = (key: string): string => unitValue(unit, 'Service', key)!.split(/\s+/).map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',');
    const haraka = join(REPO, 'node_modules', 'haraka', 'bin', 'haraka');
    const gateway = lab.spawn('gw', [
      'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--no-new-privs',
      `--inh-caps=-all,${caps('AmbientCapabilities')}`, `--ambient-caps=-all,${caps('AmbientCapabilities')}`, `--bounding-set=-all,${caps('CapabilityBoundingSet')}`,
      process.execPath, haraka, '-c', inst,
    ], { cwd: inst });
    let log = '';
    gateway.stdout?.on('data', (c: Buffer) => (log += c.toString()));
    gateway.stderr?.on('data', (c: Buffer) => (log += c.toString()));
    await lab.waitListening('gw', 10025, 30_000).catch((e: Error) => assert.fail(`${e.message}\n${log}`));

    const d = doctor(['--config', inst], {}, ['ip', 'netns', 'exec', lab.name('gw')]);
    assert.match(one(d, 'socket').detail, new RegExp(`^listening on 0\\.0\\.0\\.0:10025, held by node pid ${gateway.pid}, with IP_TRANSPARENT$`), d.stdout);
    assert.equal(one(d, 'gateway').status, 'ok', d.stdout);
    // The master and its workers (smtp.ini nodes=cpus), each with the capability.
    assert.match(one(d, 'gateway').detail, new RegExp(`^gateway pid ${gateway.pid}(, \\d+)+ runs with CAP_NET_RAW`));
    assert.match(one(d, 'store').detail, /opens with the passphrase from .*credentials\/store\.passphrase$/);
    assert.equal(one(d, 'identity amd.example').status, 'ok', 'the first start made the identity');
    // Everything generated is the user's and inside the state directory.
    for (const name of ['store', 'tls', 'queue']) assert.equal(statSync(join(state, name)).uid, uid, name);
    assert.equal(statSync(join(inst, 'config', 'cstp.ini')).uid, 0);
  });
});

// ---------------------------------------------------------------------------
// The systemd units: the settings this deployment relies on, and systemd's own verdict when it is installed.

type Unit = Map<string, Map<string, string[]>>;

function readUnit(name: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  readFileSync(join(REPO, 'systemd', name), 'utf8').split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1], section);
      return;
    }
    const entry = /^([A-Za-z]+)=(.*)$/.exec(line);
    assert.ok(entry && section, `systemd/${name}:${i + 1}: not "Key=value" inside a section: ${line}`);
    section.set(entry[1], [...(section.get(entry[1]) ?? []), entry[2]]);
  });
  return unit;
}

/** The last assignment of a key (what systemd uses for single-valued settings). */
function unitValue(unit: Unit, section: string, key: string): string | undefined {
  return unit.get(section)?.get(key)?.at(-1);
}

describe('systemd units', () => {
  test('cstp-net.service: a oneshot that stays active, up on start, down on stop, after nftables.service', () => {
    const u = readUnit('cstp-net.service');
    assert.equal(unitValue(u, 'Service', 'Type'), 'oneshot');
    assert.equal(unitValue(u, 'Service', 'RemainAfterExit'), 'yes');
    assert.equal(unitValue(u, 'Service', 'ExecStart'), '/opt/cstp/scripts/cstp-net up');
    assert.equal(unitValue(u, 'Service', 'ExecStop'), '/opt/cstp/scripts/cstp-net down');
    assert.match(unitValue(u, 'Unit', 'After') ?? '', /\bnftables\.service\b/);
    assert.match(unitValue(u, 'Unit', 'Before') ?? '', /\bnetwork-online\.target\b/);
  });

  test('cstp.socket: IPv4 wildcard on the proxy port, transparent, for cstp.service', () => {
    const u = readUnit('cstp.socket');
    assert.deepEqual(u.get('Socket')?.get('ListenStream'), ['0.0.0.0:10025']);
    assert.equal(unitValue(u, 'Socket', 'Transparent'), 'yes');
    assert.equal(unitValue(u, 'Socket', 'FreeBind'), 'yes');
    assert.equal(unitValue(u, 'Socket', 'Service'), 'cstp.service');
    assert.ok(Number(unitValue(u, 'Socket', 'Backlog')) >= 1024);
    const ini = readFileSync(join(REPO, 'config', 'smtp.ini'), 'utf8');
    // A cluster: the master takes the inherited socket and its workers accept on it (plugins/cstp-transparent).
    assert.match(ini, /^nodes=cpus$/m);
  });

  test('cstp.service: a dedicated user, CAP_NET_RAW only, a read-only system, the passphrase as a credential', () => {
    const u = readUnit('cstp.service');
    const s = (key: string): string | undefined => unitValue(u, 'Service', key);
    assert.equal(s('User'), 'cstp');
    assert.equal(s('ExecStart'), '/usr/bin/node /opt/cstp/node_modules/haraka/bin/haraka -c /etc/cstp');
    assert.equal(s('AmbientCapabilities'), 'CAP_NET_RAW');
    assert.equal(s('CapabilityBoundingSet'), 'CAP_NET_RAW');
    assert.equal(s('NoNewPrivileges'), 'yes');
    assert.equal(s('ProtectSystem'), 'strict');
    assert.equal(s('PrivateTmp'), 'yes');
    assert.equal(s('ProtectHome'), 'yes');
    assert.equal(s('PrivateDevices'), 'yes');
    assert.equal(s('KillSignal'), 'SIGINT', 'Haraka shuts down on SIGINT only');
    assert.equal(s('Restart'), 'always');
    assert.equal(s('RestartPreventExitStatus'), '78');
    assert.ok(Number(s('LimitNOFILE')) >= 65536);
    assert.equal(s('LoadCredential'), 'store.passphrase:/etc/cstp/store.passphrase');
    assert.doesNotMatch(s('RestrictAddressFamilies') ?? '', /AF_PACKET/);
    assert.ok(u.get('Service')?.get('SystemCallFilter')?.includes('@system-service'));
    assert.equal(s('MemoryDenyWriteExecute'), undefined, "V8's JIT needs W+X memory");
    assert.match(unitValue(u, 'Unit', 'Wants') ?? '', /\bcstp\.socket\b/);
  });

  const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  test('systemd-analyze verify accepts the units', { skip: analyze.status === 0 ? undefined : 'systemd-analyze is not installed' }, () => {
    // The units name installed paths; verify checks that the programs exist, so point them at this checkout.
    const work = mkdtempSync(join(tmpdir(), 'cstp-units-'));
    try {
      const fakeNet = join(work, 'cstp-net');
      writeFileSync(fakeNet, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
      for (const name of readdirSync(join(REPO, 'systemd'))) {
        const text = readFileSync(join(REPO, 'systemd', name), 'utf8')
          .replaceAll('/opt/cstp/scripts/cstp-net', fakeNet)
          .replaceAll('/usr/bin/node', process.execPath);
        writeFileSync(join(work, name), text);
      }
      const r = spawnSync('systemd-analyze', ['verify', ...['cstp-net.service', 'cstp.socket', 'cstp.service'].map((n) => join(work, n))], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr.trim(), '', r.stderr);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
