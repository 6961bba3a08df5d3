/**
 * `cstp doctor` against temporary Haraka instance directories (test/gateway/harness.ts makeInstance): the
 * configuration and key checks here, the network checks inside a network namespace when root and nftables allow.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { gatewayIdentity } from '../../src/pki/issue';
import { KeyStore } from '../../src/store/key-store';
import { makeInstance, removeInstance } from '../gateway/harness';

const BIN = resolve(__dirname, '../../../bin/cstp');
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

/** Runs `cstp doctor --json` and, separately, the text form; both must agree on the exit code. */
function doctor(args: string[], env: Record<string, string> = {}, prefix: string[] = []): Doctor {
  const base = { ...process.env, ...env };
  delete base.CSTP_STORE_PASSPHRASE;
  Object.assign(base, env);
  const argv = [...prefix, process.execPath, BIN, 'doctor', ...args];
  const json = spawnSync(argv[0], [...argv.slice(1), '--json'], { env: base, encoding: 'utf8', timeout: 60_000 });
  const text = spawnSync(argv[0], argv.slice(1), { env: base, encoding: 'utf8', timeout: 60_000 });
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
