import { strict as assert } from 'node:assert';
import { execFileSync, spawn } from 'node:child_process';
import { createPrivateKey, sign, verify } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { OID } from '../../src/asn1/oids';
import { Certificate } from '../../src/pki/certificate';
import { generateKeyPair, selfSignedCertificate, smimeKeyUsage } from '../../src/pki/issue';
import { loadCredentials, loadPkcs12 } from '../../src/pki/keys';
import { deriveKek, newKdfParams, seal, unseal } from '../../src/store/seal';
import { KeyStore, StoreError } from '../../src/store/key-store';
import { P12_PASS, pkiRead } from '../helpers/pki';

const PASS = 'correct horse battery staple';
const roots: string[] = [];
after(() => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));

function tempStore(): string {
  const root = mkdtempSync(join(tmpdir(), 'cstp-store-'));
  roots.push(root);
  return join(root, 'store');
}

const stores: KeyStore[] = [];
after(async () => { for (const s of stores) await s.close(); });
function openStore(path = tempStore(), passphrase = PASS): KeyStore {
  const s = KeyStore.open({ path, passphrase });
  stores.push(s);
  return s;
}

const cert = (n: string): Certificate => Certificate.fromPem(pkiRead(`${n}.crt`))[0];

function gateway(domain: string, emails = [`${domain}@${domain}`]) {
  const { privateKey } = generateKeyPair('ec-p256');
  const c = selfSignedCertificate({ key: privateKey, subject: { commonName: `gw ${domain}` }, emails, days: 30, keyUsage: smimeKeyUsage(privateKey), extKeyUsage: [OID.emailProtection] });
  return { key: privateKey, cert: c, chain: [] as Certificate[] };
}

const MODULE = join(__dirname, '../../src/store/key-store.js');
const fprs = (cs: Certificate[]): string[] => cs.map((c) => c.fingerprint).sort();

test('open creates the directory 0700 and the LMDB files 0600', () => {
  const path = tempStore();
  openStore(path);
  assert.equal(statSync(path).mode & 0o777, 0o700);
  const files = readdirSync(path).sort();
  assert.deepEqual(files, ['store.mdb', 'store.mdb-lock']);
  for (const f of files) assert.equal(statSync(join(path, f)).mode & 0o777, 0o600, f);
});

test('a wrong passphrase is a StoreError at open that names the store and not the passphrase', () => {
  const path = tempStore();
  openStore(path, 'first passphrase');
  assert.throws(() => KeyStore.open({ path, passphrase: 'guessed passphrase' }), (e: Error) => {
    assert.ok(e instanceof StoreError);
    assert.equal(e.message, `wrong passphrase for key store ${path}`);
    assert.ok(!e.message.includes('guessed') && !e.message.includes('first'));
    return true;
  });
  const again = openStore(path, 'first passphrase');
  assert.deepEqual(again.gatewayDomains(), []);
});

test('an empty passphrase and a missing read-only store are refused', () => {
  assert.throws(() => KeyStore.open({ path: tempStore(), passphrase: '' }), /empty passphrase/);
  const missing = tempStore();
  assert.throws(() => KeyStore.open({ path: missing, passphrase: PASS, readOnly: true }), /no key store at/);
});

test('a read-only store reads but refuses writes', async () => {
  const path = tempStore();
  const s = openStore(path);
  s.setRoute('mx.b.example:25', 'relay');
  const ro = KeyStore.open({ path, passphrase: PASS, readOnly: true });
  try {
    assert.equal(ro.route('mx.b.example:25')?.route, 'relay');
    assert.throws(() => ro.setRoute('x', 'relay'), /open read-only/);
  } finally {
    await ro.close();
  }
  s.setRoute('mx.c.example:25', 'second-connection');
  assert.equal(s.route('mx.c.example:25')?.route, 'second-connection', 'closing a second handle in the same process leaves the first usable');
});

test('gateway identities for several domains round-trip key, certificate and chain', () => {
  const s = openStore();
  const amd = gateway('amd.example');
  const other = gateway('other.example');
  const chain = [cert('ca')];
  s.putGatewayIdentity('AMD.example', { ...amd, chain });
  s.putGatewayIdentity('other.example.', other);
  assert.deepEqual(s.gatewayDomains().sort(), ['amd.example', 'other.example']);
  const got = s.gatewayIdentity('amd.EXAMPLE')!;
  assert.equal(got.cert.fingerprint, amd.cert.fingerprint);
  assert.deepEqual(fprs(got.chain), fprs(chain));
  const sig = sign('sha256', Buffer.from('x'), got.key);
  assert.ok(verify('sha256', Buffer.from('x'), amd.cert.publicKey, sig), 'the stored key is the same key');
  assert.equal(s.gatewayIdentity('nowhere.example'), undefined);
  assert.equal(s.removeGatewayIdentity('other.example'), true);
  assert.equal(s.gatewayIdentity('other.example'), undefined);
  assert.equal(s.removeGatewayIdentity('other.example'), false);
  assert.throws(() => s.putGatewayIdentity('not a domain', amd), /not a domain name/);
});

test('private keys are not readable in the LMDB files without the passphrase', async () => {
  const path = tempStore();
  const s = KeyStore.open({ path, passphrase: PASS });
  const p12 = loadPkcs12(pkiRead('user-a-rsa.p12'), P12_PASS);
  const gw = gateway('amd.example');
  s.putGatewayIdentity('amd.example', gw);
  s.putUserKey(p12);
  await s.close();
  const files = readdirSync(path).map((f) => readFileSync(join(path, f)));
  for (const key of [gw.key, p12.key]) {
    const der = key.export({ type: 'pkcs8', format: 'der' });
    const pem = key.export({ type: 'pkcs8', format: 'pem' }) as string;
    const needles = [der, der.subarray(der.length - 64), Buffer.from(der.toString('base64').slice(40, 120)), Buffer.from(pem.split('\n')[2])];
    for (const file of files) for (const needle of needles) assert.equal(file.indexOf(needle), -1, 'private key material found in the store files');
  }
  // The certificate is stored in the clear (base64 DER in JSON), which shows the search would find key material.
  assert.ok(files.some((f) => f.includes(Buffer.from(gw.cert.der.toString('base64').slice(40, 120)))));
  const reopened = openStore(path);
  assert.equal(reopened.userKey('user@a.example')?.cert.fingerprint, p12.cert.fingerprint);
});

test('a sealed record opens only under its own record id and key', () => {
  const params = newKdfParams();
  const kek = deriveKek('pw', params);
  const sealed = seal(kek, 'identity:a.example', Buffer.from('secret'));
  assert.equal(unseal(kek, 'identity:a.example', sealed)?.toString(), 'secret');
  assert.equal(unseal(kek, 'identity:b.example', sealed), undefined);
  assert.equal(unseal(deriveKek('other', params), 'identity:a.example', sealed), undefined);
  assert.equal(params.N, 2 ** 15);
  assert.equal(Buffer.from(params.salt, 'base64').length, 16);
});

test('user keys are found by every address of their certificate; decryptionKeys holds each key once', () => {
  const s = openStore();
  const multi = { key: createPrivateKey(pkiRead('multi-rsa.key')), cert: cert('multi-rsa'), chain: [] };
  assert.deepEqual(s.putUserKey(multi).sort(), ['alias@a.example', 'multi@a.example']);
  assert.equal(s.userKey('multi@A.EXAMPLE')?.cert.fingerprint, multi.cert.fingerprint);
  assert.equal(s.userKey('alias@a.example')?.cert.fingerprint, multi.cert.fingerprint);
  assert.equal(s.userKey('Multi@a.example'), undefined, 'local parts are case-sensitive');
  const gw = gateway('a.example');
  s.putGatewayIdentity('a.example', gw);
  s.putGatewayIdentity('b.example', gw);
  const keys = s.decryptionKeys();
  assert.deepEqual(fprs(keys.map((k) => k.cert)), fprs([multi.cert, gw.cert]));
  assert.ok(keys.every((k) => k.key.type === 'private'));
  assert.equal(s.removeUserKey('alias@a.example'), true);
  assert.equal(s.userKey('alias@a.example'), undefined);
  assert.ok(s.userKey('multi@a.example'));
});

test('certificates with a role: multi-address certificates are found by each address, domains case-insensitively', () => {
  const s = openStore();
  const stored = s.addCertificate(cert('multi-rsa'), 'remote');
  assert.deepEqual(stored.names.sort(), ['alias@a.example', 'multi@a.example']);
  s.addCertificate(cert('user-a-rsa'), 'user');
  for (const a of ['multi@a.example', 'alias@a.example', 'alias@A.EXAMPLE']) {
    assert.deepEqual(fprs(s.recipientCertificates(a).user), [cert('multi-rsa').fingerprint], a);
  }
  assert.deepEqual(fprs(s.recipientCertificates('user@a.example').user), [cert('user-a-rsa').fingerprint]);
  assert.deepEqual(s.recipientCertificates('nobody@a.example'), { user: [], gateway: [] });
  assert.deepEqual(s.certificates('remote').map((c) => c.role), ['remote']);
  assert.equal(s.certificates().length, 2);
});

test('gateway certificates: by domain, then the nearest parent wildcard; not the wildcard base itself', () => {
  const s = openStore();
  const exact = gateway('b.example').cert;
  const wild = gateway('example.org').cert;
  const deeper = gateway('sub.example.org').cert;
  s.addCertificate(exact, 'gateway');
  assert.deepEqual(s.addCertificate(wild, 'gateway', ['*.Example.org']).names, ['*.example.org']);
  s.addCertificate(deeper, 'gateway', ['*.sub.example.org']);
  assert.deepEqual(fprs(s.recipientCertificates('juro@B.example').gateway), [exact.fingerprint], 'default domain from the certificate address');
  assert.deepEqual(fprs(s.recipientCertificates('a@mail.example.org').gateway), [wild.fingerprint]);
  assert.deepEqual(fprs(s.recipientCertificates('a@x.y.example.org').gateway), [wild.fingerprint]);
  assert.deepEqual(fprs(s.recipientCertificates('a@x.sub.example.org').gateway), [deeper.fingerprint]);
  assert.deepEqual(s.recipientCertificates('a@example.org').gateway, []);
  assert.deepEqual(s.gatewayCertificates('junk domain!'), []);
});

test('remove takes a certificate out of one role or all, and out of the lookups', () => {
  const s = openStore();
  const c = cert('user-a-rsa');
  s.addCertificate(c, 'remote');
  s.addCertificate(c, 'user');
  s.addCertificate(cert('ca'), 'ca');
  assert.equal(s.findCertificates(c.fingerprint.slice(0, 10).toUpperCase()).length, 2);
  assert.equal(s.removeCertificate(c.fingerprint, 'remote'), 1);
  assert.equal(s.recipientCertificates('user@a.example').user.length, 1);
  assert.equal(s.removeCertificate(c.fingerprint), 1);
  assert.deepEqual(s.recipientCertificates('user@a.example').user, []);
  assert.equal(s.removeCertificate(c.fingerprint), 0);
  assert.deepEqual(fprs(s.trustAnchors()), [cert('ca').fingerprint]);
});

test('re-adding a certificate with other names replaces its index entries', () => {
  const s = openStore();
  const gw = gateway('b.example').cert;
  s.addCertificate(gw, 'gateway', ['b.example']);
  s.addCertificate(gw, 'gateway', ['c.example']);
  assert.deepEqual(s.gatewayCertificates('b.example'), []);
  assert.equal(s.gatewayCertificates('c.example').length, 1);
  assert.equal(s.certificates('gateway').length, 1);
  assert.throws(() => s.addCertificate(selfSignedCertificate({ key: generateKeyPair('ec-p256').privateKey, subject: { commonName: 'no address' }, days: 1, keyUsage: ['digitalSignature'] }), 'remote'), /names no e-mail address/);
});

test('untrusted store: counters, first/last seen, sources; trust as remote or ca; drop', () => {
  const s = openStore();
  const stranger = cert('stranger');
  const t1 = new Date('2026-11-01T00:00:00Z');
  const t2 = new Date('2026-11-02T00:00:00Z');
  const t3 = new Date('2026-11-03T00:00:00Z');
  s.harvest(stranger, 'stranger@c.example', t1);
  s.harvest(stranger, '192.0.2.7', t2);
  const e = s.harvest(stranger, 'stranger@c.example', t3);
  assert.equal(e.count, 3);
  assert.deepEqual(e.firstSeen, t1);
  assert.deepEqual(e.lastSeen, t3);
  assert.deepEqual(e.seenFrom, ['192.0.2.7', 'stranger@c.example']);
  assert.deepEqual(s.untrusted().map((u) => [u.fingerprint, u.count]), [[stranger.fingerprint, 3]]);

  const trusted = s.trustUntrusted(stranger.fingerprint.toUpperCase(), 'remote');
  assert.equal(trusted.role, 'remote');
  assert.deepEqual(fprs(s.recipientCertificates('stranger@c.example').user), [stranger.fingerprint]);
  assert.deepEqual(s.untrusted(), []);
  assert.throws(() => s.trustUntrusted(stranger.fingerprint, 'remote'), StoreError);

  s.harvest(cert('other-ca'), 'peer', t1);
  s.trustUntrusted(cert('other-ca').fingerprint, 'ca');
  assert.deepEqual(fprs(s.trustAnchors()), [cert('other-ca').fingerprint]);

  s.harvest(cert('user-a-rsa'), 'peer', t1);
  assert.equal(s.dropUntrusted(cert('user-a-rsa').fingerprint), true);
  assert.equal(s.dropUntrusted(cert('user-a-rsa').fingerprint), false);
  assert.deepEqual(s.untrusted(), []);
});

test('route memory and peer capabilities', () => {
  const s = openStore();
  assert.equal(s.route('192.0.2.1:25'), undefined);
  const at = new Date('2026-11-23T11:00:00Z');
  s.setRoute('MX.Intel.example:25', 'second-connection', at);
  assert.deepEqual(s.route('mx.intel.example:25'), { route: 'second-connection', at });
  s.setRoute('mx.intel.example:25', 'relay');
  assert.equal(s.route('mx.intel.example:25')?.route, 'relay');
  assert.throws(() => s.setRoute('x', 'carrier-pigeon' as never), /unknown route/);

  const caps = Buffer.from('300b300906072a864886f70d0307', 'hex');
  assert.equal(s.capabilities('julia@intel.example'), undefined);
  s.setCapabilities('julia@INTEL.example', caps, at);
  const got = s.capabilities('julia@intel.example')!;
  assert.ok(got.der.equals(caps));
  assert.deepEqual(got.at, at);

  // The same capabilities within a day are not written again; a change, or a day later, is.
  const hourLater = new Date(at.getTime() + 3600_000);
  s.setCapabilities('julia@intel.example', caps, hourLater);
  assert.deepEqual(s.capabilities('julia@intel.example')!.at, at);
  const other = Buffer.from('300b300906072a864886f70d0307ff', 'hex');
  s.setCapabilities('julia@intel.example', other, hourLater);
  assert.ok(s.capabilities('julia@intel.example')!.der.equals(other));
  const dayLater = new Date(hourLater.getTime() + 25 * 3600_000);
  s.setCapabilities('julia@intel.example', other, dayLater);
  assert.deepEqual(s.capabilities('julia@intel.example')!.at, dayLater);
});

test('a second process sees what this one wrote, and this one sees its writes', () => {
  const path = tempStore();
  const s = openStore(path);
  s.addCertificate(cert('user-a-rsa'), 'remote');
  s.putGatewayIdentity('amd.example', gateway('amd.example'));
  assert.equal(s.route('mx.intel.example:25'), undefined, 'read before the other process writes');
  const script = `
    const { KeyStore } = require(${JSON.stringify(MODULE)});
    const s = KeyStore.open({ path: process.argv[1], passphrase: process.env.PASS });
    const seen = { user: s.recipientCertificates('user@a.example').user.map((c) => c.fingerprint), gw: s.gatewayIdentity('amd.example').key.type };
    s.setRoute('mx.intel.example:25', 'relay');
    s.harvest(s.recipientCertificates('user@a.example').user[0], 'child');
    process.stdout.write(JSON.stringify(seen));
    s.close();`;
  const out = execFileSync(process.execPath, ['-e', script, path], { env: { ...process.env, PASS }, encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out), { user: [cert('user-a-rsa').fingerprint], gw: 'private' });
  assert.equal(s.route('mx.intel.example:25')?.route, 'relay');
  assert.equal(s.untrusted()[0]?.seenFrom[0], 'child');
});

test('concurrent writers in several processes: every harvest is counted once', async () => {
  const path = tempStore();
  const s = openStore(path);
  const der = cert('stranger').der.toString('base64');
  const script = `
    const { KeyStore } = require(${JSON.stringify(MODULE)});
    const { Certificate } = require(${JSON.stringify(join(__dirname, '../../src/pki/certificate.js'))});
    const s = KeyStore.open({ path: process.argv[1], passphrase: process.env.PASS });
    const c = Certificate.fromDer(Buffer.from(process.env.DER, 'base64'));
    for (let i = 0; i < 25; i++) s.harvest(c, 'writer-' + process.argv[2]);
    s.close();`;
  const run = (n: number) => new Promise<void>((done, fail) => {
    const child = spawn(process.execPath, ['-e', script, path, String(n)], { env: { ...process.env, PASS, DER: der }, stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('exit', (code) => (code === 0 ? done() : fail(new Error(`writer ${n} exited ${code}`))));
  });
  await Promise.all([run(1), run(2), run(3)]);
  const [entry] = s.untrusted();
  assert.equal(entry.count, 75);
  assert.deepEqual([...entry.seenFrom].sort(), ['writer-1', 'writer-2', 'writer-3']);
});

test('a replaced key is read back as the new key in the same process (no stale cache)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cstp-rekey-'));
  const store = KeyStore.open({ path: join(dir, 's'), passphrase: 'p' });
  try {
    store.putGatewayIdentity('b.example', loadCredentials(pkiRead('gw-b-rsa.crt'), pkiRead('gw-b-rsa.key')));
    assert.equal(store.gatewayIdentity('b.example')?.key.asymmetricKeyType, 'rsa');
    store.putGatewayIdentity('b.example', loadCredentials(pkiRead('gw-b-ec.crt'), pkiRead('gw-b-ec.key')));
    assert.equal(store.gatewayIdentity('b.example')?.key.asymmetricKeyType, 'ec');
    assert.match(store.gatewayIdentity('b.example')?.cert.subject ?? '', /P-256/);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
