import { strict as assert } from 'node:assert';
import { constants, createCipheriv, publicEncrypt, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  algorithm, children, content, encoding, header, integer, octetString, oid, parse, retag, sequence, setOf, Tag, tlv,
  type Asn1Node,
} from '../../../src/asn1/der';
import { OID } from '../../../src/asn1/oids';
import { CmsError, encodeContentInfo } from '../../../src/smime/cms/content-info';
import {
  DecryptionError, envelope, envelopeToBuffer, MAX_PIECE, NoMatchingRecipientError, openEnvelope,
  type ContentCipher, type RsaKeyTransport,
} from '../../../src/smime/cms/enveloped-data';
import { cert, flipped, key, layout, x25519Recipient } from './envelope-fixtures';

const CIPHERS: ContentCipher[] = ['aes-128-cbc', 'aes-256-cbc', 'aes-128-gcm', 'aes-256-gcm'];
const TRANSPORTS: RsaKeyTransport[] = ['rsa-pkcs1', 'rsa-oaep'];
const MESSAGE = Buffer.from('Content-Type: text/plain; charset=utf-8\r\n\r\nGr\u00fc\u00dfe, 8-bit body\r\n', 'utf8');

const isGcm = (c: ContentCipher): boolean => c.endsWith('gcm');

for (const cipher of CIPHERS) {
  for (const rsaKeyTransport of TRANSPORTS) {
    test(`round trip ${cipher} / ${rsaKeyTransport} to RSA, P-256, P-384 and a second RSA recipient`, () => {
      const names = ['gw-b-rsa', 'gw-b-ec', 'user-p384', 'multi-rsa'];
      const der = envelopeToBuffer(MESSAGE, names.map(cert), { cipher, rsaKeyTransport });
      const l = layout(der);
      assert.equal(l.contentType, isGcm(cipher) ? OID.authEnvelopedData : OID.envelopedData);
      assert.equal(l.version, isGcm(cipher) ? 0 : 2, 'kari recipients make EnvelopedData version 2');
      assert.equal(l.recipientInfos.length, names.length, 'one RecipientInfo per certificate');
      assert.equal(l.encryptedContent.buf[l.encryptedContent.start], 0x80, 'encryptedContent is [0] IMPLICIT primitive');
      assert.equal(Boolean(l.mac), isGcm(cipher));
      for (const name of names) {
        const opened = openEnvelope(der, [key(name)]);
        assert.deepEqual(opened.content, MESSAGE);
        assert.equal(opened.contentType, OID.data);
        assert.equal(opened.cipher, cipher);
        assert.equal(opened.authenticated, isGcm(cipher));
        assert.equal(opened.recipient.fingerprint, cert(name).fingerprint);
        const expected = name.endsWith('rsa') ? rsaKeyTransport : name === 'gw-b-ec' ? 'ecdh-p256-sha256kdf' : 'ecdh-p384-sha256kdf';
        assert.equal(opened.keyEncryption, expected);
      }
    });
  }
}

test('RSA-only issuerAndSerialNumber envelopes are version 0 and use rsaEncryption', () => {
  const der = envelopeToBuffer(MESSAGE, [cert('gw-b-rsa'), cert('user-a-rsa')]);
  const l = layout(der);
  assert.equal(l.version, 0);
  for (const ri of l.recipientInfos) assert.ok(encoding(ri).includes(Buffer.from('06092a864886f70d010101', 'hex')));
  assert.equal(openEnvelope(der, [key('user-a-rsa')]).cipher, 'aes-256-cbc', 'the default cipher');
});

test('CBC padding is right at every length around the block size, including an empty body', () => {
  for (const n of [0, 1, 15, 16, 17, 31, 32, 33]) {
    const body = randomBytes(n);
    const der = envelopeToBuffer(body, [cert('gw-b-rsa')], { cipher: 'aes-128-cbc' });
    assert.equal(content(layout(der).encryptedContent).length, (Math.floor(n / 16) + 1) * 16);
    assert.deepEqual(openEnvelope(der, [key('gw-b-rsa')]).content, body);
  }
});

test('subjectKeyIdentifier recipients: [0] rids, version 2, still opened by the right key', () => {
  const der = envelopeToBuffer(MESSAGE, [cert('gw-b-rsa'), cert('gw-b-ec')], { recipientIdentifier: 'subjectKeyIdentifier' });
  const l = layout(der);
  assert.equal(l.version, 2);
  const ktri = children(l.recipientInfos.find((ri) => ri.tag === Tag.SEQUENCE && ri.cls === 0) as Asn1Node);
  assert.equal(ktri[0].buf[ktri[0].contentStart], 2, 'ktri version 2');
  assert.equal(ktri[1].buf[ktri[1].start], 0x80, 'rid is [0] IMPLICIT SubjectKeyIdentifier');
  assert.deepEqual(content(ktri[1]), cert('gw-b-rsa').subjectKeyId);
  assert.deepEqual(openEnvelope(der, [key('gw-b-rsa')]).content, MESSAGE);
  assert.deepEqual(openEnvelope(der, [key('gw-b-ec')]).content, MESSAGE);
});

test('X25519 recipient (RFC 8418) round trip', () => {
  const { key: x } = x25519Recipient();
  for (const cipher of ['aes-128-cbc', 'aes-256-gcm'] as const) {
    const der = envelopeToBuffer(MESSAGE, [x.cert, cert('gw-b-rsa')], { cipher });
    const opened = openEnvelope(der, [x]);
    assert.deepEqual(opened.content, MESSAGE);
    assert.equal(opened.keyEncryption, 'ecdh-x25519-sha256kdf');
  }
});

test('a certificate whose key cannot receive mail is refused by name', () => {
  assert.throws(() => envelopeToBuffer(MESSAGE, [cert('gw-b-rsa'), cert('user-ed25519')]), (e: Error) => {
    assert.ok(e instanceof CmsError);
    assert.match(e.message, /User Ed25519/);
    assert.match(e.message, /ed25519/);
    return true;
  });
  assert.throws(() => envelopeToBuffer(MESSAGE, []), CmsError);
});

test('ciphers that are only read (3DES, AES-192) and unknown options are refused for writing', () => {
  for (const opts of [{ cipher: 'des-ede3-cbc' }, { cipher: 'aes-192-cbc' }, { rsaKeyTransport: 'rsa-raw' }]) {
    assert.throws(() => envelopeToBuffer(MESSAGE, [cert('gw-b-rsa')], opts as object), /unsupported/);
  }
});

test('the right key is found among several, and the recipient is reported', () => {
  const der = envelopeToBuffer(MESSAGE, [cert('multi-rsa'), cert('gw-b-ec')]);
  const opened = openEnvelope(der, [key('user-a-rsa'), key('gw-b-rsa'), key('gw-b-ec')]);
  assert.equal(opened.recipient.fingerprint, cert('gw-b-ec').fingerprint);
});

test('a message for someone else is NoMatchingRecipientError', () => {
  const der = envelopeToBuffer(MESSAGE, [cert('gw-b-rsa'), cert('gw-b-ec')]);
  assert.throws(() => openEnvelope(der, [key('user-a-rsa'), key('user-a-ec')]), NoMatchingRecipientError);
  assert.throws(() => openEnvelope(der, []), NoMatchingRecipientError);
});

/** The message thrown for a message whose ciphertext body was damaged. */
function bodyFailure(cipher: ContentCipher): string {
  // 32 octets: flipping the last octet of the second CBC block turns the final padding octet 0x10 into 0xef.
  const der = envelopeToBuffer(randomBytes(32), [cert('gw-b-rsa')], { cipher });
  const ct = layout(der).encryptedContent;
  const err = captureError(() => openEnvelope(flipped(der, ct.contentStart + 31), [key('gw-b-rsa')]));
  assert.ok(err instanceof DecryptionError, `${cipher}: damaged body gives DecryptionError, got ${err}`);
  return err.message;
}

function captureError(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  assert.fail('expected an exception');
}

/** Damages octet `at` of the first RecipientInfo's encryptedKey. */
function withDamagedKey(der: Buffer, at: number): Buffer {
  const ri = children(layout(der).recipientInfos[0]);
  const encryptedKey = ri[ri.length - 1];
  return flipped(der, encryptedKey.contentStart + at);
}

for (const transport of TRANSPORTS) {
  test(`${transport}: a damaged encrypted key fails exactly like a damaged body (GCM, deterministic)`, () => {
    const expected = bodyFailure('aes-256-gcm');
    const der = envelopeToBuffer(MESSAGE, [cert('gw-b-rsa')], { cipher: 'aes-256-gcm', rsaKeyTransport: transport });
    for (const at of [0, 1, 2, 100, 255]) {
      const err = captureError(() => openEnvelope(withDamagedKey(der, at), [key('gw-b-rsa')]));
      assert.ok(err instanceof DecryptionError, `octet ${at}: ${err}`);
      assert.equal(err.message, expected);
    }
  });

  test(`${transport}: a damaged encrypted key under CBC never yields the plaintext and fails with the same message`, () => {
    const expected = bodyFailure('aes-256-cbc');
    assert.equal(expected, bodyFailure('aes-256-gcm'), 'one message for every cipher');
    const der = envelopeToBuffer(MESSAGE, [cert('gw-b-rsa')], { rsaKeyTransport: transport });
    // A random CEK passes the CBC padding check about once in 256 tries (RFC 3218 accepts that), so
    // require failures, not a failure every time, and never the real plaintext.
    let failures = 0;
    for (const at of [0, 1, 2, 3, 50, 100, 200, 255]) {
      try {
        assert.notDeepEqual(openEnvelope(withDamagedKey(der, at), [key('gw-b-rsa')]).content, MESSAGE);
      } catch (e) {
        assert.ok(e instanceof DecryptionError);
        assert.equal(e.message, expected);
        failures++;
      }
    }
    assert.ok(failures >= 6, `only ${failures} of 8 damaged keys were rejected`);
  });
}

test('ECDH: a damaged wrapped key or ephemeral point fails like a damaged body', () => {
  const expected = bodyFailure('aes-128-gcm');
  const der = envelopeToBuffer(MESSAGE, [cert('gw-b-ec')], { cipher: 'aes-128-gcm' });
  const kari = children(layout(der).recipientInfos[0]);
  const rek = children(children(kari[kari.length - 1])[0]);
  const wrapped = rek[1];
  const point = children(children(kari[1])[0])[1];
  for (const offset of [wrapped.contentStart + 3, point.contentEnd - 1]) {
    const err = captureError(() => openEnvelope(flipped(der, offset), [key('gw-b-ec')]));
    assert.ok(err instanceof DecryptionError, String(err));
    assert.equal(err.message, expected);
  }
});

test('the certificate matches but the private key is another one: DecryptionError', () => {
  const der = envelopeToBuffer(MESSAGE, [cert('gw-b-rsa')], { cipher: 'aes-256-gcm' });
  assert.throws(() => openEnvelope(der, [{ key: key('user-a-rsa').key, cert: cert('gw-b-rsa') }]), DecryptionError);
});

test('GCM: a flipped tag, ciphertext or IV octet gives DecryptionError and no plaintext', () => {
  for (const cipher of ['aes-128-gcm', 'aes-256-gcm'] as const) {
    const der = envelopeToBuffer(MESSAGE, [cert('gw-b-rsa')], { cipher });
    const l = layout(der);
    const offsets = [l.mac!.contentStart, l.mac!.contentEnd - 1, l.encryptedContent.contentStart, l.encryptedContent.contentEnd - 1];
    for (const offset of offsets) {
      let opened: unknown;
      const err = captureError(() => {
        opened = openEnvelope(flipped(der, offset), [key('gw-b-rsa')]);
      });
      assert.ok(err instanceof DecryptionError, `offset ${offset}: ${err}`);
      assert.equal(opened, undefined);
    }
  }
});

test('GCM with a truncated tag is refused', () => {
  const der = envelopeToBuffer(MESSAGE, [cert('gw-b-rsa')], { cipher: 'aes-256-gcm' });
  const mac = layout(der).mac!;
  // Same structure with a 15-octet mac: shrink the mac and every enclosing length by one.
  const shorter = rebuild(der, (n, kids) => (n.tag === Tag.OCTET_STRING && n.start === mac.start ? encodeNode(0x04, [content(n).subarray(1)]) : kids()));
  assert.throws(() => openEnvelope(shorter, [key('gw-b-rsa')]), DecryptionError);
});

test('truncated DER at every length is a CmsError, never another exception', () => {
  const der = envelopeToBuffer(Buffer.from('short body'), [cert('gw-b-rsa'), cert('gw-b-ec')], { cipher: 'aes-128-gcm' });
  for (let n = 0; n < der.length; n++) {
    const err = captureError(() => openEnvelope(der.subarray(0, n), [key('gw-b-rsa')]));
    assert.ok(err instanceof CmsError, `length ${n}: ${err}`);
  }
});

test('absurd declared lengths and wrong content types are clean CmsErrors', () => {
  const absurd = Buffer.concat([Buffer.from([0x30, 0x86, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Buffer.alloc(32)]);
  assert.throws(() => openEnvelope(absurd, [key('gw-b-rsa')]), CmsError);
  const der = envelopeToBuffer(MESSAGE, [cert('gw-b-rsa')]);
  const ct = layout(der).encryptedContent;
  // encryptedContent claiming a gigabyte
  const lying = Buffer.concat([der.subarray(0, ct.start), header(0x80, 2 ** 30), der.subarray(ct.contentStart)]);
  assert.throws(() => openEnvelope(lying, [key('gw-b-rsa')]), CmsError);
  const dataInfo = Buffer.from('3011' + '06092a864886f70d010701' + 'a0040402' + '6869', 'hex');
  assert.throws(() => openEnvelope(dataInfo, [key('gw-b-rsa')]), /not an enveloped message/);
  assert.throws(() => openEnvelope(Buffer.alloc(0), [key('gw-b-rsa')]), CmsError);
});

test('AES-GCM inside EnvelopedData (pkijs style) is refused, not decrypted unauthenticated', () => {
  const der = envelopeToBuffer(MESSAGE, [cert('gw-b-rsa')], { cipher: 'aes-256-gcm' });
  // Relabel AuthEnvelopedData as EnvelopedData, dropping the mac.
  const mac = layout(der).mac!;
  const relabelled = rebuild(der, (n, kids) => {
    if (n.tag === Tag.OID && n.depth === 1) return Buffer.from('06092a864886f70d010703', 'hex');
    if (n.start === mac.start) return Buffer.alloc(0);
    return kids();
  });
  assert.throws(() => openEnvelope(relabelled, [key('gw-b-rsa')]), /aes-256-gcm is not allowed in EnvelopedData/);
});

/** AuthEnvelopedData with authAttrs, assembled by hand (openssl never writes them). */
function authEnvelopedWithAttrs(body: Buffer, attrs: Buffer[], aadAttrs = attrs): Buffer {
  const cek = randomBytes(16);
  const nonce = randomBytes(12);
  const gcm = createCipheriv('aes-128-gcm', cek, nonce);
  gcm.setAAD(setOf(...aadAttrs));
  const ct = Buffer.concat([gcm.update(body), gcm.final()]);
  const recipient = cert('gw-b-rsa');
  const ktri = sequence(
    integer(0), sequence(recipient.issuerDer, tlv(0x02, recipient.serial)), algorithm(OID.rsaesOaep, sequence()),
    octetString(publicEncrypt({ key: recipient.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING }, cek)),
  );
  const eci = sequence(oid(OID.data), algorithm(OID.aes128Gcm, sequence(octetString(nonce))), tlv(0x80, ct));
  const authAttrs = retag(setOf(...attrs), 0xa1);
  return encodeContentInfo(OID.authEnvelopedData, sequence(integer(0), setOf(ktri), eci, authAttrs, octetString(gcm.getAuthTag().subarray(0, 12))));
}

test('AuthEnvelopedData authAttrs are authenticated as a DER SET (RFC 5083), with the default 12-octet tag', () => {
  const attr = sequence(oid(OID.contentType), setOf(oid(OID.data)));
  const other = sequence(oid(OID.signingTime), setOf(Buffer.from('170d3234303130313030303030305a', 'hex')));
  const opened = openEnvelope(authEnvelopedWithAttrs(MESSAGE, [attr, other]), [key('gw-b-rsa')]);
  assert.deepEqual(opened.content, MESSAGE);
  assert.equal(opened.keyEncryption, 'rsa-oaep-sha1');
  // Attributes that differ from what the tag covered must fail.
  assert.throws(() => openEnvelope(authEnvelopedWithAttrs(MESSAGE, [attr, other], [attr]), [key('gw-b-rsa')]), DecryptionError);
});

// ---------------------------------------------------------------------------
// BER input

type Visitor = (n: Asn1Node, reencode: () => Buffer) => Buffer;

/** Re-encodes a DER tree bottom-up; `visit` may replace any node or call `reencode` for the default. */
function rebuild(der: Buffer, visit: Visitor): Buffer {
  const walk = (n: Asn1Node): Buffer =>
    visit(n, () => (n.constructed ? encodeNode(n.buf[n.start], children(n).map(walk)) : Buffer.from(encoding(n))));
  return walk(parse(der));
}

function encodeNode(id: number, parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([header(id, body.length), body]);
}

const indefinite = (id: number, parts: Buffer[]): Buffer => Buffer.concat([Buffer.from([id, 0x80]), ...parts, Buffer.alloc(2)]);

/** BER the way NSS and gpgsm write it: indefinite lengths everywhere, encryptedContent in chunks. */
function toBer(der: Buffer, chunk: number): Buffer {
  const ct = layout(der).encryptedContent;
  const walk = (n: Asn1Node): Buffer => {
    if (n.start === ct.start) {
      const c = content(n);
      const pieces: Buffer[] = [];
      for (let off = 0; off < c.length; off += chunk) pieces.push(encodeNode(0x04, [c.subarray(off, off + chunk)]));
      return indefinite(0xa0, pieces);
    }
    return n.constructed ? indefinite(n.buf[n.start], children(n).map(walk)) : Buffer.from(encoding(n));
  };
  return walk(parse(der));
}

test('BER input: indefinite lengths (also inside RecipientInfos) and chunked encryptedContent decrypt', () => {
  const body = randomBytes(5000);
  for (const cipher of ['aes-256-cbc', 'aes-128-gcm'] as const) {
    const der = envelopeToBuffer(body, [cert('gw-b-rsa'), cert('gw-b-ec')], { cipher });
    for (const chunk of [1000, 1024, 7]) {
      const ber = toBer(der, chunk);
      assert.ok(parse(ber).indefinite);
      for (const name of ['gw-b-rsa', 'gw-b-ec']) {
        assert.deepEqual(openEnvelope(ber, [key(name)]).content, body, `${cipher} for ${name} in ${chunk}-octet chunks`);
      }
    }
  }
});

// ---------------------------------------------------------------------------
// Streaming

test('envelope() streams 20 MB in bounded pieces that concatenate to a decryptable message', () => {
  const total = 20 * 1024 * 1024;
  const chunk = 64 * 1024;
  const source = randomBytes(chunk);
  function* chunks(): Generator<Buffer> {
    for (let off = 0; off < total; off += chunk) {
      const c = Buffer.from(source);
      c.writeUInt32BE(off, 0); // every chunk distinct, so reordering would show
      yield c;
    }
  }
  for (const cipher of ['aes-256-cbc', 'aes-256-gcm'] as const) {
    const pieces = [...envelope(chunks(), total, [cert('gw-b-rsa'), cert('gw-b-ec')], { cipher })];
    assert.ok(pieces.length >= total / chunk, `${pieces.length} pieces`);
    const largest = Math.max(...pieces.map((p) => p.length));
    assert.ok(largest <= MAX_PIECE + 64, `largest piece ${largest}`);
    const opened = openEnvelope(Buffer.concat(pieces), [key('gw-b-ec')]);
    assert.equal(opened.content.length, total);
    assert.deepEqual(Buffer.concat([...chunks()]), opened.content);
  }
});

test('one huge input chunk is still yielded in bounded pieces', () => {
  const big = randomBytes(1024 * 1024);
  const pieces = [...envelope([big], big.length, [cert('gw-b-rsa')])];
  assert.ok(Math.max(...pieces.map((p) => p.length)) <= MAX_PIECE + 64);
  assert.deepEqual(openEnvelope(Buffer.concat(pieces), [key('gw-b-rsa')]).content, big);
});

test('a plaintext that does not match its declared length is an error, not a corrupt message', () => {
  assert.throws(() => [...envelope([Buffer.alloc(10)], 11, [cert('gw-b-rsa')])], /10 octets, 11 were declared/);
  assert.throws(() => [...envelope([Buffer.alloc(10), Buffer.alloc(10)], 15, [cert('gw-b-rsa')])], /longer than the declared 15/);
  assert.throws(() => [...envelope([], -1, [cert('gw-b-rsa')])], CmsError);
});
