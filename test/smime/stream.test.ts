/**
 * src/smime/stream: a message spooled line by line as SMTP delivers it (dot-stuffed, any line ends) and wrapped
 * from disk gives what the in-memory engine gives for the same message: signatures that verify over the same
 * content, envelopes that open to it, the unaltered copy without status header fields.
 */
import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { decryptMessage, verifyMessage } from '../../src/smime/message';
import { BodySpool, READ_PIECE, type SpooledMessage } from '../../src/smime/stream/spool';
import {
  digestEntity, encryptSpooled, signAndEncryptSpooled, signSpooled, spooledEntity, unalteredSpooled,
} from '../../src/smime/stream/wrap';
import { paperCert, paperKey } from '../policy/paper-pki';

const dir = mkdtempSync(join(tmpdir(), 'cstp-stream-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

const amd = { key: paperKey('gw-amd'), cert: paperCert('gw-amd'), chain: [] };
const intel = { key: paperKey('gw-intel'), cert: paperCert('gw-intel') };
const trust = { anchors: [paperCert('gw-amd')], isDomainSigner: () => true };

/** Spools `wire` (the SMTP data lines, dot-stuffed) behind `head`. */
function spool(head: string, wire: string): SpooledMessage {
  const body = new BodySpool(join(dir, `m${n++}.body`));
  for (const line of wire.split(/(?<=\n)/)) if (line) body.line(Buffer.from(line, 'latin1'));
  return body.finish(Buffer.from(head));
}

const all = (chunks: Iterable<Buffer>): Buffer => Buffer.concat([...chunks]);
const HEAD = 'From: juro@amd\r\nTo: juro@intel\r\nX-Cstp-Security: forged\r\nSubject: s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n';

test('the body is unstuffed and made canonical as it is spooled; reads cross piece boundaries', () => {
  const long = `${'x'.repeat(READ_PIECE)}\n`;
  const m = spool('Subject: t\r\n\r\n', `..leading dot\r\nbare lf\nbare cr\rend\r\n${long}.\r\n`);
  const expected = `Subject: t\r\n\r\n.leading dot\r\nbare lf\r\nbare cr\r\nend\r\n${'x'.repeat(READ_PIECE)}\r\n.\r\n`;
  assert.equal(m.readAll().toString('latin1'), expected);
  assert.equal(m.length, expected.length);
  assert.equal(all(m.read(5, READ_PIECE + 20)).toString('latin1'), expected.slice(5, READ_PIECE + 20));
  assert.equal(all(m.read(0, m.length, true)).length, m.length);
  m.dispose();
  assert.ok(!existsSync(m.path!));
});

test('sign, encrypt, sign+encrypt from disk: the engine verifies and decrypts them to the spooled content', async () => {
  const text = 'Hello from disk.\r\n'.repeat(20_000);
  const m = spool(HEAD, text);
  const e = spooledEntity(m)!;
  const d = await digestEntity(e, ['sha256']);
  assert.ok(d.sevenBit);

  const signed = all(signSpooled(e, d, amd).chunks());
  const v = verifyMessage(signed, trust);
  assert.equal(v.verdict, 'good-trusted', v.reason);
  assert.ok(v.message.includes(text));

  const enc = encryptSpooled(e, [intel.cert], { cipher: 'aes-256-gcm', rsaKeyTransport: 'rsa-oaep' });
  const opened = decryptMessage(all(enc.chunks()), [intel]);
  assert.ok(opened.message.toString().endsWith(text));
  assert.match(opened.message.toString(), /^From: juro@amd\r\n/);

  const both = signAndEncryptSpooled(e, d, amd, [intel.cert]);
  // Each call encrypts anew (a fresh key), and both open and verify.
  for (const wire of [all(both.chunks()), all(both.chunks())]) {
    const inner = decryptMessage(wire, [intel]).message;
    const verified = verifyMessage(inner, trust);
    assert.equal(verified.verdict, 'good-trusted', verified.reason);
    assert.ok(verified.message.includes(text));
  }
  m.dispose();
});

test('8-bit content is reported, so the gateway signs it in memory (make7bit) instead', async () => {
  const m = spool(HEAD, 'caf\xe9\r\n');
  const d = await digestEntity(spooledEntity(m)!, ['sha256']);
  assert.equal(d.sevenBit, false);
  assert.throws(() => signSpooled(spooledEntity(m)!, d, amd), /7-bit/);
  const long = spool(HEAD, `${'a'.repeat(999)}\r\n`);
  assert.equal((await digestEntity(spooledEntity(long)!, ['sha256'])).sevenBit, false);
  m.dispose();
  long.dispose();
});

test('unaltered: status header fields removed, the rest byte for byte; S/MIME at the top is not streamed', () => {
  const m = spool(HEAD, 'body\r\n');
  assert.equal(all(unalteredSpooled(spooledEntity(m)!).chunks()).toString(), HEAD.replace('X-Cstp-Security: forged\r\n', '') + 'body\r\n');
  const smime = spool('Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\n', 'MIAGCSqGSIb3DQEHA6CAMIAC\r\n');
  assert.equal(spooledEntity(smime), undefined);
  m.dispose();
  smime.dispose();
});
