import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { Certificate } from '../../src/pki/certificate';
import { KeyStore } from '../../src/store/key-store';
import { P12_PASS, pkiPath, pkiRead } from '../helpers/pki';

const BIN = resolve(__dirname, '../../../bin/cstp');
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function workdir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cstp-cli-'));
  dirs.push(d);
  return d;
}

interface Run { code: number | null; stdout: string; stderr: string }

/** Runs `node bin/cstp` in `cwd` with no store settings inherited from the environment. */
function cstp(cwd: string, args: string[], env: Record<string, string> = {}, input?: Buffer): Run {
  const base = { ...process.env };
  delete base.CSTP_STORE;
  delete base.CSTP_STORE_PASSPHRASE;
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env: { ...base, ...env }, input, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return r;
}

const cert = (n: string): Certificate => Certificate.fromPem(pkiRead(`${n}.crt`))[0];

/** The store a CLI run in `cwd` made, opened in this process with the default passphrase file. */
async function withStore<T>(cwd: string, action: (s: KeyStore) => T): Promise<T> {
  const passphrase = readFileSync(join(cwd, 'var/store.passphrase'), 'utf8').trim();
  const s = KeyStore.open({ path: join(cwd, 'var/store'), passphrase });
  try {
    return action(s);
  } finally {
    await s.close();
  }
}

test('init creates the passphrase file, the store and an RFC 3183 gateway identity, and refuses to overwrite it', async () => {
  const cwd = workdir();
  const r = ok(cstp(cwd, ['init', '--domain', 'AMD.example', '--out', 'amd.pem', '--csr', 'amd.csr']));
  assert.match(r.stdout, /gateway identity for amd\.example/);
  assert.match(r.stderr, /created store passphrase file/);
  assert.equal(statSync(join(cwd, 'var/store.passphrase')).mode & 0o777, 0o600);
  assert.equal(statSync(join(cwd, 'var/store')).mode & 0o777, 0o700);
  assert.equal(statSync(join(cwd, 'var/store/store.mdb')).mode & 0o777, 0o600);
  const [c] = Certificate.fromPem(readFileSync(join(cwd, 'amd.pem')));
  assert.deepEqual([...new Set(c.emailAddresses)], ['domain-signing-authority@amd.example', 'domain-confidentiality-authority@amd.example']);
  assert.equal(c.rsaBits, 2048);
  const req = spawnSync('openssl', ['req', '-in', 'amd.csr', '-noout', '-verify', '-text'], { cwd, encoding: 'utf8' });
  assert.match(req.stdout + req.stderr, /verify OK/);
  assert.match(req.stdout, /email:domain-signing-authority@amd\.example/);
  const held = await withStore(cwd, (s) => s.gatewayIdentity('amd.example'));
  assert.equal(held?.cert.fingerprint, c.fingerprint);
  assert.equal(held?.key.type, 'private');

  const again = cstp(cwd, ['init', '--domain', 'amd.example']);
  assert.equal(again.code, 3);
  assert.match(again.stderr, /exists already/);
  ok(cstp(cwd, ['init', '--domain', 'amd.example', '--force', '--ec', '--email', 'cstpbox@amd.example', '--out', 'amd2.pem']));
  const [c2] = Certificate.fromPem(readFileSync(join(cwd, 'amd2.pem')));
  assert.notEqual(c2.fingerprint, c.fingerprint);
  assert.equal(c2.publicKey.asymmetricKeyType, 'ec');
  assert.deepEqual([...new Set(c2.emailAddresses)], ['cstpbox@amd.example']);
  ok(cstp(cwd, ['init', '--domain', 'second.example']));
  assert.deepEqual((await withStore(cwd, (s) => s.gatewayDomains())).sort(), ['amd.example', 'second.example']);
});

test('init usage errors exit 2', () => {
  const cwd = workdir();
  assert.equal(cstp(cwd, ['init']).code, 2);
  assert.equal(cstp(cwd, ['init', '--domain', 'a.example', '--ec', '--rsa-3072']).code, 2);
  assert.equal(cstp(cwd, ['init', '--domain', 'not a domain']).code, 2);
  assert.equal(cstp(cwd, ['init', '--domain', 'a.example', '--days', '0']).code, 2);
  assert.equal(cstp(cwd, ['init', '--domain', 'a.example', '--bogus']).code, 2);
  assert.equal(existsSync(join(cwd, 'var')), false, 'a usage error creates nothing');
});

test('cert import, list, show, export and remove', async () => {
  const cwd = workdir();
  ok(cstp(cwd, ['init', '--domain', 'amd.example']));
  const multi = cert('multi-rsa');
  const imported = ok(cstp(cwd, ['cert', 'import', '--role', 'remote', '--in', pkiPath('multi-rsa.crt')]));
  assert.match(imported.stdout, new RegExp(`imported ${multi.fingerprint} as remote: multi@a\\.example, alias@a\\.example`));
  writeFileSync(join(cwd, 'ca.der'), cert('ca').der);
  ok(cstp(cwd, ['cert', 'import', '--role', 'ca', '--in', 'ca.der']));
  ok(cstp(cwd, ['cert', 'import', '--role', 'gateway', '--domain', '*.intel.example'], {}, pkiRead('gw-b-rsa.crt')));

  const list = ok(cstp(cwd, ['cert', 'list'])).stdout.trim().split('\n');
  assert.equal(list.length, 4, list.join('\n'));
  assert.ok(list.some((l) => l.startsWith(multi.fingerprint) && /remote\s+multi@a\.example,alias@a\.example/.test(l)));
  assert.ok(list.some((l) => l.startsWith(cert('ca').fingerprint) && / ca /.test(l)));
  assert.ok(list.some((l) => /gateway\s+\*\.intel\.example/.test(l)));
  assert.ok(list.some((l) => /identity\s+amd\.example/.test(l)));
  assert.equal(ok(cstp(cwd, ['cert', 'list', '--role', 'ca'])).stdout.trim().split('\n').length, 1);

  const found = await withStore(cwd, (s) => ({
    alias: s.recipientCertificates('alias@a.example').user.map((c) => c.fingerprint),
    wildcard: s.recipientCertificates('julia@mx.intel.example').gateway.map((c) => c.fingerprint),
    anchors: s.trustAnchors().map((c) => c.fingerprint),
  }));
  assert.deepEqual(found, { alias: [multi.fingerprint], wildcard: [cert('gw-b-rsa').fingerprint], anchors: [cert('ca').fingerprint] });

  const show = ok(cstp(cwd, ['cert', 'show', multi.fingerprint.slice(0, 12)])).stdout;
  assert.match(show, /Subject: +O=A Example, CN=Multi Address \(RSA\)/);
  assert.match(show, /Addresses: +multi@a\.example, alias@A\.Example/);
  assert.match(show, /Stored as: +remote \(multi@a\.example, alias@a\.example\)/);
  assert.match(show, /S\/MIME use: +sign: yes; encrypt: yes/);

  ok(cstp(cwd, ['cert', 'export', multi.fingerprint, '--der', '--out', 'multi.der']));
  assert.ok(readFileSync(join(cwd, 'multi.der')).equals(multi.der));
  assert.equal(ok(cstp(cwd, ['cert', 'export', multi.fingerprint])).stdout, multi.toPem());
  const own = Certificate.fromPem(ok(cstp(cwd, ['cert', 'export', '--domain', 'amd.example'])).stdout)[0];
  assert.ok(own.hasEmail('domain-signing-authority@amd.example'));

  assert.match(ok(cstp(cwd, ['cert', 'remove', multi.fingerprint])).stdout, /removed .* from 1 role/);
  const gone = cstp(cwd, ['cert', 'show', multi.fingerprint]);
  assert.equal(gone.code, 3);
  assert.match(gone.stderr, /no certificate/);
  assert.equal(cstp(cwd, ['cert', 'remove', cert('ca').fingerprint, '--role', 'remote']).code, 3);
  assert.equal(cstp(cwd, ['cert', 'import', '--in', pkiPath('ca.crt')]).code, 2, 'no --role');
  assert.equal(cstp(cwd, ['cert', 'import', '--role', 'remote', '--domain', 'x.example', '--in', pkiPath('ca.crt')]).code, 2);
  assert.equal(cstp(cwd, ['cert', 'import', '--role', 'remote', '--in', pkiPath('user-a-rsa.key')]).code, 3, 'not a certificate');
});

test('key import: a PKCS#12 user key and a PEM gateway identity land encrypted and usable', async () => {
  const cwd = workdir();
  ok(cstp(cwd, ['init', '--domain', 'a.example']));
  const user = ok(cstp(cwd, ['key', 'import', '--role', 'user', '--key', pkiPath('user-a-rsa.p12'), '--pass-env', 'P12'], { P12: P12_PASS }));
  assert.match(user.stdout, /user key for user@a\.example/);
  ok(cstp(cwd, ['key', 'import', '--role', 'gateway', '--domain', 'b.example', '--cert', pkiPath('gw-b-rsa.crt'), '--key', pkiPath('gw-b-rsa.key')]));
  const held = await withStore(cwd, (s) => ({
    user: s.userKey('user@a.example')?.cert.fingerprint,
    gw: s.gatewayIdentity('b.example')?.cert.fingerprint,
    keys: s.decryptionKeys().length,
  }));
  assert.deepEqual(held, { user: cert('user-a-rsa').fingerprint, gw: cert('gw-b-rsa').fingerprint, keys: 3 });
  const ids = ok(cstp(cwd, ['cert', 'list', '--role', 'identity'])).stdout;
  assert.match(ids, /identity\s+b\.example/);
  assert.match(ids, /user-key\s+user@a\.example/);

  const bad = cstp(cwd, ['key', 'import', '--role', 'user', '--key', pkiPath('user-a-rsa.p12'), '--pass-env', 'P12'], { P12: 'Sesame-7731' });
  assert.equal(bad.code, 3);
  assert.ok(!bad.stderr.includes('Sesame'), 'the passphrase is not echoed');
  assert.equal(cstp(cwd, ['key', 'import', '--role', 'gateway', '--key', pkiPath('gw-b-rsa.key'), '--cert', pkiPath('gw-b-rsa.crt')]).code, 2, 'no --domain');
  const expired = ok(cstp(cwd, ['key', 'import', '--role', 'user', '--cert', pkiPath('expired.crt'), '--key', pkiPath('expired.key')]));
  assert.match(expired.stderr, /warning: cannot sign with it: .*expired/);
  assert.match(expired.stdout, /user key for old@a\.example/);
  const mismatch = cstp(cwd, ['key', 'import', '--role', 'user', '--key', pkiPath('gw-b-rsa.key'), '--cert', pkiPath('user-a-rsa.crt')]);
  assert.equal(mismatch.code, 3);
  assert.match(mismatch.stderr, /does not match/);
});

test('untrusted list, trust and drop', async () => {
  const cwd = workdir();
  ok(cstp(cwd, ['init', '--domain', 'a.example']));
  await withStore(cwd, (s) => {
    s.harvest(cert('stranger'), 'stranger@c.example');
    s.harvest(cert('stranger'), '192.0.2.9');
    s.harvest(cert('other-ca'), 'peer.example');
    s.harvest(cert('user-a-rsa'), 'peer.example');
  });
  const list = ok(cstp(cwd, ['untrusted', 'list'])).stdout;
  assert.match(list, new RegExp(`${cert('stranger').fingerprint}  seen 2x  .*from stranger@c\\.example,192\\.0\\.2\\.9  stranger@c\\.example`));
  assert.equal(list.trim().split('\n').length, 3);

  assert.match(ok(cstp(cwd, ['untrusted', 'trust', cert('stranger').fingerprint.slice(0, 16)])).stdout, /trusted .* as remote: stranger@c\.example/);
  ok(cstp(cwd, ['untrusted', 'trust', cert('other-ca').fingerprint, '--as', 'ca']));
  ok(cstp(cwd, ['untrusted', 'drop', cert('user-a-rsa').fingerprint]));
  assert.equal(ok(cstp(cwd, ['untrusted', 'list'])).stdout, '');
  const state = await withStore(cwd, (s) => ({
    remote: s.recipientCertificates('stranger@c.example').user.map((c) => c.fingerprint),
    anchors: s.trustAnchors().map((c) => c.fingerprint),
  }));
  assert.deepEqual(state, { remote: [cert('stranger').fingerprint], anchors: [cert('other-ca').fingerprint] });
  assert.equal(cstp(cwd, ['untrusted', 'drop', cert('user-a-rsa').fingerprint]).code, 3);
  assert.equal(cstp(cwd, ['untrusted', 'trust', cert('stranger').fingerprint, '--as', 'gateway']).code, 2);
  assert.equal(cstp(cwd, ['untrusted', 'trust']).code, 2);
});

test('store options: --store, CSTP_STORE, $CSTP_STORE_PASSPHRASE, --store-pass-file; a wrong or missing passphrase exits 3', () => {
  const cwd = workdir();
  ok(cstp(cwd, ['init', '--domain', 'a.example', '--store', 'other'], { CSTP_STORE_PASSPHRASE: 'from env' }));
  assert.equal(existsSync(join(cwd, 'var/store.passphrase')), false, 'no file when the environment gives the passphrase');
  assert.ok(existsSync(join(cwd, 'other/store.mdb')));
  assert.match(ok(cstp(cwd, ['cert', 'list'], { CSTP_STORE: 'other', CSTP_STORE_PASSPHRASE: 'from env' })).stdout, /identity\s+a\.example/);
  writeFileSync(join(cwd, 'pass'), 'from env\n', { mode: 0o600 });
  ok(cstp(cwd, ['cert', 'list', '--store', 'other', '--store-pass-file', 'pass']));
  const wrong = cstp(cwd, ['cert', 'list', '--store', 'other'], { CSTP_STORE_PASSPHRASE: 'guess' });
  assert.equal(wrong.code, 3);
  assert.equal(wrong.stderr, `cstp: wrong passphrase for key store ${join(cwd, 'other')}\n`);
  const none = cstp(cwd, ['cert', 'list', '--store', 'other']);
  assert.equal(none.code, 3);
  assert.match(none.stderr, /no store passphrase/);
  const missing = cstp(cwd, ['cert', 'list', '--store', 'nowhere'], { CSTP_STORE_PASSPHRASE: 'x' });
  assert.equal(missing.code, 3);
  assert.match(missing.stderr, /no key store at .*nowhere/);
});

test('every store command has --help', () => {
  const cwd = workdir();
  const commands = [['init'], ['cert', 'import'], ['cert', 'export'], ['cert', 'list'], ['cert', 'show'], ['cert', 'remove'], ['key', 'import'], ['untrusted', 'list'], ['untrusted', 'trust'], ['untrusted', 'drop']];
  for (const c of commands) {
    const r = ok(cstp(cwd, [...c, '--help']));
    assert.ok(r.stdout.startsWith(`Usage: cstp ${c.join(' ')}`), r.stdout);
  }
  const top = ok(cstp(cwd, ['--help'])).stdout;
  assert.match(top, /cstp init \[options\]/);
  assert.match(top, /cstp untrusted list\|trust\|drop/);
  assert.match(top, /systemd credential/);
  assert.equal(existsSync(join(cwd, 'var')), false);
});
