/**
 * Interop with OpenSSL 3 `openssl cms` (S/MIME mode), both directions: every algorithm openssl
 * supports (RSA v1.5 SHA-256/384/512, RSASSA-PSS, ECDSA P-256/P-384; AES-CBC and AES-GCM,
 * RSA v1.5 / OAEP key transport, ECDH key agreement). The whole message corpus runs through the
 * default paths; the algorithm variants use one message with 8-bit content.
 *
 * Ed25519 is not here: OpenSSL 3.0 can neither sign nor verify Ed25519 CMS ("no default
 * digest" / "eddsa_digest_signverify_init: invalid digest"); see ed25519.test.ts.
 */
import { strict as assert } from 'node:assert';
import { after, describe, test } from 'node:test';
import * as cli from './cstp';
import {
  assert7bitSafe,
  assertCrlf,
  assertEncryptOptionsApplied,
  assertLayerHeaders,
  assertNoPlaintext,
  assertOuterHeaders,
  assertRestored,
  assertSameContent,
  assertSignOptionsApplied,
  assertSmimeKind,
} from './compare';
import { TestMessage, corpus, message } from './messages';
import { prependHeaders, splitSigned, toLf } from './mime-der';
import { OpensslEncryptOptions, OpensslSignOptions, Workdir, crt, describeRun, openssl, skipUnless } from './peers';

const skip = skipUnless('openssl');
const work = new Workdir('openssl');
after(() => work.remove());

const MICALG = { sha256: 'sha-256', sha384: 'sha-384', sha512: 'sha-512' } as const;

/** The representative message for algorithm variants: 8-bit UTF-8, so re-encoding matters. */
const variantMessage = (from?: string): TestMessage => message('eightbit', from);

function assertOpensslOk(r: { rc: number; stderr: string }, what: string): void {
  assert.equal(r.rc, 0, describeRun(what, { ...r, stdout: Buffer.alloc(0) }));
}

// ---------------------------------------------------------------------------------------------
// Flows

/** cstp signs; openssl verifies it; what openssl verified is the content that went in. */
async function cstpSignOpensslVerify(msg: TestMessage, o: cli.SignOptions): Promise<void> {
  const what = `cstp sign ${JSON.stringify(o)} of "${msg.name}"`;
  const signed = cli.ok(await cli.sign(msg.full, o), what);
  assertCrlf(signed, what);
  assertOuterHeaders(signed, msg, what);
  const v = await openssl.verify(signed);
  assertOpensslOk(v, `openssl cms -verify of ${what}`);
  assertSignOptionsApplied(await openssl.print(signed), o, what);
  if (o.opaque) {
    assertSmimeKind(signed, 'signed-data', what);
    assertSameContent(v.stdout, msg.entity, `${what}: content openssl extracted`);
    return;
  }
  assertSmimeKind(signed, 'multipart/signed', what);
  const parts = splitSigned(signed);
  assert.equal(parts.micalg?.toLowerCase(), MICALG[o.digest ?? 'sha256'], `${what}: micalg`);
  assert7bitSafe(parts.content, `${what}: signed entity`);
  assert.ok(v.stdout.equals(parts.content), `${what}: openssl verified other bytes than our first part`);
  assertSameContent(parts.content, msg.entity, `${what}: signed content`);
}

/**
 * openssl signs (as a mail client would, outer headers added); cstp verify accepts and restores.
 * With alsoUntrusted, the same message must fail when only other-ca is trusted.
 */
async function opensslSignCstpVerify(msg: TestMessage, o: OpensslSignOptions, alsoUntrusted = false): Promise<void> {
  const s = await openssl.sign(msg.entity, o);
  assertOpensslOk(s, `openssl cms -sign ${JSON.stringify(o)}`);
  const signed = prependHeaders(msg.outer, s.stdout);
  const what = `cstp verify of openssl ${o.detached ? 'detached' : 'opaque'} ${JSON.stringify(o)} "${msg.name}"`;
  const v = await cli.verify(work, signed);
  cli.ok(v, what);
  assert.match(v.stderr, /trusted/i, `${what}: report on stderr`);
  assertRestored(v.content, msg, what);
  if (alsoUntrusted) cli.refused(await cli.verify(work, signed, ['other-ca']), `${what} --trust other-ca`);
}

/** cstp encrypts; openssl decrypts (as `decryptAs`) and gets the content back. */
async function cstpEncryptOpensslDecrypt(msg: TestMessage, recipients: string[], o: cli.EncryptOptions = {}, decryptAs = recipients): Promise<void> {
  const what = `cstp encrypt ${JSON.stringify(o)} to ${recipients.join(',')} of "${msg.name}"`;
  const enc = cli.ok(await cli.encrypt(msg.full, recipients, o), what);
  assertCrlf(enc, what);
  assertOuterHeaders(enc, msg, what);
  assertSmimeKind(enc, o.cipher?.endsWith('gcm') ? 'authEnveloped-data' : 'enveloped-data', what);
  assertNoPlaintext(enc, msg, what);
  assertEncryptOptionsApplied(await openssl.print(enc), recipients, o, what);
  for (const recipient of decryptAs) {
    const d = await openssl.decrypt(enc, recipient);
    assertOpensslOk(d, `openssl cms -decrypt as ${recipient} of ${what}`);
    assertSameContent(d.stdout, msg.entity, `${what}: content openssl decrypted as ${recipient}`);
  }
}

/** openssl encrypts (outer headers added); cstp decrypt restores the whole message. */
async function opensslEncryptCstpDecrypt(msg: TestMessage, recipients: string[], o: OpensslEncryptOptions, keySource: cli.KeySource): Promise<void> {
  const e = await openssl.encrypt(msg.entity, recipients, o);
  assertOpensslOk(e, `openssl cms -encrypt ${JSON.stringify(o)}`);
  let enc = prependHeaders(msg.outer, e.stdout);
  if (o.crlf === false) enc = toLf(enc); // a message from a local LF mailbox
  const what = `cstp decrypt (${JSON.stringify(keySource)}) of openssl ${JSON.stringify(o)} "${msg.name}"`;
  const out = cli.ok(await cli.decrypt(work, enc, keySource), what);
  assertRestored(out, msg, what);
}

// ---------------------------------------------------------------------------------------------
// The whole corpus through the default paths

describe('openssl: whole corpus, default algorithms', { skip }, () => {
  for (const msg of corpus()) {
    test(`cstp sign (detached) -> openssl verify: ${msg.name}`, () => cstpSignOpensslVerify(msg, { signer: 'user-a-rsa' }));
    test(`cstp sign --opaque -> openssl verify: ${msg.name}`, () => cstpSignOpensslVerify(msg, { signer: 'user-a-rsa', opaque: true }));
    // The untrusted-anchor check once per form is enough: trust does not depend on the content.
    const alsoUntrusted = msg.name === 'plain';
    test(`openssl sign (detached) -> cstp verify: ${msg.name}`, () => opensslSignCstpVerify(msg, { signer: 'user-a-rsa', detached: true }, alsoUntrusted));
    test(`openssl sign (opaque) -> cstp verify: ${msg.name}`, () => opensslSignCstpVerify(msg, { signer: 'user-a-rsa', detached: false }, alsoUntrusted));
    test(`cstp encrypt -> openssl decrypt: ${msg.name}`, () => cstpEncryptOpensslDecrypt(msg, ['gw-b-rsa']));
    test(`openssl encrypt (aes-256-cbc) -> cstp decrypt: ${msg.name}`, () => opensslEncryptCstpDecrypt(msg, ['gw-b-rsa'], {}, { pem: 'gw-b-rsa' }));

    test(`cstp sign | cstp encrypt -> openssl decrypt, openssl verify: ${msg.name}`, async () => {
      const signed = cli.ok(await cli.sign(msg.full, { signer: 'user-a-rsa' }), 'sign');
      const enc = cli.ok(await cli.encrypt(signed, ['gw-b-rsa']), 'encrypt of signed');
      assertOuterHeaders(enc, msg, 'sign|encrypt');
      assertSmimeKind(enc, 'enveloped-data', 'sign|encrypt');
      const d = await openssl.decrypt(enc, 'gw-b-rsa');
      assertOpensslOk(d, 'openssl cms -decrypt');
      assertSmimeKind(d.stdout, 'multipart/signed', 'decrypted inner entity');
      const v = await openssl.verify(d.stdout);
      assertOpensslOk(v, 'openssl cms -verify of the decrypted entity');
      assertSameContent(v.stdout, msg.entity, 'content after decrypt+verify');
    });

    test(`openssl sign + encrypt -> cstp unwrap: ${msg.name}`, async () => {
      const s = await openssl.sign(msg.entity, { signer: 'user-a-rsa', detached: true });
      assertOpensslOk(s, 'openssl sign');
      const e = await openssl.encrypt(s.stdout, ['gw-b-rsa']);
      assertOpensslOk(e, 'openssl encrypt');
      const out = cli.ok(await cli.unwrap(work, prependHeaders(msg.outer, e.stdout), [{ pem: 'gw-b-rsa' }]), 'unwrap');
      assertRestored(out, msg, 'unwrap');
      assertLayerHeaders(out, msg, ['encrypted', 'signed'], 'unwrap');
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Signature algorithms

describe('openssl: signature algorithms', { skip }, () => {
  const variants: Array<{ label: string; from?: string; cstp: cli.SignOptions; peer: Omit<OpensslSignOptions, 'detached'> }> = [
    { label: 'RSA SHA-384', cstp: { signer: 'user-a-rsa', digest: 'sha384' }, peer: { signer: 'user-a-rsa', md: 'sha384' } },
    { label: 'RSA SHA-512', cstp: { signer: 'user-a-rsa', digest: 'sha512' }, peer: { signer: 'user-a-rsa', md: 'sha512' } },
    { label: 'RSASSA-PSS', cstp: { signer: 'user-a-rsa', pss: true }, peer: { signer: 'user-a-rsa', pss: true } },
    { label: 'ECDSA P-256', cstp: { signer: 'user-a-ec' }, peer: { signer: 'user-a-ec' } },
    { label: 'ECDSA P-384 SHA-384', from: 'p384@a.example', cstp: { signer: 'user-p384', digest: 'sha384' }, peer: { signer: 'user-p384', md: 'sha384' } },
    {
      label: 'RSA via intermediate CA (chain included)',
      from: 'inter@a.example',
      cstp: { signer: 'user-inter', chain: crt('inter') },
      peer: { signer: 'user-inter', certfile: crt('inter') },
    },
  ];
  for (const v of variants) {
    for (const opaque of [false, true]) {
      const form = opaque ? 'opaque' : 'detached';
      test(`cstp sign ${v.label} (${form}) -> openssl verify`, () => cstpSignOpensslVerify(variantMessage(v.from), { ...v.cstp, opaque }));
      test(`openssl sign ${v.label} (${form}) -> cstp verify, and not with other-ca`, () =>
        opensslSignCstpVerify(variantMessage(v.from), { ...v.peer, detached: !opaque }, true));
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Encryption algorithms

describe('openssl: encryption algorithms', { skip }, () => {
  const msg = variantMessage();
  test('cstp encrypt --cipher aes-128-cbc -> openssl decrypt', () => cstpEncryptOpensslDecrypt(msg, ['gw-b-rsa'], { cipher: 'aes-128-cbc' }));
  test('cstp encrypt --cipher aes-256-gcm (AuthEnvelopedData) -> openssl decrypt', () => cstpEncryptOpensslDecrypt(msg, ['gw-b-rsa'], { cipher: 'aes-256-gcm' }));
  test('cstp encrypt --cipher aes-128-gcm (AuthEnvelopedData) -> openssl decrypt', () => cstpEncryptOpensslDecrypt(msg, ['gw-b-rsa'], { cipher: 'aes-128-gcm' }));
  test('cstp encrypt --oaep -> openssl decrypt', () => cstpEncryptOpensslDecrypt(msg, ['gw-b-rsa'], { oaep: true }));
  test('cstp encrypt --oaep --cipher aes-256-gcm -> openssl decrypt', () => cstpEncryptOpensslDecrypt(msg, ['gw-b-rsa'], { oaep: true, cipher: 'aes-256-gcm' }));
  test('cstp encrypt to an EC recipient (ECDH) -> openssl decrypt', () => cstpEncryptOpensslDecrypt(msg, ['gw-b-ec']));
  test('cstp encrypt to an EC recipient (ECDH) --cipher aes-128-gcm -> openssl decrypt', () => cstpEncryptOpensslDecrypt(msg, ['gw-b-ec'], { cipher: 'aes-128-gcm' }));
  test('cstp encrypt to RSA + EC + RSA recipients -> each decrypts with openssl', () =>
    cstpEncryptOpensslDecrypt(msg, ['gw-b-rsa', 'gw-b-ec', 'user-a-rsa'], {}, ['gw-b-rsa', 'gw-b-ec', 'user-a-rsa']));

  test('openssl encrypt aes-128-cbc -> cstp decrypt', () => opensslEncryptCstpDecrypt(msg, ['gw-b-rsa'], { cipher: 'aes-128-cbc' }, { pem: 'gw-b-rsa' }));
  test('openssl encrypt aes-256-gcm -> cstp decrypt', () => opensslEncryptCstpDecrypt(msg, ['gw-b-rsa'], { cipher: 'aes-256-gcm' }, { pem: 'gw-b-rsa' }));
  test('openssl encrypt aes-128-gcm -> cstp decrypt', () => opensslEncryptCstpDecrypt(msg, ['gw-b-rsa'], { cipher: 'aes-128-gcm' }, { pem: 'gw-b-rsa' }));
  test('openssl encrypt RSA-OAEP-SHA256 -> cstp decrypt', () => opensslEncryptCstpDecrypt(msg, ['gw-b-rsa'], { oaep: true }, { pem: 'gw-b-rsa' }));
  test('openssl encrypt ECDH (aes-128-cbc) -> cstp decrypt', () => opensslEncryptCstpDecrypt(msg, ['gw-b-ec'], { cipher: 'aes-128-cbc' }, { pem: 'gw-b-ec' }));
  test('openssl encrypt ECDH (aes-256-gcm) -> cstp decrypt', () => opensslEncryptCstpDecrypt(msg, ['gw-b-ec'], { cipher: 'aes-256-gcm' }, { pem: 'gw-b-ec' }));
  test('openssl encrypt to two recipients, we are the second -> cstp decrypt', () =>
    opensslEncryptCstpDecrypt(msg, ['user-a-rsa', 'gw-b-rsa'], {}, { pem: 'gw-b-rsa' }));
  test('openssl encrypt, message with bare LF line endings -> cstp decrypt (output CRLF)', () =>
    opensslEncryptCstpDecrypt(msg, ['gw-b-rsa'], { crlf: false }, { pem: 'gw-b-rsa' }));
  test('openssl encrypt -> cstp decrypt --key .p12 (OpenSSL 3 default) --pass-env', () =>
    opensslEncryptCstpDecrypt(msg, ['gw-b-rsa'], {}, { p12: 'gw-b-rsa', via: 'env' }));
  test('openssl encrypt -> cstp decrypt --cert C.crt --key C.p12 --pass-env (the issue\'s literal form)', () =>
    opensslEncryptCstpDecrypt(msg, ['gw-b-rsa'], {}, { p12: 'gw-b-rsa', via: 'env', withCert: true }));
  test('openssl encrypt -> cstp decrypt --key .3des.p12 (legacy) --pass-file', () =>
    opensslEncryptCstpDecrypt(msg, ['gw-b-rsa'], {}, { p12: 'gw-b-rsa', legacy: true, via: 'file' }));
  test('openssl encrypt ECDH -> cstp decrypt --key EC .p12 --pass-env', () =>
    opensslEncryptCstpDecrypt(msg, ['gw-b-ec'], { cipher: 'aes-128-cbc' }, { p12: 'gw-b-ec', via: 'env' }));
});

// ---------------------------------------------------------------------------------------------
// Nested layers

describe('openssl: nested layers', { skip }, () => {
  test('openssl sign, encrypt (GCM), sign again (opaque, ECDSA) -> cstp unwrap opens all three', async () => {
    const msg = message('nested');
    const inner = await openssl.sign(msg.entity, { signer: 'user-a-rsa', detached: true });
    assertOpensslOk(inner, 'inner sign');
    const enc = await openssl.encrypt(inner.stdout, ['gw-b-rsa'], { cipher: 'aes-256-gcm' });
    assertOpensslOk(enc, 'encrypt');
    const outer = await openssl.sign(enc.stdout, { signer: 'user-a-ec', detached: false });
    assertOpensslOk(outer, 'outer sign');
    const out = cli.ok(await cli.unwrap(work, prependHeaders(msg.outer, outer.stdout), [{ pem: 'gw-b-rsa' }]), 'unwrap');
    assertRestored(out, msg, 'unwrap of signed(encrypted(signed))');
    assertLayerHeaders(out, msg, ['signed', 'encrypted', 'signed'], 'unwrap of signed(encrypted(signed))');
  });

  test('openssl opaque sign + OAEP encrypt -> cstp unwrap with a .p12 key', async () => {
    const msg = message('i18n');
    const s = await openssl.sign(msg.entity, { signer: 'user-a-rsa', detached: false, md: 'sha512' });
    assertOpensslOk(s, 'sign');
    const e = await openssl.encrypt(s.stdout, ['gw-b-rsa'], { oaep: true });
    assertOpensslOk(e, 'encrypt');
    const out = cli.ok(await cli.unwrap(work, prependHeaders(msg.outer, e.stdout), [{ p12: 'gw-b-rsa', via: 'env' }]), 'unwrap');
    assertRestored(out, msg, 'unwrap');
    assertLayerHeaders(out, msg, ['encrypted', 'signed'], 'unwrap');
  });
});

// ---------------------------------------------------------------------------------------------
// Refusals: cstp must not accept what openssl (rightly) rejects

describe('openssl: trust and refusal', { skip }, () => {
  test('openssl-signed mail, trust only other-ca -> cstp verify exits non-zero (openssl agrees)', async () => {
    const msg = message('plain');
    const s = await openssl.sign(msg.entity, { signer: 'user-a-rsa', detached: true });
    assertOpensslOk(s, 'sign');
    const signed = prependHeaders(msg.outer, s.stdout);
    assert.notEqual((await openssl.verify(signed, crt('other-ca'))).rc, 0, 'peer baseline: openssl rejects');
    cli.refused(await cli.verify(work, signed, ['other-ca']), 'verify --trust other-ca');
    cli.ok(await cli.verify(work, signed, ['other-ca', 'ca']), 'verify --trust other-ca --trust ca');
  });

  // openssl does not compare From with the certificate; cstp must (RFC 8550 3): a good signature
  // by someone else's certificate is not a signature of the sender.
  test('openssl-signed by user-a-rsa but From another address -> cstp verify exits non-zero', async () => {
    const msg = message('plain', 'multi@a.example');
    const s = await openssl.sign(msg.entity, { signer: 'user-a-rsa', detached: true });
    assertOpensslOk(s, 'sign');
    const signed = prependHeaders(msg.outer, s.stdout);
    assertOpensslOk(await openssl.verify(signed), 'peer baseline: openssl accepts (it ignores From)');
    cli.refused(await cli.verify(work, signed), 'verify with a From address not in the certificate');
  });

  test('openssl-signed by multi-rsa, From its second address -> cstp verify accepts', async () => {
    // The certificate lists email:alias@A.Example: the domain compares case-insensitively.
    await opensslSignCstpVerify(message('plain', 'alias@a.example'), { signer: 'multi-rsa', detached: true });
  });

  test('openssl-signed mail with one changed body byte -> cstp verify exits non-zero', async () => {
    const msg = message('plain');
    const s = await openssl.sign(msg.entity, { signer: 'user-a-rsa', detached: true });
    assertOpensslOk(s, 'sign');
    const signed = prependHeaders(msg.outer, s.stdout);
    const tampered = Buffer.from(signed.toString('latin1').replace('plain 7-bit test', 'plain 7-bit tesT'), 'latin1');
    assert.ok(!tampered.equals(signed));
    cli.refused(await cli.verify(work, tampered, ['ca']), 'verify of tampered content');
  });

  test('openssl encrypt to gw-b-rsa -> cstp decrypt with another key exits non-zero', async () => {
    const msg = message('plain');
    const e = await openssl.encrypt(msg.entity, ['gw-b-rsa']);
    assertOpensslOk(e, 'encrypt');
    cli.refused(await cli.decrypt(work, prependHeaders(msg.outer, e.stdout), { pem: 'user-a-rsa' }), 'decrypt with the wrong key');
  });

  test('bad-noeku (EKU clientAuth only): openssl rejects its signatures, so does cstp', async () => {
    const msg = message('plain', 'bad@a.example');
    // Peer baseline: openssl enforces the S/MIME signing purpose ("unsuitable certificate purpose").
    const s = await openssl.sign(msg.entity, { signer: 'bad-noeku', detached: true });
    assertOpensslOk(s, 'openssl sign with bad-noeku');
    const peerSigned = prependHeaders(msg.outer, s.stdout);
    assert.notEqual((await openssl.verify(peerSigned)).rc, 0, 'peer baseline: openssl rejects bad-noeku');
    cli.refused(await cli.verify(work, peerSigned), 'verify of a bad-noeku signature made by openssl');

    // cstp may refuse to sign with it at all; if it does sign, nobody may accept the result.
    const ours = await cli.sign(msg.full, { signer: 'bad-noeku' });
    if (ours.rc !== 0) {
      cli.refused(ours, 'sign with bad-noeku');
      return;
    }
    assert.notEqual((await openssl.verify(ours.stdout)).rc, 0, 'openssl must reject cstp signature by bad-noeku');
    cli.refused(await cli.verify(work, ours.stdout), 'verify of a bad-noeku signature made by cstp');
  });
});
