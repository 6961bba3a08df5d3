/**
 * The paper's example (section 4.5) across real inline bridges, with real Postfix mail servers, all in network
 * namespaces on one /24 (no routers):
 *
 *   amd (Postfix, 192.0.2.10, relayhost mulholland)
 *     |  lan0 [boxa: bridge + cstp gateway for amd] wan0
 *     |
 *   wan: a bridge joining boxa, boxb and mulholland; tcpdump on mulholland's port
 *     |-- mulholland (Postfix, 192.0.2.20, relays intel to [192.0.2.30])
 *     |
 *     |  wan0 [boxb: bridge + cstp gateway for intel] lan0
 *   intel (Postfix, 192.0.2.30, maildirs for juro and julia)
 *
 * SMTP crossing a box is diverted (scripts/cstp-net rules) into its gateway's transparent listener; everything
 * else crosses untouched. Example 1 runs with boxa transparent and boxb in IP mode, example 2 after swapping the
 * modes (down/up again). Stopping boxa's gateway must fail closed (RST) while amd's Postfix keeps the message.
 * The gateways run with config/smtp.ini as shipped: a cluster (nodes=cpus) whose workers accept the diversions.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from '../gateway/harness';
import { amdStore, creds, openssl, paperPem, type PaperName } from '../gateway/paper-gateways';
import { paperCert } from '../policy/paper-pki';
import { BridgeBox, CSTP_NET } from './bridge-gateway';
import { Lab, netnsUnavailable } from './lab';
import { count, tcpStreams, type TcpStream } from './paper/pcap';
import { makeTemp, removeTemp } from './paper/temp';
import { Postfix, postfixUnavailable } from './postfix';

const AMD = '192.0.2.10';
const MULHOLLAND = '192.0.2.20';
const INTEL = '192.0.2.30';
/** The boxes' own addresses, in IP mode only: never a mail server's client. */
const BOXA_IP = '192.0.2.1';
const BOXB_IP = '192.0.2.2';

function unavailable(): string | undefined {
  const reason = netnsUnavailable([['swaks', '--version'], ['tcpdump', '--version'], ['postconf', '-d', 'mail_version'], ['openssl', 'version'], ['python3', '--version']]);
  if (reason) return reason;
  const pf = postfixUnavailable();
  if (pf) {
    if (process.env.CSTP_REQUIRE_NETNS === '1') throw new Error(`CSTP_REQUIRE_NETNS=1 but ${pf}`);
    return pf;
  }
  if (!existsSync(CSTP_NET)) {
    if (process.env.CSTP_REQUIRE_NETNS === '1') throw new Error(`CSTP_REQUIRE_NETNS=1 but ${CSTP_NET} is missing`);
    return `${CSTP_NET} is missing`;
  }
  return undefined;
}

const ECHO = join(REPO, 'test', 'netns', 'paper', 'echo.py');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A message with CRLF line ends, as submitted. */
function message(to: string[], subject: string, body: string): string {
  return [
    'From: Juro <juro@amd>',
    `To: ${to.join(', ')}`,
    `Subject: ${subject}`,
    'Date: Mon, 23 Nov 2026 12:00:00 +0000',
    `Message-ID: <${subject.replace(/\W+/g, '-')}@amd>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    body,
    '',
  ].join('\r\n');
}

/** The message data of an SMTP client stream (after DATA's 354, to the final dot), dot-unstuffed, CRLF. */
function dataOf(stream: TcpStream): string {
  const text = stream.data.toString('latin1');
  const start = text.indexOf('\r\nDATA\r\n');
  assert.ok(start !== -1, `no DATA in ${stream.key}`);
  const from = start + '\r\nDATA\r\n'.length;
  const end = text.indexOf('\r\n.\r\n', from);
  assert.ok(end !== -1, `no final dot in ${stream.key}`);
  return text.slice(from, end + 2).replace(/^\.\./gm, '.');
}

/**
 * The recipients of a client stream's last transaction (after its last MAIL FROM). The gateway passes every RCPT
 * through to the destination as the client sends it, then, at the end of data, resets and sends each copy with its
 * own recipients: the S/MIME connection names fedor too, in the transaction it reset.
 */
function rcpts(stream: TcpStream): string[] {
  const text = stream.data.toString('latin1');
  const last = text.toUpperCase().lastIndexOf('MAIL FROM:');
  return [...text.slice(Math.max(last, 0)).matchAll(/^RCPT TO:<([^>]*)>/gim)].map((m) => m[1]).sort();
}

/** A client stream to port 25 that ended its session (QUIT sent). */
const finished = (s: TcpStream): boolean => s.dport === 25 && /\r\nQUIT\r\n$/i.test(s.data.toString('latin1'));

/** Client IPs a Postfix smtpd logged `connect from` for. */
const connectsFrom = (log: string): string[] => [...new Set([...log.matchAll(/ connect from [^\[]*\[([\d.]+)\]/g)].map((m) => m[1]))].sort();

describe("the paper's example across inline bridges, with real Postfix servers", { skip: unavailable() }, () => {
  // Made in before(): a skipped suite creates nothing.
  let lab: Lab;
  let files: string;
  let pcap: string;
  let amd: Postfix, mulholland: Postfix, intel: Postfix;
  let boxa: BridgeBox, boxb: BridgeBox;
  let tcpdump: ChildProcess | undefined;
  const listeners: ChildProcess[] = [];

  const pem = (name: PaperName): { cert: string; key: string } => paperPem(files, name);

  /** Everything useful when an assertion fails. */
  function diag(): string {
    const parts = [
      `--- amd maillog\n${amd?.log()}`,
      `--- mulholland maillog\n${mulholland?.log()}`,
      `--- intel maillog\n${intel?.log()}`,
      `--- boxa stdout\n${boxa?.stdout()}\n--- boxa stderr\n${boxa?.stderr()}`,
      `--- boxb stdout\n${boxb?.stdout()}\n--- boxb stderr\n${boxb?.stderr()}`,
    ];
    return parts.join('\n');
  }

  /** Submits to amd's Postfix from inside amd's namespace, as juro@amd. */
  async function submit(to: string[], text: string): Promise<void> {
    const file = join(files, `submit-${Date.now()}.eml`);
    // swaks sends the file, CRLF and the final dot: without its last CRLF, the message arrives exactly as `text`.
    writeFileSync(file, text.replace(/\r\n$/, ''));
    const r = await lab.exec('amd', ['swaks', '--server', AMD, '--port', '25', '--from', 'juro@amd', '--to', to.join(','), '--data', file, '--timeout', '10'], { timeout: 20_000 });
    assert.equal(r.code, 0, `swaks: ${r.stdout}${r.stderr}`);
  }

  /** Opens a TCP connection from `ns` and reports how it went within `ms`: the peer's reply line or the error code. */
  async function tcpProbe(ns: string, host: string, port: number, ms = 3_000): Promise<{ result: string; elapsed: number }> {
    const script = `
      const net = require('net'); const t0 = Date.now(); let got = '';
      const s = net.connect({ host: ${JSON.stringify(host)}, port: ${port} });
      const done = (r) => { process.stdout.write(JSON.stringify({ result: r, elapsed: Date.now() - t0 })); process.exit(0); };
      s.setTimeout(${ms}, () => done('timeout'));
      s.on('data', (d) => { got += d; if (got.includes('\\n')) done(got.split('\\n')[0]); });
      s.on('error', (e) => done(e.code));
      s.on('end', () => done(got || 'closed'));`;
    const r = await lab.exec(ns, [process.execPath, '-e', script], { timeout: ms + 5_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { result: string; elapsed: number };
  }

  /** ICMP echo from `ns` to `host` gets answered (paper/echo.py: ping without the iputils package). */
  async function ping(ns: string, host: string): Promise<void> {
    const r = await lab.exec(ns, ['python3', ECHO, host, '2', '2'], { timeout: 10_000 });
    assert.equal(r.code, 0, `ping ${host} from ${ns}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /2 received/);
  }

  /** Non-SMTP traffic: ICMP and TCP to :8080 cross both bridges with the client's own address. */
  async function nonSmtpCrosses(): Promise<void> {
    await ping('amd', MULHOLLAND);
    await ping('amd', INTEL);
    await ping('intel', MULHOLLAND);
    assert.equal((await tcpProbe('amd', MULHOLLAND, 8080)).result, `${AMD} ${MULHOLLAND}`);
    assert.equal((await tcpProbe('amd', INTEL, 8080)).result, `${AMD} ${INTEL}`);
    assert.equal((await tcpProbe('intel', MULHOLLAND, 8080)).result, `${INTEL} ${MULHOLLAND}`);
  }

  /** How many streams the wan capture (mulholland's port) holds so far; newStreams(n) gives those after them. */
  const streamCount = (): number => tcpStreams(pcap).length;
  /** The streams after the first `before`, once `sessions` SMTP sessions among them have ended (or after 5 s). */
  async function newStreams(before: number, sessions: number): Promise<TcpStream[]> {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const got = tcpStreams(pcap).slice(before);
      if (got.filter(finished).length >= sessions || Date.now() > deadline) return got;
      await sleep(100);
    }
  }

  before(async () => {
    lab = new Lab();
    files = makeTemp('cstp-netns-paper-');
    pcap = join(files, 'wan.pcap');
    for (const n of ['amd', 'boxa', 'wan', 'mul', 'boxb', 'intel']) await lab.ns(n);
    await lab.veth('amd', 'eth0', 'boxa', 'lan0', '02:00:00:00:00:10');
    await lab.veth('boxa', 'wan0', 'wan', 'pa');
    await lab.veth('mul', 'eth0', 'wan', 'pm', '02:00:00:00:00:20');
    await lab.veth('wan', 'pb', 'boxb', 'wan0');
    await lab.veth('boxb', 'lan0', 'intel', 'eth0', undefined, '02:00:00:00:00:30');
    await lab.bridge('wan', 'wbr', ['pa', 'pm', 'pb']);
    await lab.addr('amd', 'eth0', `${AMD}/24`);
    await lab.addr('mul', 'eth0', `${MULHOLLAND}/24`);
    await lab.addr('intel', 'eth0', `${INTEL}/24`);

    boxa = new BridgeBox(lab, 'boxa', {
      ini: `[policy]\nlocal_networks = ${AMD}/32\nlocal_domains = amd\nmixed_recipients = liberal\n[delivery]\nconnect_timeout = 5\n`,
      fill: amdStore,
    });
    boxb = new BridgeBox(lab, 'boxb', {
      ini: `[policy]\nlocal_networks = ${INTEL}/32\nlocal_domains = intel\n[delivery]\nconnect_timeout = 5\n`,
      fill: (s) => {
        s.putGatewayIdentity('intel', creds('gw-intel'));
        s.addCertificate(paperCert('gw-amd'), 'gateway', ['amd']);
      },
    });
    amd = new Postfix(lab, 'amd', { domain: 'amd', address: AMD, mailboxes: ['juro'], relayhost: `[${MULHOLLAND}]:25` });
    mulholland = new Postfix(lab, 'mul', {
      domain: 'mulholland', address: MULHOLLAND, mailboxes: ['fedor'], transport: { intel: `smtp:[${INTEL}]:25` }, relayDomains: ['intel'],
    });
    intel = new Postfix(lab, 'intel', { domain: 'intel', address: INTEL, mailboxes: ['juro', 'julia'] });

    // Example 1's modes: boxa fully transparent, boxb with a management address.
    await Promise.all([boxa.up('transparent'), boxb.up('ip', `${BOXB_IP}/24`)]);
    await Promise.all([boxa.start(), boxb.start(), amd.start(), mulholland.start(), intel.start()]);

    const server = `require('net').createServer((s) => s.end(s.remoteAddress + ' ' + s.localAddress + '\\n')).listen(8080, '0.0.0.0')`;
    for (const ns of ['mul', 'intel']) {
      const child = lab.spawn(ns, [process.execPath, '-e', server], { stdio: 'ignore' });
      listeners.push(child);
      await lab.waitListening(ns, 8080, 5_000);
    }

    tcpdump = lab.spawn('wan', ['tcpdump', '-i', 'pm', '--immediate-mode', '-U', '-n', '-s', '0', '-Z', 'root', '-w', pcap, 'tcp or icmp'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    tcpdump.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const deadline = Date.now() + 10_000;
    while (!err.includes('listening on')) {
      if (tcpdump.exitCode !== null) throw new Error(`tcpdump exited: ${err}`);
      if (Date.now() > deadline) throw new Error(`tcpdump not capturing: ${err}`);
      await sleep(50);
    }
  });

  after(async () => {
    if (tcpdump && tcpdump.exitCode === null) tcpdump.kill('SIGINT');
    // For a look at the wire afterwards: CSTP_NETNS_KEEP_PCAP=FILE keeps a copy of the wan capture.
    if (process.env.CSTP_NETNS_KEEP_PCAP && pcap && existsSync(pcap)) copyFileSync(pcap, process.env.CSTP_NETNS_KEEP_PCAP);
    await Promise.all([amd, mulholland, intel, boxa, boxb].map((x) => x?.destroy().catch(() => undefined)));
    await lab?.destroy();
    if (files) removeTemp(files);
  });

  it('the gateways run as shipped: a cluster whose workers accept the diverted connections', () => {
    for (const box of [boxa, boxb]) {
      assert.match(box.stdout(), /Diverted connections on fd \d+ \(\[transparent\] listen = .*\), accepted for the workers/, box.stdout());
      assert.match(box.stdout(), /Listening for diverted connections on .* \(from the cluster master\)/);
    }
  });

  it('non-SMTP traffic crosses both bridges untouched (ping, TCP :8080 sees the client address)', async () => {
    await nonSmtpCrosses();
  });

  it('example 1 (boxa transparent, boxb IP mode): intel gets the decrypted original, fedor the unaltered one, the wan only ciphertext', async () => {
    const marker = 'MARKER-1 the tiger sleeps at midnight';
    const text = message(['juro@intel', 'julia@intel', 'fedor@mulholland'], 'Secret plans for intel', `Secret plans for intel. ${marker}.`);
    const seen = streamCount();
    await submit(['juro@intel', 'julia@intel', 'fedor@mulholland'], text);

    const [fedor] = await mulholland.waitMail('fedor', 1).catch((e: Error) => assert.fail(`${e.message}\n${diag()}`));
    const [juro] = await intel.waitMail('juro', 1).catch((e: Error) => assert.fail(`${e.message}\n${diag()}`));
    const [julia] = await intel.waitMail('julia', 1).catch((e: Error) => assert.fail(`${e.message}\n${diag()}`));

    // Fedor: the message as submitted (maildir lines end in LF), below the servers' trace headers, no status header.
    assert.ok(fedor.text.endsWith(`\n${text.replace(/\r\n/g, '\n')}`), fedor.text);
    assert.doesNotMatch(fedor.text, /X-Cstp-Security|pkcs7/i);
    // Juro and Julia at intel: the original content, decrypted and verified by intel's box.
    for (const m of [juro, julia]) {
      assert.ok(m.text.includes(marker), m.text);
      assert.doesNotMatch(m.text, /application\/(x-)?pkcs7-mime/);
      assert.match(m.text, /^X-Cstp-Security: layer=1; type=encrypted; status=decrypted;/m);
      assert.match(m.text, /^X-Cstp-Security: layer=2; type=signed; verdict=good-trusted; signer="cstpbox@amd"/m);
      assert.match(m.text, /^Subject: Secret plans for intel$/m);
    }
    const [a] = await boxa.waitDecisions(1);
    assert.equal(a.direction, 'outbound');
    assert.equal(a.client?.ip, AMD);
    assert.equal(a.destination?.host, MULHOLLAND);
    assert.deepEqual(a.deliveries.map((d) => [d.action, d.route, d.reply?.code]), [['sign+encrypt', 'same-destination', 250], ['unaltered', 'second-connection', 250]], JSON.stringify(a));
    const [b] = await boxb.waitDecisions(1);
    assert.equal(b.direction, 'inbound');
    assert.equal(b.client?.ip, MULHOLLAND);
    assert.equal(b.destination?.host, INTEL);
    assert.deepEqual(b.deliveries.map((d) => [d.action, d.reply?.code]), [['decrypt:decrypted+verify:good-trusted', 250]], JSON.stringify(b));

    // The wan: amd -> mulholland twice (the S/MIME copy, then fedor's on the second connection), mulholland -> intel
    // once (the S/MIME copy relayed). The marker crosses the wan exactly once: in fedor's copy.
    const wire = (await newStreams(seen, 3)).filter((s) => s.data.length > 0);
    const toMul = wire.filter((s) => s.src === AMD && s.dst === MULHOLLAND && s.dport === 25);
    const toIntel = wire.filter((s) => s.src === MULHOLLAND && s.dst === INTEL && s.dport === 25);
    assert.equal(toMul.length, 2, wire.map((s) => s.key).join('\n'));
    assert.equal(toIntel.length, 1, wire.map((s) => s.key).join('\n'));
    const plain = toMul.find((s) => rcpts(s).includes('fedor@mulholland'))!;
    const secured = toMul.find((s) => s !== plain)!;
    assert.ok(plain && secured);
    assert.deepEqual(rcpts(plain), ['fedor@mulholland']);
    assert.deepEqual(rcpts(secured), ['julia@intel', 'juro@intel']);
    assert.deepEqual(rcpts(toIntel[0]), ['julia@intel', 'juro@intel']);
    assert.equal(count(plain.data, marker), 1);
    assert.equal(wire.reduce((n, s) => n + count(s.data, marker), 0), 1, 'the marker crossed the wan outside fedor\'s copy');
    for (const s of [secured, toIntel[0]]) {
      const data = dataOf(s);
      assert.match(data, /^Content-Type: application\/(x-)?pkcs7-mime;[^]*smime-type=(authEnveloped|enveloped)-data/im);
      // Opened with intel's gateway key, it is amd's box's signature over the original.
      const gw = pem('gw-intel');
      const signed = openssl(['cms', '-decrypt', '-recip', gw.cert, '-inkey', gw.key], data);
      assert.doesNotMatch(signed, /pkcs7-mime/);
      const gwAmd = pem('gw-amd');
      assert.ok(openssl(['cms', '-verify', '-CAfile', gwAmd.cert, '-purpose', 'any'], signed).includes(marker));
    }

    // The servers saw the clients, never a box: amd at mulholland, mulholland at intel.
    assert.deepEqual(connectsFrom(mulholland.log()), [AMD], mulholland.log());
    assert.deepEqual(connectsFrom(intel.log()), [MULHOLLAND], intel.log());
    assert.equal(await amd.queue().then((q) => q.trim()), 'Mail queue is empty');
  });

  it("fail-closed: boxa's gateway down, SMTP across the bridge is reset at once and amd's Postfix keeps the message", async () => {
    await boxa.stop();
    const probe = await tcpProbe('amd', MULHOLLAND, 25, 2_000);
    assert.equal(probe.result, 'ECONNREFUSED', JSON.stringify(probe));
    assert.ok(probe.elapsed < 2_000, JSON.stringify(probe));
    // Non-SMTP is not affected by the gateway being down.
    assert.equal((await tcpProbe('amd', MULHOLLAND, 8080)).result, `${AMD} ${MULHOLLAND}`);

    const marker = 'MARKER-3 queued while the box was down';
    const text = message(['fedor@mulholland'], 'While the gateway is down', marker);
    await submit(['fedor@mulholland'], text);
    const deadline = Date.now() + 15_000;
    while (!/to=<fedor@mulholland>.*status=deferred/.test(amd.log())) {
      if (Date.now() > deadline) assert.fail(`amd's Postfix did not try and defer:\n${diag()}`);
      await sleep(100);
    }
    assert.match(amd.log(), /to=<fedor@mulholland>.*status=deferred \(connect to 192\.0\.2\.20\[192\.0\.2\.20\]:25: Connection refused\)/);
    assert.match(await amd.queue(), /fedor@mulholland/);
    assert.equal(mulholland.mail('fedor').length, 1);

    await boxa.start();
    await amd.flush();
    const got = await mulholland.waitMail('fedor', 2).catch((e: Error) => assert.fail(`${e.message}\n${diag()}`));
    assert.ok(got[1].text.endsWith(`\n${text.replace(/\r\n/g, '\n')}`), got[1].text);
    assert.equal(await amd.queue().then((q) => q.trim()), 'Mail queue is empty');
  });

  it('the modes swap (boxa IP mode, boxb transparent): down and up again, idempotent, non-SMTP still crosses', async () => {
    await Promise.all([boxa.down(), boxb.down()]);
    await Promise.all([boxa.down(), boxb.down()]); // nothing left to take down: still succeeds
    await Promise.all([boxa.up('ip', `${BOXA_IP}/24`), boxb.up('transparent')]);
    await Promise.all([boxa.up('ip', `${BOXA_IP}/24`), boxb.up('transparent')]); // again: same state, no error
    await nonSmtpCrosses();
  });

  it("example 2 (boxa IP mode, boxb transparent): only julia@intel, whose key intel's box lacks: she gets S/MIME her key opens, signed by cstpbox@amd", async () => {
    const marker = 'MARKER-2 for Julia only';
    const text = message(['julia@intel'], 'For Julia only', marker);
    const seen = streamCount();
    const before = intel.mail('julia').length;
    await submit(['julia@intel'], text);
    const got = await intel.waitMail('julia', before + 1).catch((e: Error) => assert.fail(`${e.message}\n${diag()}`));
    const mail = got[before].text;
    assert.match(mail, /^Content-Type: application\/(x-)?pkcs7-mime/im);
    assert.ok(!mail.includes(marker), mail);
    assert.doesNotMatch(mail, /X-Cstp-Security/, "intel's box holds no key the envelope names: it passes the message untouched");
    assert.equal(intel.mail('juro').length, 1);

    const crlf = mail.replace(/\r?\n/g, '\r\n');
    const julia = pem('julia');
    const signed = openssl(['cms', '-decrypt', '-recip', julia.cert, '-inkey', julia.key], crlf);
    const gw = pem('gw-intel');
    assert.throws(() => openssl(['cms', '-decrypt', '-recip', gw.cert, '-inkey', gw.key], crlf), 'not encrypted for intel\'s box');
    const gwAmd = pem('gw-amd');
    const signer = join(files, 'signer2.pem');
    assert.ok(openssl(['cms', '-verify', '-CAfile', gwAmd.cert, '-purpose', 'any', '-signer', signer], signed).includes(marker));
    assert.match(execFileSync('openssl', ['x509', '-in', signer, '-noout', '-email']).toString(), /cstpbox@amd/);

    const wire = (await newStreams(seen, 2)).filter((s) => s.data.length > 0);
    assert.equal(wire.filter((s) => s.dport === 25 && s.src === AMD).length, 1, wire.map((s) => s.key).join('\n'));
    assert.equal(wire.filter((s) => s.dport === 25 && s.src === MULHOLLAND && s.dst === INTEL).length, 1, wire.map((s) => s.key).join('\n'));
    assert.equal(wire.reduce((n, s) => n + count(s.data, marker), 0), 0, 'the marker crossed the wan');

    // Still the clients' addresses at the servers, in these modes too (never BOXA_IP or BOXB_IP).
    assert.deepEqual(connectsFrom(mulholland.log()), [AMD], mulholland.log());
    assert.deepEqual(connectsFrom(intel.log()), [MULHOLLAND], intel.log());
    // amd's box encrypted for Julia's own certificate only (example 1's copy was for intel's box and Julia).
    const a = (await boxa.waitDecisions(3))[2];
    assert.deepEqual(a.recipients, ['julia@intel']);
    assert.deepEqual(a.deliveries.map((d) => [d.action, d.reply?.code]), [['sign+encrypt', 250]], JSON.stringify(a));
    assert.ok(a.deliveries[0].certificates?.includes(paperCert('julia').fingerprint), JSON.stringify(a));
    assert.ok(!a.deliveries[0].certificates?.includes(paperCert('gw-intel').fingerprint), JSON.stringify(a));
    const b = (await boxb.waitDecisions(2))[1];
    assert.equal(b.direction, 'inbound');
    assert.equal(b.client?.ip, MULHOLLAND);
    assert.deepEqual(b.deliveries.map((d) => [d.action, d.reply?.code]), [['unaltered', 250]], JSON.stringify(b));
  });

  it('fail-closed in the swapped modes too: both gateways down, SMTP is reset at boxa (IP mode) and at boxb (transparent), from either side', async () => {
    await Promise.all([boxa.stop(), boxb.stop()]);
    for (const [ns, host] of [['amd', MULHOLLAND], ['mul', INTEL], ['intel', MULHOLLAND]] as const) {
      const probe = await tcpProbe(ns, host, 25, 2_000);
      assert.equal(probe.result, 'ECONNREFUSED', `${ns} -> ${host}:25 ${JSON.stringify(probe)}`);
      assert.ok(probe.elapsed < 2_000, JSON.stringify(probe));
    }
    await nonSmtpCrosses();
    // Over the whole run the gateways were handed SMTP only: every connection they logged was to port 25.
    for (const box of [boxa, boxb]) {
      const connects = box.stdout().split('\n').filter((l) => l.startsWith('{') && l.includes('"message":"connect"')).map((l) => JSON.parse(l));
      assert.ok(connects.length >= 1, box.stdout());
      assert.deepEqual([...new Set(connects.map((c) => c.local_port))], [25], `${box.ns}: ${JSON.stringify(connects)}`);
    }
  });
});
