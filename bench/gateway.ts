/**
 * `npm run bench`: the cstp gateway against its baselines, side by side in one run on one machine, Postfix's
 * smtp-source as the load and smtp-sink behind every system (bench/gateway/systems.ts):
 *   (a) the same Haraka 3.3.4 as a plain synchronous relay (queue/smtp_forward, no cstp plugin, log level warn),
 *   (b) cstp outbound: sign + encrypt for a recipient whose gateway certificate is in the store,
 *   (c) cstp inbound: decrypt + verify of messages (b) produced,
 *   (d) a pipe filter running `openssl cms -sign | openssl cms -encrypt` per message (gpg-mailgate/Zeyple),
 *   (e) the relay of (a) as a cluster with as many workers as cstp has (context: what a second core gives Haraka alone).
 * (a) and (d) run as one process (nodes=0), the baselines issue 5 defines; cstp runs with CSTP_BENCH_NODES
 * workers (default: one per core, as config/smtp.ini ships with nodes=cpus).
 * Throughput: the systems take turns in rounds (the order rotates each round), the figures are medians of the
 * rounds and the ratios medians of the per-round ratios: the machines are shared and noisy, ratios measured
 * in alternating rounds are what count. CPU per message is the system's own processes' utime+stime (openssl
 * children included) from /proc. Latency: an open-loop steady rate, one message per connection.
 *
 * Environment: CSTP_BENCH_QUICK=1 (a smoke run under ~2 minutes), CSTP_BENCH_ROUNDS, CSTP_BENCH_SIZES (10k,1m),
 * CSTP_BENCH_LATENCY_RATE (msg/s, default 20), CSTP_BENCH_PROFILE=DIR (cstp gateways run with
 * --cpu-prof into DIR; see bench/gateway/profile-top.ts), CSTP_BENCH_PARTS (throughput,latency), CSTP_BENCH_KEEP=1 (keep the instance directories and logs).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { paperCert, paperKey } from '../test/policy/paper-pki';
import { cpuSeconds, dataPayload, machineSeconds, median, percentile, reapedChildrenSeconds, rssMb, sendOne, smtpSource, smtpSourceCommand, steadyLatency } from './gateway/load';
import { sinkDumps, startAll, startCstp, startPipeFilter, startRelay, startSink, type Server, type SpawnOptions } from './gateway/systems';

const QUICK = process.env.CSTP_BENCH_QUICK === '1';
const ROUNDS = Number(process.env.CSTP_BENCH_ROUNDS ?? (QUICK ? 1 : 5));
const SIZES = (process.env.CSTP_BENCH_SIZES ?? '10k,1m').split(',').map((s) => s.trim().toLowerCase());
const SESSIONS = 20;
const LATENCY_RATE = Number(process.env.CSTP_BENCH_LATENCY_RATE ?? 20);
const LATENCY_ROUNDS = QUICK ? 1 : 4;
const LATENCY_PER_ROUND = QUICK ? 60 : 100;
const PROFILE = process.env.CSTP_BENCH_PROFILE;
/** Which parts run: throughput, latency (default both). */
const PARTS = (process.env.CSTP_BENCH_PARTS ?? 'throughput,latency').split(',');
/** Haraka cluster workers of the cstp systems and of (e). */
const NODES = Number(process.env.CSTP_BENCH_NODES ?? cpus().length);

type Sys = 'a' | 'b' | 'c' | 'd' | 'e';
const SYSTEMS: Sys[] = ['a', 'b', 'c', 'd', 'e'];
const LABEL: Record<Sys, string> = {
  a: '(a) Haraka relay',
  b: '(b) cstp sign+encrypt',
  c: '(c) cstp decrypt+verify',
  d: '(d) openssl pipe filter',
  e: `(e) relay, nodes=${NODES}`,
};
/** Messages per measurement: enough for several seconds of each system at its own pace. */
const COUNT: Record<string, Record<Sys, number>> = QUICK
  ? { '10k': { a: 300, b: 300, c: 150, d: 60, e: 300 }, '1m': { a: 40, b: 40, c: 30, d: 20, e: 40 } }
  : { '10k': { a: 600, b: 600, c: 300, d: 120, e: 600 }, '1m': { a: 60, b: 60, c: 40, d: 30, e: 60 } };
const BYTES: Record<string, number> = { '10k': 10 * 1024, '1m': 1024 * 1024 };
const SIZE_LABEL: Record<string, string> = { '10k': '10 KB', '1m': '1 MB' };

/** A plain MIME message of about `size` bytes (base64 body), LF line ends as smtp-source -F wants them. */
function message(size: number): Buffer {
  const head =
    'From: Juro <juro@amd>\nTo: Julia <julia@intel>\nSubject: benchmark message\n' +
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}\nMessage-ID: <${randomBytes(8).toString('hex')}@amd>\n` +
    'MIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n';
  const bodyBytes = Math.max(76, size - head.length);
  const lines = Math.ceil(bodyBytes / 77);
  const b64 = randomBytes(Math.ceil((lines * 76 * 3) / 4)).toString('base64');
  const body: string[] = [];
  for (let i = 0; i < lines; i++) body.push(b64.slice(i * 76, i * 76 + 76));
  return Buffer.from(`${head}${body.join('\n')}\n`, 'latin1');
}

const fmt = (x: number, digits?: number): string => (Number.isFinite(x) ? x.toFixed(digits ?? (x >= 100 ? 0 : x >= 10 ? 1 : 2)) : '-');
const pad = (s: string, n: number): string => (s.length >= n ? s : ' '.repeat(n - s.length) + s);
const rotate = <T>(xs: T[], by: number): T[] => xs.map((_, i) => xs[(i + by) % xs.length]);

interface Measure {
  rate: number;
  /** CPU of the system's own processes per message. */
  cpuMs: number;
  /** CPU of the load per message: smtp-source and smtp-sink. */
  loadMs: number;
  /** Share of all the machine's cores that was busy during the run (the system, the load, the kernel, any neighbour). */
  busy: number;
}

async function throughput(server: Server, sink: Server, file: string, count: number): Promise<Measure> {
  const cpu0 = cpuSeconds(server.pids());
  const load0 = reapedChildrenSeconds() + cpuSeconds(sink.pids());
  const machine0 = machineSeconds();
  const run = await smtpSource(server.port, file, count, SESSIONS);
  const machine1 = machineSeconds();
  const load1 = reapedChildrenSeconds() + cpuSeconds(sink.pids());
  const cpu1 = cpuSeconds(server.pids());
  return {
    rate: run.messages / run.seconds,
    cpuMs: ((cpu1 - cpu0) * 1000) / run.messages,
    loadMs: ((load1 - load0) * 1000) / run.messages,
    busy: (machine1.busy - machine0.busy) / (machine1.total - machine0.total),
  };
}

function countDecisions(log: string, pattern: RegExp): number {
  return readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('"event":"decision"') && pattern.test(l)).length;
}

/** The delivery actions of decision lines that do not match `pattern`, counted (what went wrong, when the check fails). */
function otherDecisions(log: string, pattern: RegExp): string {
  const counts = new Map<string, number>();
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    if (!line.includes('"event":"decision"') || pattern.test(line)) continue;
    const actions = (JSON.parse(line) as { deliveries: { action: string }[] }).deliveries.map((d) => d.action).join('+');
    counts.set(actions, (counts.get(actions) ?? 0) + 1);
  }
  return [...counts].map(([a, n]) => `${a} x${n}`).join(', ') || 'none';
}

function machine(): string {
  const haraka = (JSON.parse(readFileSync(require.resolve('haraka/package.json'), 'utf8')) as { version: string }).version;
  const smtpSourceVersion = (() => {
    try {
      return execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'postfix'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    } catch {
      return 'unknown';
    }
  })();
  const openssl = execFileSync('openssl', ['version']).toString().trim();
  return `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version} (OpenSSL ${process.versions.openssl}), ` +
    `${openssl} (CLI), Haraka ${haraka}, Postfix ${smtpSourceVersion} smtp-source/smtp-sink, ${new Date().toISOString()}`;
}

async function main(): Promise<void> {
  const began = Date.now();
  console.log(`cstp gateway benchmark${QUICK ? ' (QUICK smoke run: figures are indicative only)' : ''}`);
  console.log(machine());
  console.log(`throughput: ${SESSIONS} sessions, one message per session, ${ROUNDS} alternating round(s); latency: ${LATENCY_RATE} msg/s open loop`);
  console.log(`smtp.ini nodes: (a) and (d) 0 (one process); (b), (c) and (e) ${NODES}\n`);

  const work = mkdtempSync(join(tmpdir(), 'cstp-bench-gw-'));
  // smtp-sink writes its dumps as nobody: a directory of its own, open to it.
  const dumpDir = mkdtempSync(join(tmpdir(), 'cstp-bench-dump-'));
  execFileSync('chmod', ['0777', dumpDir]);
  const pem = (name: 'gw-amd' | 'gw-intel'): { cert: string; key: string } => {
    const cert = join(work, `${name}.crt`);
    const key = join(work, `${name}.key`);
    writeFileSync(cert, paperCert(name).toPem());
    writeFileSync(key, paperKey(name).export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    return { cert, key };
  };
  const amd = pem('gw-amd');
  const intel = pem('gw-intel');
  const files: Record<string, { plain: string; inbound: string }> = {};
  for (const size of SIZES) {
    files[size] = { plain: join(work, `plain-${size}.eml`), inbound: join(work, `inbound-${size}.eml`) };
    writeFileSync(files[size].plain, message(BYTES[size]));
  }

  const cstpOpts: SpawnOptions = { nodes: NODES, ...(PROFILE ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`] } : {}) };
  const [sink, captureSink] = await startAll<[Server, Server]>([startSink(), startSink(dumpDir)]);
  const fillAmd = (s: import('../src/store/key-store').KeyStore): void => {
    s.putGatewayIdentity('amd', { key: paperKey('gw-amd'), cert: paperCert('gw-amd'), chain: [] });
    s.addCertificate(paperCert('gw-intel'), 'gateway', ['intel']);
  };
  const fillIntel = (s: import('../src/store/key-store').KeyStore): void => {
    s.putGatewayIdentity('intel', { key: paperKey('gw-intel'), cert: paperCert('gw-intel'), chain: [] });
    s.addCertificate(paperCert('gw-amd'), 'gateway', ['amd']);
  };
  const outboundIni = (next: number): string => `[policy]\nlocal_domains = amd\n[delivery]\nnext_hop = 127.0.0.1:${next}\n`;
  // Loopback clients are not intel's mail servers: everything reaching intel's gateway is inbound.
  const inboundIni = `[policy]\nlocal_networks = 10.99.0.0/16\nlocal_domains = intel\n[delivery]\nnext_hop = 127.0.0.1:${sink.port}\n`;
  let started: [Server, Server, Server, Server, Server, Server];
  try {
    started = await startAll<[Server, Server, Server, Server, Server, Server]>([
      startRelay(sink.port, { nodes: 0 }),
      startRelay(sink.port, { nodes: NODES }),
      startCstp('cstp-out', outboundIni(sink.port), fillAmd, cstpOpts),
      startCstp('cstp-in', inboundIni, fillIntel, cstpOpts),
      startPipeFilter(sink.port, { signerCert: amd.cert, signerKey: amd.key, recipientCert: intel.cert }, { nodes: 0 }),
      startCstp('cstp-capture', outboundIni(captureSink.port), fillAmd),
    ]);
  } catch (err) {
    await Promise.all([sink.stop(), captureSink.stop()]);
    rmSync(dumpDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
    throw err;
  }
  const [relay, relayCluster, out, inb, pipe, capture] = started;
  const servers: Record<Sys, Server> = { a: relay, b: out, c: inb, d: pipe, e: relayCluster };
  const cleanup = async (): Promise<void> => {
    await Promise.all([...Object.values(servers), capture, sink, captureSink].map((s) => s.stop().catch(() => undefined)));
    rmSync(dumpDir, { recursive: true, force: true });
    if (!process.env.CSTP_BENCH_KEEP) rmSync(work, { recursive: true, force: true });
    else console.log(`kept: ${work}`);
  };

  try {
    // The inbound messages are what a cstp gateway sends: one of each size through an outbound gateway
    // configured as (b), captured by a dumping smtp-sink.
    for (const size of SIZES) {
      for (const f of readdirSync(dumpDir)) rmSync(join(dumpDir, f));
      await sendOne(capture.port, dataPayload(readFileSync(files[size].plain)));
      await new Promise((r) => setTimeout(r, 200));
      const [dump] = sinkDumps(dumpDir);
      if (!dump || !/application\/pkcs7-mime/.test(dump)) throw new Error(`the outbound gateway did not encrypt: ${dump?.slice(0, 500)}`);
      writeFileSync(files[size].inbound, dump);
    }
    await capture.stop();
    await captureSink.stop();
    for (const size of SIZES) {
      const p = readFileSync(files[size].plain).length;
      const i = readFileSync(files[size].inbound).length;
      console.log(`${SIZE_LABEL[size]}: plaintext message ${p} bytes; the signed+encrypted message (c) receives ${i} bytes`);
    }

    const fileFor = (sys: Sys, size: string): string => (sys === 'c' ? files[size].inbound : files[size].plain);
    // Warm up every system (JIT, connection paths) before measuring.
    for (const sys of SYSTEMS) {
      await smtpSource(servers[sys].port, fileFor(sys, SIZES[0]), Math.max(SESSIONS, Math.min(100, COUNT[SIZES[0]][sys] / 2)), SESSIONS);
    }
    const decisionsBefore = { b: countDecisions(out.log, /sign\+encrypt/), c: countDecisions(inb.log, /decrypt:decrypted\+verify:good-trusted/) };
    const sent = { b: 0, c: 0 };

    const summary: string[] = [];
    const verdicts: { target: string; figure: string; met: boolean }[] = [];
    for (const size of PARTS.includes('throughput') ? SIZES : []) {
      const rounds: Record<Sys, Measure>[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const round = {} as Record<Sys, Measure>;
        for (const sys of rotate(SYSTEMS, r)) {
          round[sys] = await throughput(servers[sys], sink, fileFor(sys, size), COUNT[size][sys]);
          if (sys === 'b' || sys === 'c') sent[sys] += COUNT[size][sys];
        }
        rounds.push(round);
        console.log(`  ${SIZE_LABEL[size]} round ${r + 1}/${ROUNDS}: ` + SYSTEMS.map((s) => `${s} ${fmt(round[s].rate)}`).join(', ') + ' msg/s');
      }
      const med = (sys: Sys, k: keyof Measure): number => median(rounds.map((r) => r[sys][k]));
      const ratio = (x: Sys, y: Sys): number[] => rounds.map((r) => r[x].rate / r[y].rate);
      const lines = [
        `throughput, ${SIZE_LABEL[size]}, ${SESSIONS} sessions, ${ROUNDS} round(s), medians`,
        `${'system'.padEnd(26)}${pad('msg/s', 9)}${pad('CPU ms/msg', 12)}${pad('load ms/msg', 13)}${pad('busy', 7)}${pad('msgs/round', 12)}   per-round msg/s`,
        ...SYSTEMS.map((s) =>
          `${LABEL[s].padEnd(26)}${pad(fmt(med(s, 'rate')), 9)}${pad(fmt(med(s, 'cpuMs')), 12)}${pad(fmt(med(s, 'loadMs')), 13)}` +
          `${pad(`${Math.round(med(s, 'busy') * 100)}%`, 7)}${pad(String(COUNT[size][s]), 12)}   ${rounds.map((r) => fmt(r[s].rate)).join(' ')}`),
        '(load: smtp-source and smtp-sink; busy: all cores of the machine during the run)',
      ];
      const target = size === '10k' ? 1.0 : 0.8;
      for (const [x, y, t] of [['b', 'a', target], ['c', 'a', target], ['b', 'd', 10]] as [Sys, Sys, number][]) {
        const rs = ratio(x, y);
        const m = median(rs);
        lines.push(`ratio ${x}/${y}: ${fmt(m, 2)}x (rounds ${rs.map((v) => v.toFixed(2)).join(' ')}); target >= ${t.toFixed(1)}x: ${m >= t ? 'MET' : 'NOT MET'}`);
        verdicts.push({ target: `${SIZE_LABEL[size]} ${x}/${y} >= ${t.toFixed(1)}x`, figure: `${fmt(m, 2)}x`, met: m >= t });
      }
      for (const x of ['b', 'c'] as Sys[]) {
        const rs = ratio(x, 'e');
        lines.push(`ratio ${x}/e: ${fmt(median(rs), 2)}x (rounds ${rs.map((v) => v.toFixed(2)).join(' ')}); no target: the relay on as many cores as cstp`);
      }
      // What the cores allow: a system whose own CPU per message is C, with the load taking L per message, cannot pass
      // cores / (C + L) messages per second, however its work is spread.
      const cores = cpus().length;
      for (const x of ['b', 'c'] as Sys[]) {
        const ceiling = (cores * 1000) / (med(x, 'cpuMs') + med(x, 'loadMs'));
        lines.push(`ceiling ${x}: ${cores} cores / (${fmt(med(x, 'cpuMs'))} + ${fmt(med(x, 'loadMs'))} ms) = ${fmt(ceiling)} msg/s, ${fmt(ceiling / med('a', 'rate'), 2)}x (a)`);
      }
      console.log(`\n${lines.join('\n')}\n`);
      summary.push(lines.join('\n'));
    }

    if (SIZES.includes('10k') && PARTS.includes('latency')) {
      const payload = { a: dataPayload(readFileSync(files['10k'].plain)), b: dataPayload(readFileSync(files['10k'].plain)), c: dataPayload(readFileSync(files['10k'].inbound)) };
      const samples: Record<'a' | 'b' | 'c' | 'sink', number[]> = { a: [], b: [], c: [], sink: [] };
      for (let r = 0; r < LATENCY_ROUNDS; r++) {
        for (const sys of rotate(['a', 'b', 'c', 'sink'] as const, r)) {
          const port = sys === 'sink' ? sink.port : servers[sys].port;
          samples[sys].push(...(await steadyLatency(port, sys === 'sink' ? payload.a : payload[sys], LATENCY_RATE, LATENCY_PER_ROUND)));
          if (sys === 'b' || sys === 'c') sent[sys] += LATENCY_PER_ROUND;
        }
      }
      const lines = [
        `latency, 10 KB, ${LATENCY_RATE} msg/s open loop, one message per connection (connect to the reply to the final dot), ` +
          `${LATENCY_ROUNDS * LATENCY_PER_ROUND} messages each, ms`,
        `${'system'.padEnd(26)}${pad('p50', 9)}${pad('p99', 9)}${pad('+p50', 9)}${pad('+p99', 9)}`,
      ];
      lines.push(`${'smtp-sink direct (no hop)'.padEnd(26)}${pad(fmt(percentile(samples.sink, 50)), 9)}${pad(fmt(percentile(samples.sink, 99)), 9)}`);
      for (const sys of ['a', 'b', 'c'] as const) {
        const p50 = percentile(samples[sys], 50);
        const p99 = percentile(samples[sys], 99);
        const add50 = p50 - percentile(samples.a, 50);
        const add99 = p99 - percentile(samples.a, 99);
        lines.push(`${LABEL[sys].padEnd(26)}${pad(fmt(p50), 9)}${pad(fmt(p99), 9)}${pad(sys === 'a' ? '' : fmt(add50), 9)}${pad(sys === 'a' ? '' : fmt(add99), 9)}`);
        if (sys !== 'a') {
          const hop = p50 - percentile(samples.sink, 50);
          lines.push(`  added p50 by ${sys} over (a): ${fmt(add50)} ms; target <= 3 ms: ${add50 <= 3 ? 'MET' : 'NOT MET'}; over no hop at all: ${fmt(hop)} ms`);
          verdicts.push({ target: `10 KB latency ${sys}: added p50 <= 3 ms`, figure: `${fmt(add50)} ms`, met: add50 <= 3 });
        }
      }
      console.log(`${lines.join('\n')}\n`);
      summary.push(lines.join('\n'));
    }

    // Every message counted for (b) and (c) must have been secured, not passed through.
    const secured = { b: countDecisions(out.log, /sign\+encrypt/) - decisionsBefore.b, c: countDecisions(inb.log, /decrypt:decrypted\+verify:good-trusted/) - decisionsBefore.c };
    const checks = `decision lines: (b) ${secured.b}/${sent.b} sign+encrypt, (c) ${secured.c}/${sent.c} decrypt:decrypted+verify:good-trusted`;
    if (secured.b !== sent.b || secured.c !== sent.c) {
      const others = `(b) ${otherDecisions(out.log, /sign\+encrypt/)}; (c) ${otherDecisions(inb.log, /decrypt:decrypted\+verify:good-trusted/)}`;
      throw new Error(`not every message was secured: ${checks}; other decision lines: ${others}`);
    }
    console.log(checks);
    const rss = (sys: Sys): number => servers[sys].pids().reduce((sum, pid) => sum + rssMb(pid), 0);
    console.log(`RSS at the end, all processes of each system (MB): ${SYSTEMS.map((s) => `${s} ${fmt(rss(s), 0)}`).join(', ')}`);
    console.log(`commands: ${smtpSourceCommand('PORT', 'FILE.eml', 'N', SESSIONS)}; smtp-sink${process.getuid?.() === 0 ? ' -u nobody' : ''} -m 1000 127.0.0.1:PORT 1024`);
    console.log('\nsummary');
    for (const v of verdicts) console.log(`  ${v.target.padEnd(40)} ${v.figure.padStart(8)}  ${v.met ? 'MET' : 'NOT MET'}`);
    console.log(`\ntook ${Math.round((Date.now() - began) / 1000)} s`);
  } finally {
    await cleanup();
  }
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
