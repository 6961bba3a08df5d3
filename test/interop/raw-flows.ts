/**
 * Interop flows shared by the raw-CMS peers (gpgsm and NSS cmsutil). They speak DER only, so
 * every flow converts with mime-der.ts: cstp's S/MIME messages are split/unwrapped into DER for
 * the peer, and the peer's DER is wrapped/joined into a message, with the outer headers a mail
 * client would put on it, for cstp.
 */
import { strict as assert } from 'node:assert';
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
import { TestMessage } from './messages';
import { joinSigned, splitSigned, unwrapPkcs7Mime, wrapPkcs7Mime } from './mime-der';
import { RunResult, Workdir, describeRun, openssl } from './peers';

export interface RawCmsPeer {
  readonly name: string;
  sign(data: Buffer, signer: string, detached: boolean): Promise<RunResult & { der: Buffer }>;
  verify(signature: Buffer, content?: Buffer): Promise<{ ok: boolean; content: Buffer; detail: string }>;
  encrypt(data: Buffer, recipient: string): Promise<RunResult & { der: Buffer }>;
  decrypt(der: Buffer): Promise<RunResult & { plain: Buffer }>;
}

function assertPeerOk(peer: RawCmsPeer, r: RunResult, what: string): void {
  assert.equal(r.rc, 0, describeRun(`${peer.name} ${what}`, r));
}

/** cstp signs; the peer verifies the exact bytes; the content is what went in. */
export async function cstpSignPeerVerify(peer: RawCmsPeer, msg: TestMessage, o: cli.SignOptions): Promise<void> {
  const what = `cstp sign ${JSON.stringify(o)} of "${msg.name}" -> ${peer.name}`;
  const signed = cli.ok(await cli.sign(msg.full, o), what);
  assertCrlf(signed, what);
  assertOuterHeaders(signed, msg, what);
  if (o.digest || o.pss) assertSignOptionsApplied(await openssl.print(signed), o, what);
  if (o.opaque) {
    assertSmimeKind(signed, 'signed-data', what);
    const v = await peer.verify(unwrapPkcs7Mime(signed));
    assert.ok(v.ok, `${what}: ${peer.name} verify failed: ${v.detail}`);
    assertSameContent(v.content, msg.entity, `${what}: content ${peer.name} extracted`);
    return;
  }
  assertSmimeKind(signed, 'multipart/signed', what);
  const parts = splitSigned(signed);
  assert7bitSafe(parts.content, `${what}: signed entity`);
  const v = await peer.verify(parts.signature, parts.content);
  assert.ok(v.ok, `${what}: ${peer.name} verify failed: ${v.detail}`);
  assertSameContent(parts.content, msg.entity, `${what}: signed content`);
}

/** The peer signs; wrapped as a mail client would; cstp verify accepts and restores the message. */
export async function peerSignedMessage(peer: RawCmsPeer, msg: TestMessage, signer: string, detached: boolean): Promise<Buffer> {
  const s = await peer.sign(msg.entity, signer, detached);
  assertPeerOk(peer, s, `sign as ${signer}`);
  return detached ? joinSigned(msg.entity, s.der, msg.outer) : wrapPkcs7Mime(s.der, 'signed-data', msg.outer);
}

/** With alsoUntrusted, the same message must fail when only other-ca is trusted. */
export async function peerSignCstpVerify(
  peer: RawCmsPeer,
  work: Workdir,
  msg: TestMessage,
  signer: string,
  detached: boolean,
  alsoUntrusted = false,
): Promise<void> {
  const signed = await peerSignedMessage(peer, msg, signer, detached);
  const what = `cstp verify of ${peer.name} ${detached ? 'detached' : 'opaque'} signature by ${signer} on "${msg.name}"`;
  const v = await cli.verify(work, signed);
  cli.ok(v, what);
  assert.match(v.stderr, /trusted/i, `${what}: report on stderr`);
  assertRestored(v.content, msg, what);
  if (alsoUntrusted) cli.refused(await cli.verify(work, signed, ['other-ca']), `${what} --trust other-ca`);
}

/** cstp encrypts; the peer decrypts and gets the content. */
export async function cstpEncryptPeerDecrypt(peer: RawCmsPeer, msg: TestMessage, recipient: string, o: cli.EncryptOptions = {}): Promise<void> {
  const what = `cstp encrypt ${JSON.stringify(o)} of "${msg.name}" -> ${peer.name}`;
  const enc = cli.ok(await cli.encrypt(msg.full, [recipient], o), what);
  assertCrlf(enc, what);
  assertOuterHeaders(enc, msg, what);
  assertSmimeKind(enc, 'enveloped-data', what);
  assertNoPlaintext(enc, msg, what);
  assertEncryptOptionsApplied(await openssl.print(enc), [recipient], o, what);
  const d = await peer.decrypt(unwrapPkcs7Mime(enc));
  assertPeerOk(peer, d, `decrypt of ${what}`);
  assertSameContent(d.plain, msg.entity, `${what}: content ${peer.name} decrypted`);
}

/** The peer's EnvelopedData, wrapped with outer headers; cstp decrypt restores the message. */
export async function peerEncryptCstpDecrypt(work: Workdir, msg: TestMessage, der: Buffer, keySource: cli.KeySource, what: string): Promise<void> {
  const enc = wrapPkcs7Mime(der, 'enveloped-data', msg.outer);
  const out = cli.ok(await cli.decrypt(work, enc, keySource), what);
  assertRestored(out, msg, what);
}

/** cstp sign | cstp encrypt; the peer decrypts, then verifies the multipart/signed inside. */
export async function cstpSignEncryptPeerDecryptVerify(peer: RawCmsPeer, msg: TestMessage, signer: string, recipient: string): Promise<void> {
  const signed = cli.ok(await cli.sign(msg.full, { signer }), 'sign');
  const enc = cli.ok(await cli.encrypt(signed, [recipient]), 'encrypt of signed');
  assertOuterHeaders(enc, msg, 'sign|encrypt');
  const d = await peer.decrypt(unwrapPkcs7Mime(enc));
  assertPeerOk(peer, d, 'decrypt');
  const parts = splitSigned(d.plain);
  const v = await peer.verify(parts.signature, parts.content);
  assert.ok(v.ok, `${peer.name} verify after decrypt: ${v.detail}`);
  assertSameContent(parts.content, msg.entity, 'content after decrypt+verify');
}

/** The peer signs, then encrypts the signed entity (as its mail client would); cstp unwrap opens both. */
export async function peerSignEncryptCstpUnwrap(
  peer: RawCmsPeer,
  work: Workdir,
  msg: TestMessage,
  signer: string,
  detached: boolean,
  recipient: string,
  keySource: cli.KeySource,
): Promise<void> {
  const s = await peer.sign(msg.entity, signer, detached);
  assertPeerOk(peer, s, 'sign');
  // The inner layer is a MIME entity without RFC 5322 headers; those go on the outside only.
  const inner = detached ? joinSigned(msg.entity, s.der) : wrapPkcs7Mime(s.der, 'signed-data');
  const e = await peer.encrypt(inner, recipient);
  assertPeerOk(peer, e, 'encrypt');
  const what = `cstp unwrap of ${peer.name} ${detached ? 'detached' : 'opaque'} sign + encrypt of "${msg.name}"`;
  const out = cli.ok(await cli.unwrap(work, wrapPkcs7Mime(e.der, 'enveloped-data', msg.outer), [keySource]), what);
  assertRestored(out, msg, what);
  assertLayerHeaders(out, msg, ['encrypted', 'signed'], what);
}
