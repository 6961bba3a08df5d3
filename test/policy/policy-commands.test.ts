/** `cstp policy explain` end to end: a real store, bin/cstp in a child process. */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { KeyStore } from '../../src/store/key-store';
import { paperCert, paperKey } from './paper-pki';

const CSTP = resolve(__dirname, '../../../bin/cstp');
const dir = mkdtempSync(join(tmpdir(), 'cstp-policy-cli-'));
const storeDir = join(dir, 'store');
const passFile = join(dir, 'pass');
/** Haraka instance directories: one without config/cstp.ini (every default), one with amd's settings. */
const bare = join(dir, 'bare');
const amd = join(dir, 'amd');

before(async () => {
  writeFileSync(passFile, 'correct horse\n', { mode: 0o600 });
  mkdirSync(bare);
  mkdirSync(join(amd, 'config'), { recursive: true });
  writeFileSync(join(amd, 'config', 'cstp.ini'), '[policy]\nlocal_networks = 10.1.0.0/16\nlocal_domains = amd\nmixed_recipients = liberal\n');
  const store = KeyStore.open({ path: storeDir, passphrase: 'correct horse' });
  store.putGatewayIdentity('amd', { key: paperKey('gw-amd'), cert: paperCert('gw-amd'), chain: [] });
  store.addCertificate(paperCert('gw-intel'), 'gateway', ['intel']);
  store.addCertificate(paperCert('julia'), 'remote');
  await store.close();
});
after(() => rmSync(dir, { recursive: true, force: true }));

function cstp(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CSTP, ...args], { encoding: 'utf8', env: { ...process.env, CSTP_STORE_PASSPHRASE: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const explainIn = (instance: string, ...args: string[]) =>
  cstp('policy', 'explain', '--instance', instance, '--store', storeDir, '--store-pass-file', passFile, ...args);
const explain = (...args: string[]) => explainIn(bare, ...args);

test('explain prints the paper example from the store: intel encrypted and signed by amd, fedor refused (restrictive default)', () => {
  const r = explain('--from', 'juro@amd', '--to', 'juro@intel,julia@intel', '--to', 'fedor@mulholland', '--at', '2030-01-01T00:00:00Z');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^direction: outbound \(direction given\)\nsender: juro@amd\n/);
  assert.match(r.stdout, /  julia@intel: user certificate "CN=Julia/);
  assert.match(r.stdout, /delivery 1 via original connection: juro@intel, julia@intel\n  sign with the gateway key of amd /);
  assert.match(r.stdout, /encrypt with aes-256-cbc \(RSA key transport rsa-pkcs1\) for 2 certificate\(s\)/);
  assert.match(r.stdout, /refused: fedor@mulholland with 550 5\.7\.1/);
});

test("explain reads the instance's cstp.ini: liberal, amd's networks and domain; flags override it", () => {
  const r = explainIn(amd, '--from', 'juro@amd', '--to', 'juro@intel,fedor@mulholland,fero@amd', '--client', '10.1.0.25');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /direction: outbound \(client 10\.1\.0\.25 is in local network 10\.1\.0\.0\/16\)/);
  assert.match(r.stdout, /  fero@amd: stays inside \[local\]/);
  assert.match(r.stdout, /delivery 2 via second connection .*: fedor@mulholland, fero@amd\n  unaltered: no usable certificate/);
  const overridden = explainIn(amd, '--from', 'juro@amd', '--to', 'juro@intel,fedor@mulholland', '--client', '10.1.0.25', '--mixed', 'restrictive');
  assert.match(overridden.stdout, /refused: fedor@mulholland/);
  const inbound = explainIn(amd, '--from', 'juro@amd', '--to', 'juro@intel', '--client', '192.0.2.1');
  assert.match(inbound.stdout, /direction: inbound \(client 192\.0\.2\.1 is not in the local networks\)/);
});

test('explain: a wrong cstp.ini stops it, naming the file and key', () => {
  const broken = join(dir, 'broken');
  mkdirSync(join(broken, 'config'), { recursive: true });
  writeFileSync(join(broken, 'config', 'cstp.ini'), '[policy]\nmixed_recipients = sometimes\n');
  const r = explainIn(broken, '--from', 'juro@amd', '--to', 'juro@intel');
  assert.equal(r.status, 3);
  assert.match(r.stderr, /cstp\.ini.*mixed_recipients/);
});

test('explain inbound --encrypted at the amd gateway: its own key opens mail for amd', () => {
  const r = explain('--from', 'juro@intel', '--to', 'juro@amd', '--direction', 'in', '--encrypted');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /delivery 1 via original connection: juro@amd\n  decrypt with the gateway key "CN=cstp gateway amd/);
});

test('explain: usage errors exit 2, a wrong passphrase 3, --help 0', () => {
  for (const args of [['--to', 'x@intel'], ['--from', 'a@amd'], ['--from', 'a@amd', '--to', 'x@intel', '--mixed', 'strict'],
    ['--from', 'a@amd', '--to', 'x@intel', '--direction', 'sideways'], ['--from', 'a@amd', '--to', 'x@intel', '--client', 'nowhere']]) {
    const r = explain(...args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, /^cstp: /, args.join(' '));
  }
  writeFileSync(join(dir, 'wrong'), 'wrong\n');
  const r = cstp('policy', 'explain', '--store', storeDir, '--store-pass-file', join(dir, 'wrong'), '--from', 'a@amd', '--to', 'x@intel');
  assert.equal(r.status, 3);
  assert.match(r.stderr, /wrong passphrase/);
  const help = cstp('policy', 'explain', '--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: cstp policy explain --from A --to B/);
});
