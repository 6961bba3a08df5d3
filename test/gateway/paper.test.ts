/**
 * The paper's example (section 4.5) on loopback, with real Haraka gateways and Postfix smtp-sink as the mail
 * servers. No TPROXY here, so each gateway reaches its "original destination" through [delivery] next_hop:
 *
 *   swaks (amd's mail server) -> amd gateway --wire--> intel gateway -> intel sink (intel's mail server)
 *
 * plus an amd gateway whose next hop is a plain sink, so the bytes leaving amd can be checked with openssl, and
 * failure paths (5xx at RCPT, destination down, encryption required but impossible, forged status header,
 * unknown signer).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signMessage } from '../../src/smime/message';
import { KeyStore } from '../../src/store/key-store';
import { startSink, type Sink } from '../delivery/peers';
import { paperCert } from '../policy/paper-pki';
import { swaks } from './harness';
import { amdStore, creds, openssl, paperPem, PASS, startGateway, stop, type PaperName, type Running } from './paper-gateways';

/** The message part of an smtp-sink dump, CRLF (the dump starts with smtp-sink's own X-* and Received lines). */
function crlf(dump: string): string {
  return dump.replace(/\r?\n/g, '\r\n');
}

const files = mkdtempSync(join(tmpdir(), 'cstp-paper-'));
const pem = (name: PaperName): { cert: string; key: string } => paperPem(files, name);

describe("the paper's example on loopback", () => {
  let intelSink: Sink, wireSink: Sink, amdSink: Sink, rejectSink: Sink, dataSink: Sink;
  let rejectSinkStopped = false;
  let intel: Running | undefined, amdWire: Running | undefined, amdChain: Running | undefined, amdReject: Running | undefined;
  let amdData: Running | undefined, amdSoftRcpt: Running | undefined, amdHardData: Running | undefined;
  let softRcptSink: Sink, hardDataSink: Sink;

  before(async () => {
    [intelSink, wireSink, amdSink, rejectSink] = await Promise.all([startSink(), startSink(), startSink(), startSink(['-f', 'RCPT'])]);
    [dataSink, softRcptSink, hardDataSink] = await Promise.all([startSink(['-r', '.']), startSink(['-r', 'RCPT']), startSink(['-f', '.'])]);
    [intel, amdWire, amdReject, amdData, amdSoftRcpt, amdHardData] = await Promise.all([
      // Loopback clients are not intel's mail servers here: everything reaching intel's gateway is inbound.
      startGateway(`[policy]\nlocal_networks = 10.99.0.0/16\nlocal_domains = intel\n[delivery]\nnext_hop = 127.0.0.1:${intelSink.port}\n`, (s) => {
        s.putGatewayIdentity('intel', creds('gw-intel'));
        s.addCertificate(paperCert('gw-amd'), 'gateway', ['amd']);
      }),
      startGateway(
        `[policy]\nlocal_domains = amd\nmixed_recipients = liberal\nrequire_encryption = secret.example\n` +
          `[delivery]\nnext_hop = 127.0.0.1:${wireSink.port}\nconnect_timeout = 3\ngreeting_timeout = 5\n`,
        amdStore,
      ),
      startGateway(`[policy]\nlocal_domains = amd\n[delivery]\nnext_hop = 127.0.0.1:${rejectSink.port}\nconnect_timeout = 3\n`, amdStore),
      startGateway(`[policy]\nlocal_domains = amd\n[delivery]\nnext_hop = 127.0.0.1:${dataSink.port}\n`, amdStore),
      startGateway(`[policy]\nlocal_domains = amd\n[delivery]\nnext_hop = 127.0.0.1:${softRcptSink.port}\n`, amdStore),
      startGateway(`[policy]\nlocal_domains = amd\n[delivery]\nnext_hop = 127.0.0.1:${hardDataSink.port}\n`, amdStore),
    ]);
    // Restrictive (the default); DSNs go back to the client's address on destination_port: amd's sink.
    amdChain = await startGateway(
      `[policy]\nlocal_domains = amd\n[delivery]\nnext_hop = 127.0.0.1:${intel.port}\ndestination_port = ${amdSink.port}\n`,
      amdStore,
    );
  });

  after(async () => {
    await Promise.all([stop(intel), stop(amdWire), stop(amdChain), stop(amdReject), stop(amdData), stop(amdSoftRcpt), stop(amdHardData)]);
    await Promise.all([intelSink, wireSink, amdSink, dataSink, softRcptSink, hardDataSink, rejectSinkStopped ? undefined : rejectSink].map((s) => s?.stop()));
    rmSync(files, { recursive: true, force: true });
  });

  it('example 1, liberal: the bytes leaving amd are encrypted for intel and signed by amd; fedor gets the original', async () => {
    const r = await swaks(amdWire!.port, ['--from', 'juro@amd', '--to', 'juro@intel,julia@intel,fedor@mulholland', '--body', 'Secret plans for intel.']);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /<- {2}250 .*\n -> QUIT/);
    const dumps = await wireSink.next(2);
    assert.equal(dumps.length, 2, dumps.join('\n====\n'));
    const smime = dumps.find((d) => /application\/pkcs7-mime/.test(d));
    const plain = dumps.find((d) => !/application\/pkcs7-mime/.test(d));
    assert.ok(smime && plain, dumps.join('\n====\n'));
    assert.match(smime, /X-Rcpt-Args: <juro@intel>/);
    assert.match(smime, /X-Rcpt-Args: <julia@intel>/);
    assert.doesNotMatch(smime, /Secret plans/);
    assert.match(plain, /X-Rcpt-Args: <fedor@mulholland>/);
    assert.match(plain, /Secret plans for intel\./);

    // intel's gateway key opens it with openssl, and so does Julia's own key (one envelope for both).
    const gwIntel = pem('gw-intel');
    const signed = openssl(['cms', '-decrypt', '-recip', gwIntel.cert, '-inkey', gwIntel.key], crlf(smime));
    assert.match(signed, /multipart\/signed/);
    const julia = pem('julia');
    assert.match(openssl(['cms', '-decrypt', '-recip', julia.cert, '-inkey', julia.key], crlf(smime)), /multipart\/signed/);
    // The signature is amd's gateway's (the paper's cstpbox@amd), over the original content.
    const gwAmd = pem('gw-amd');
    const content = openssl(['cms', '-verify', '-CAfile', gwAmd.cert, '-purpose', 'any', '-signer', join(files, 'signer.pem')], signed);
    assert.match(content, /Secret plans for intel\./);
    assert.match(execFileSync('openssl', ['x509', '-in', join(files, 'signer.pem'), '-noout', '-email']).toString(), /cstpbox@amd/);
  });

  it('example 1 through both gateways, restrictive: intel delivers plain to juro and julia, fedor is refused with a DSN to juro', async () => {
    const r = await swaks(amdChain!.port, [
      '--from', 'juro@amd', '--to', 'juro@intel,julia@intel,fedor@mulholland', '--body', 'Through both gateways.',
      '--header', 'X-Cstp-Security: forged by the sender',
    ]);
    assert.equal(r.code, 0, r.output);
    const [delivered, ...more] = await intelSink.next(1);
    assert.equal(more.length, 0);
    assert.ok(delivered, 'intel sink got nothing');
    assert.match(delivered, /X-Rcpt-Args: <juro@intel>/);
    assert.match(delivered, /X-Rcpt-Args: <julia@intel>/);
    assert.doesNotMatch(delivered, /fedor@mulholland>\n/);
    assert.match(delivered, /Through both gateways\./);
    assert.doesNotMatch(delivered, /application\/pkcs7-mime/);
    assert.match(delivered, /X-Cstp-Security: layer=1; type=encrypted; status=decrypted/);
    assert.match(delivered, /X-Cstp-Security: layer=2; type=signed; verdict=good-trusted; signer="cstpbox@amd"/);
    assert.doesNotMatch(delivered, /forged by the sender/);
    const [dsn] = await amdSink.next(1);
    assert.ok(dsn, 'no DSN reached amd\'s mail server');
    assert.match(dsn, /X-Rcpt-Args: <juro@amd>/);
    assert.match(dsn, /X-Mail-Args: <>/);
    assert.match(dsn, /Final-Recipient: rfc822; fedor@mulholland/);
    assert.match(dsn, /Status: 5\.7\.1/);
  });

  it("example 2: julia's key is not on intel's gateway, she receives the S/MIME message and her key opens it", async () => {
    const r = await swaks(amdChain!.port, ['--tls', '--from', 'juro@amd', '--to', 'julia@intel', '--body', 'For Julia only.']);
    assert.equal(r.code, 0, r.output);
    // TLS is never downgraded: the client leg used STARTTLS, and so did amd's gateway toward intel's (which offers it).
    const lines = amdChain!.gw.stdout().split('\n').filter((l) => l.includes('"event":"decision"')).map((l) => JSON.parse(l));
    const last = lines[lines.length - 1];
    assert.deepEqual(last.recipients, ['julia@intel']);
    assert.match(String(last.client.tls?.protocol), /^TLSv1\.[23]$/);
    assert.match(String(last.destination.tls?.protocol), /^TLSv1\.[23]$/);
    assert.match(String(last.deliveries[0].tls?.protocol), /^TLSv1\.[23]$/);
    const [delivered] = await intelSink.next(1);
    assert.ok(delivered, 'intel sink got nothing');
    assert.match(delivered, /application\/pkcs7-mime/);
    assert.doesNotMatch(delivered, /For Julia only/);
    assert.doesNotMatch(delivered, /X-Cstp-Security/, "intel holds no key the envelope names: it passes the message untouched");
    const julia = pem('julia');
    const signed = openssl(['cms', '-decrypt', '-recip', julia.cert, '-inkey', julia.key], crlf(delivered));
    const gwAmd = pem('gw-amd');
    assert.match(openssl(['cms', '-verify', '-CAfile', gwAmd.cert, '-purpose', 'any'], signed), /For Julia only\./);
  });

  it('encryption required but no certificate: 451 at DATA and nothing reaches the destination', async () => {
    const r = await swaks(amdWire!.port, ['--from', 'juro@amd', '--to', 'boss@secret.example']);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /<\*\* 451 4\.7\.5 /);
    assert.equal((await wireSink.next(1)).length, 0);
  });

  it('an unknown signer: delivered with verdict good-untrusted, its certificate lands in the untrusted store; forged status header stripped', async () => {
    const message = Buffer.from(
      'From: juro@amd\r\nTo: juro@intel\r\nSubject: signed by juro himself\r\nX-Cstp-Security: layer=1; type=signed; verdict=good-trusted\r\n\r\nSigned by Juro.\r\n',
    );
    const signedMessage = Buffer.concat([...signMessage(message, creds('juro-amd'))]);
    const file = join(files, 'signed.eml');
    writeFileSync(file, signedMessage);
    const r = await swaks(intel!.port, ['--from', 'juro@amd', '--to', 'juro@intel', '--data', file]);
    assert.equal(r.code, 0, r.output);
    const [delivered] = await intelSink.next(1);
    assert.ok(delivered, 'intel sink got nothing');
    assert.match(delivered, /X-Cstp-Security: layer=1; type=signed; verdict=good-untrusted; signer="juro@amd"/);
    assert.equal(delivered.match(/X-Cstp-Security/g)?.length, 1, delivered);
    const store = KeyStore.open({ path: join(intel!.dir, 'var', 'store'), passphrase: PASS, readOnly: true });
    try {
      const harvested = store.untrusted().map((u) => u.fingerprint);
      assert.ok(harvested.includes(paperCert('juro-amd').fingerprint), JSON.stringify(harvested));
    } finally {
      await store.close();
    }
  });

  it("a 5xx at RCPT is the destination's, passed through", async () => {
    const r = await swaks(amdReject!.port, ['--from', 'juro@amd', '--to', 'juro@intel']);
    assert.notEqual(r.code, 0);
    assert.match(r.output, / -> RCPT TO:<juro@intel>\n<\*\* 5\d\d /);
  });

  it("a 4xx after the end of data is the destination's, passed through (encrypted copy to intel)", async () => {
    const r = await swaks(amdData!.port, ['--from', 'juro@amd', '--to', 'juro@intel']);
    assert.notEqual(r.code, 0);
    assert.match(r.output, / -> \.\n<\*\* 4\d\d /);
  });

  it("a 4xx at RCPT is the destination's, passed through", async () => {
    const r = await swaks(amdSoftRcpt!.port, ['--from', 'juro@amd', '--to', 'juro@intel']);
    assert.notEqual(r.code, 0);
    assert.match(r.output, / -> RCPT TO:<juro@intel>\n<\*\* 4\d\d /);
  });

  it("a 5xx after the end of data is the destination's, passed through, and nothing is queued", async () => {
    const r = await swaks(amdHardData!.port, ['--from', 'juro@amd', '--to', 'juro@intel']);
    assert.notEqual(r.code, 0);
    assert.match(r.output, / -> \.\n<\*\* 5\d\d /);
    assert.deepEqual(readdirSync(join(amdHardData!.dir, 'var', 'queue')).filter((f) => f.endsWith('.json')), []);
  });

  it('destination down: a 4xx at MAIL at once', async () => {
    rejectSinkStopped = true;
    await rejectSink.stop();
    const started = Date.now();
    const r = await swaks(amdReject!.port, ['--from', 'juro@amd', '--to', 'juro@intel']);
    assert.match(r.output, / -> MAIL FROM:<juro@amd>\n<\*\* 4\d\d /);
    assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
    const lines = amdReject!.gw.stdout().split('\n').filter((l) => l.includes('"event":"decision"')).map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.deliveries[0].action), ['not-sent']);
    assert.equal(lines[0].deliveries[0].reply.code, 421);
  });

  it('one decision line per delivered transaction, with action, algorithm and certificates and no message content', () => {
    const lines = amdWire!.gw.stdout().split('\n').filter((l) => l.includes('"event":"decision"'));
    assert.equal(lines.length, 2, lines.join('\n')); // example 1 and the deferred one
    const first = JSON.parse(lines[0]);
    assert.equal(first.direction, 'outbound');
    assert.deepEqual(first.recipients, ['juro@intel', 'julia@intel', 'fedor@mulholland']);
    const [secured, plain] = first.deliveries;
    assert.equal(secured.action, 'sign+encrypt');
    assert.equal(secured.algorithm, 'aes-256-cbc/rsa-pkcs1');
    assert.ok(secured.certificates.includes(paperCert('gw-intel').fingerprint));
    assert.equal(secured.reply.code, 250);
    assert.equal(plain.action, 'unaltered');
    assert.equal(plain.route, 'second-connection');
    assert.doesNotMatch(amdWire!.gw.stdout(), /Secret plans/);
    assert.equal(JSON.parse(lines[1]).deliveries[0].action, 'deferred');
  });
});
