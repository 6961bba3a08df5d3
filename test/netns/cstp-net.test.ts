/**
 * scripts/cstp-net in network namespaces, in both bridge modes:
 *
 *   lan (client 192.0.2.10, 2001:db8::10) -- lan0 [box: br0 = lan0 + wan0, cstp-net] wan0 -- wan (server 192.0.2.20,
 *   2001:db8::20; router 192.0.2.254) -- far (server 198.51.100.20 behind the router)
 *
 * The gateway is stood in for by test/netns/fixtures/tp.py: a listener with IP_TRANSPARENT that opens the outbound
 * leg bound to the client's address. Needs root, iproute2, nftables and python3; skipped with the reason otherwise.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Lab, netnsUnavailable, type ExecResult } from './lab';

const REPO = resolve(__dirname, '..', '..', '..');
const SCRIPT = join(REPO, 'scripts', 'cstp-net');
const TP = join(REPO, 'test', 'netns', 'fixtures', 'tp.py');
const skip = netnsUnavailable([['python3', '--version']]);

const CLIENT_MAC = '02:00:00:00:00:10';
const SERVER_MAC = '02:00:00:00:00:20';
const BRIDGE_MAC = '02:00:00:00:00:01';

/** Collects a child's stdout lines. */
function output(child: ChildProcess): () => string {
  let text = '';
  child.stdout?.on('data', (c: Buffer) => (text += c.toString()));
  return () => text;
}

async function until(what: string, get: () => string, re: RegExp, ms = 5_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = get().match(re);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`${what}: no ${re} after ${ms} ms in:\n${get()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const mode of ['ip', 'transparent'] as const) {
  describe(`cstp-net in ${mode} mode`, { skip }, () => {
    const lab = new Lab();
    const stateDir = mkdtempSync(join(tmpdir(), 'cstp-net-state-'));
    const env = { ...process.env, CSTP_NET_STATE_DIR: stateDir };
    const base = ['--lan-if', 'lan0', '--wan-if', 'wan0', '--mode', mode, '--smtp-ports', '25,587'];
    if (mode === 'ip') base.push('--address', '192.0.2.1/24', '--gateway', '192.0.2.254');
    let server: () => string;
    let far: () => string;

    // An empty settings file: a /etc/cstp/net.conf on the test machine is never read.
    const net = (cmd: string, ...args: string[]): Promise<ExecResult> =>
      lab.exec('box', [SCRIPT, cmd, '--config', '/dev/null', ...args], { env, timeout: 30_000 });
    const connectFrom = async (ns: string, host: string, port: number, secs = 3): Promise<string> =>
      (await lab.exec(ns, ['python3', TP, 'connect', host, String(port), String(secs)], { timeout: (secs + 5) * 1000 })).stdout.trim();
    const connect = (host: string, port: number, secs = 3): Promise<string> => connectFrom('lan', host, port, secs);
    const ruleset = async (): Promise<string> => (await lab.exec('box', ['nft', 'list', 'ruleset'], { check: true })).stdout;

    before(async () => {
      for (const ns of ['lan', 'box', 'wan', 'far', 'mgmt']) await lab.ns(ns);
      await lab.veth('lan', 'eth0', 'box', 'lan0', CLIENT_MAC);
      await lab.veth('wan', 'eth0', 'box', 'wan0', SERVER_MAC);
      await lab.veth('wan', 'r0', 'far', 'eth0');
      // A management NIC on the box (used by the transparent-mode test of a default route that is not the bridge).
      await lab.veth('box', 'mgmt0', 'mgmt', 'eth0');
      await lab.addr('box', 'mgmt0', '198.51.100.129/25');
      await lab.addr('mgmt', 'eth0', '198.51.100.130/25');
      await lab.addr('lan', 'eth0', '192.0.2.10/24');
      await lab.addr('lan', 'eth0', '2001:db8::10/64');
      await lab.exec('lan', ['ip', 'route', 'add', '198.51.100.0/24', 'via', '192.0.2.254'], { check: true });
      await lab.addr('wan', 'eth0', '192.0.2.20/24');
      await lab.addr('wan', 'eth0', '192.0.2.254/24');
      await lab.addr('wan', 'eth0', '2001:db8::20/64');
      await lab.addr('wan', 'r0', '198.51.100.1/24');
      await lab.exec('wan', ['sysctl', '-qw', 'net.ipv4.ip_forward=1'], { check: true });
      await lab.addr('far', 'eth0', '198.51.100.20/24');
      await lab.exec('far', ['ip', 'route', 'add', 'default', 'via', '198.51.100.1'], { check: true });
      server = output(lab.spawn('wan', ['python3', TP, 'serve', '25']));
      lab.spawn('wan', ['python3', TP, 'serve', '8080']);
      far = output(lab.spawn('far', ['python3', TP, 'serve', '25']));
      // ip mode starts from an existing bridge without ports (down must keep it); transparent mode lets up create it.
      if (mode === 'ip') await lab.bridge('box', 'br0', [], BRIDGE_MAC);
      await lab.waitListening('wan', 25, 15_000);
      await lab.waitListening('wan', 8080, 15_000);
      await lab.waitListening('far', 25, 15_000);
      const up = await net('up', ...base);
      assert.equal(up.code, 0, up.stderr + up.stdout);
    });

    after(async () => {
      await lab.destroy();
      rmSync(stateDir, { recursive: true, force: true });
    });

    it('up a second time changes nothing, and status is complete', async () => {
      const rules1 = await ruleset();
      const status1 = await net('status');
      assert.equal(status1.code, 0, status1.stdout + status1.stderr);
      const again = await net('up', ...base);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(await ruleset(), rules1);
      assert.equal((await net('status')).stdout, status1.stdout);
      assert.match(rules1, /table bridge cstp_br/);
      assert.match(rules1, /table inet cstp_ip/);
      assert.match(rules1, /table netdev cstp_v6/);
      assert.match(rules1, /table netdev cstp_vlan/);
      if (mode === 'transparent') assert.match(rules1, /table netdev cstp_learn/);
      else assert.doesNotMatch(rules1, /cstp_learn/);
    });

    it('status --json reports every check', async () => {
      const r = await net('status', '--json');
      assert.equal(r.code, 0);
      const s = JSON.parse(r.stdout) as { ok: boolean; mode: string; bridge: string; checks: { name: string; ok: boolean; expected: string; actual: string; required: boolean }[] };
      assert.equal(s.ok, true);
      assert.equal(s.mode, mode);
      assert.equal(s.bridge, 'br0');
      const listener = s.checks.find((c) => c.name === 'listener');
      assert.deepEqual([listener?.ok, listener?.required], [false, false]);
      assert.ok(s.checks.filter((c) => c.required).every((c) => c.ok));
      for (const name of ['bridge', 'port LAN_IF', 'port WAN_IF', 'sysctl net.bridge.bridge-nf-call-iptables', 'rule fwmark', 'route local', 'nft bridge cstp_br', 'nft inet cstp_ip']) {
        assert.ok(s.checks.some((c) => c.name === name), name);
      }
    });

    it('with no gateway listening, an SMTP connection is reset at once (fail closed), for every SMTP port', async () => {
      for (const port of [25, 587]) {
        // The fixture reports how long connect() took until the RST (python's start-up is not part of it).
        const r = await connect('192.0.2.20', port, 3);
        const m = r.match(/^REFUSED (\d+\.\d+)$/);
        assert.ok(m, `port ${port}: ${r}`);
        assert.ok(Number(m[1]) < 2, `reset after ${m[1]} s`);
      }
      assert.equal(server(), '', 'nothing reached the server in plaintext');
    });

    it('resets IPv6 SMTP and bridges other IPv6 untouched', async () => {
      assert.match(await connect('2001:db8::20', 25, 3), /^REFUSED/);
      assert.match(await connect('2001:db8::20', 8080, 3), /^CONNECTED 220 server local=2001:db8::20:8080 peer=2001:db8::10:/);
    });

    if (mode === 'ip') {
      it('IPV6=pass bridges IPv6 SMTP untouched; back to reject', async () => {
        assert.equal((await net('up', ...base, '--ipv6', 'pass')).code, 0);
        assert.doesNotMatch(await ruleset(), /cstp_v6/);
        assert.match(await connect('2001:db8::20', 25, 3), /^CONNECTED 220 server local=2001:db8::20:25 peer=2001:db8::10:/);
        assert.equal((await net('up', ...base)).code, 0);
        assert.match(await connect('2001:db8::20', 25, 3), /^REFUSED/);
      });
    }

    /**
     * Sends 802.1Q-tagged SYNs from lan to the server's MAC, to SMTP and then to 8080 (a sentinel that always crosses,
     * so no timeout decides anything); returns whether the SMTP one reached the wan side.
     */
    const taggedSmtpCrosses = async (): Promise<boolean> => {
      const child = lab.spawn('wan', ['python3', TP, 'sniff', 'eth0', '10', '25', '8080']);
      const seen = output(child);
      const done = new Promise((r) => child.once('exit', r));
      await until('sniffer', seen, /READY/, 10_000);
      await lab.exec('lan', ['python3', TP, 'tagged-syn', 'eth0', CLIENT_MAC, SERVER_MAC, '10', '198.51.100.10', '198.51.100.20', '25', '8080'], { check: true });
      await done;
      assert.match(seen(), /^SEEN 8080$/m, 'other tagged traffic crosses the bridge');
      return /^SEEN 25$/m.test(seen());
    };

    if (mode === 'ip') {
      it('drops 802.1Q-tagged SMTP (it cannot be diverted) and bridges other tagged traffic; VLAN=pass lets it cross', async () => {
        assert.equal(await taggedSmtpCrosses(), false, 'tagged SMTP blocked');
        assert.equal((await net('up', ...base, '--vlan', 'pass')).code, 0);
        assert.doesNotMatch(await ruleset(), /cstp_vlan/);
        assert.equal(await taggedSmtpCrosses(), true, 'VLAN=pass bridges tagged SMTP');
        assert.equal((await net('up', ...base)).code, 0);
        assert.match(await ruleset(), /table netdev cstp_vlan/);
      });
    }

    describe('with the transparent listener', () => {
      let proxy: () => string;
      let proxyChild: ChildProcess;
      before(async () => {
        proxyChild = lab.spawn('box', ['python3', TP, 'proxy', '10025']);
        proxy = output(proxyChild);
        await lab.waitListening('box', 10025, 15_000);
      });

      it('diverts SMTP to the listener with the original destination; the server sees the client address', async () => {
        const r = await connect('192.0.2.20', 25);
        assert.match(r, /^CONNECTED 220 proxy 220 server local=192\.0\.2\.20:25 peer=192\.0\.2\.10:\d+$/);
        await until('proxy', proxy, /ACCEPT local=192\.0\.2\.20:25 peer=192\.0\.2\.10:\d+/);
        await until('server', server, /server local=192\.0\.2\.20:25 peer=192\.0\.2\.10:\d+/);
        assert.equal(proxy().match(/^ACCEPT/gm)?.length, 1, 'the outbound leg was not diverted back into the box');
        assert.equal((await net('status')).stdout.match(/^ok +listener/m)?.length, 1);
      });

      it('diverts submission (587) too when configured', async () => {
        // Nothing listens on 587 at the server: the proxy accepts, its outbound leg is refused.
        await connect('192.0.2.20', 587, 2);
        await until('proxy', proxy, /ACCEPT local=192\.0\.2\.20:587 peer=192\.0\.2\.10:/);
      });

      it('diverts inbound SMTP (wan to lan) the same way', async () => {
        const lanServer = output(lab.spawn('lan', ['python3', TP, 'serve', '25']));
        await lab.waitListening('lan', 25, 15_000);
        assert.match(await connectFrom('wan', '192.0.2.10', 25), /^CONNECTED 220 proxy 220 server local=192\.0\.2\.10:25 peer=192\.0\.2\.20:\d+$/);
        await until('proxy', proxy, /ACCEPT local=192\.0\.2\.10:25 peer=192\.0\.2\.20:/);
        await until('lan server', lanServer, /peer=192\.0\.2\.20:/);
      });

      it('diverts SMTP to a server behind a router', async () => {
        assert.match(await connect('198.51.100.20', 25), /^CONNECTED 220 proxy 220 server local=198\.51\.100\.20:25 peer=192\.0\.2\.10:/);
        await until('far server', far, /peer=192\.0\.2\.10:/);
      });

      it('lets ping and other TCP ports cross the bridge untouched', async () => {
        const accepted = proxy().match(/^ACCEPT/gm)?.length;
        const ping = await lab.exec('lan', ['python3', TP, 'ping', '192.0.2.20', '2']);
        assert.equal(ping.stdout.trim(), 'REPLY');
        assert.match(await connect('192.0.2.20', 8080), /^CONNECTED 220 server local=192\.0\.2\.20:8080 peer=192\.0\.2\.10:/);
        assert.equal(proxy().match(/^ACCEPT/gm)?.length, accepted, 'nothing reached the box');
      });

      if (mode === 'ip') {
        it("never diverts the box's own connections (loop safety)", async () => {
          const r = await lab.exec('box', ['python3', TP, 'connect', '192.0.2.20', '25', '3']);
          assert.match(r.stdout, /^CONNECTED 220 server local=192\.0\.2\.20:25 peer=192\.0\.2\.1:/);
        });
      }

      if (mode === 'transparent') {
        it("puts no frame with the box's MACs on the wire and learns the peers' MACs in the kernel", async () => {
          const macs: string[] = [];
          for (const dev of ['br0', 'lan0', 'wan0']) {
            macs.push((await lab.exec('box', ['cat', `/sys/class/net/${dev}/address`], { check: true })).stdout.trim());
          }
          const watchers = ['lan', 'wan'].map((ns) => {
            const child = lab.spawn(ns, ['python3', TP, 'macwatch', 'eth0', ...macs]);
            return { child, out: output(child), exited: new Promise((r) => child.once('exit', r)) };
          });
          for (const w of watchers) await until('macwatch', w.out, /READY/, 10_000);
          assert.match(await connect('192.0.2.20', 25), /^CONNECTED 220 proxy/);
          assert.match(await connect('198.51.100.20', 25), /^CONNECTED 220 proxy/);
          for (const w of watchers) w.child.kill('SIGTERM');
          for (const w of watchers) {
            await w.exited;
            const m = w.out().match(/FRAMES (\d+) WITH (\d+)/);
            assert.ok(m && Number(m[1]) >= 10, w.out());
            assert.equal(m[2], '0', `frames with the box's MACs ${macs.join(' ')}: ${w.out()}`);
          }
          const map = (await lab.exec('box', ['nft', 'list', 'map', 'netdev', 'cstp_learn', 'ip2mac'], { check: true })).stdout;
          assert.match(map, new RegExp(`192\\.0\\.2\\.10 [^:]*: ${CLIENT_MAC}`));
          assert.match(map, new RegExp(`192\\.0\\.2\\.20 [^:]*: ${SERVER_MAC}`));
        });

        it("sends the gateway's packets through the bridge when the default route is a management NIC's", async () => {
          const box = (argv: string[]): Promise<ExecResult> => lab.exec('box', argv, { check: true });
          await box(['ip', 'route', 'del', 'default', 'dev', 'br0']);
          await box(['ip', 'route', 'add', 'default', 'via', '198.51.100.130', 'dev', 'mgmt0']);
          try {
            const up = await net('up', ...base);
            assert.equal(up.code, 0, up.stderr);
            assert.match((await box(['ip', 'route', 'show', 'default'])).stdout, /^default via 198\.51\.100\.130 dev mgmt0 *\n$/);
            assert.equal((await net('status')).code, 0);
            assert.match(await connect('192.0.2.20', 25), /^CONNECTED 220 proxy 220 server local=192\.0\.2\.20:25 peer=192\.0\.2\.10:/);
            assert.match(await connect('198.51.100.20', 25), /^CONNECTED 220 proxy 220 server local=198\.51\.100\.20:25 peer=192\.0\.2\.10:/);
          } finally {
            await box(['ip', 'route', 'del', 'default', 'via', '198.51.100.130']);
          }
          assert.equal((await net('up', ...base)).code, 0);
          assert.match((await box(['ip', 'route', 'show', 'default'])).stdout, /^default dev br0 /);
        });

        it('follows a client whose MAC address changed', async () => {
          const changed = '02:00:00:00:00:11';
          const learned = async (): Promise<string> =>
            (await lab.exec('box', ['nft', 'list', 'map', 'netdev', 'cstp_learn', 'ip2mac'], { check: true })).stdout;
          await lab.exec('lan', ['ip', 'link', 'set', 'eth0', 'address', changed], { check: true });
          // Nothing has crossed since: the box still holds the old MAC, and only the new pair can replace it.
          assert.match(await learned(), new RegExp(`192\\.0\\.2\\.10 [^:]*: ${CLIENT_MAC}`));
          assert.match(await connect('192.0.2.20', 25, 3), /^CONNECTED 220 proxy 220 server local=192\.0\.2\.20:25 peer=192\.0\.2\.10:/);
          const map = (await lab.exec('box', ['nft', 'list', 'map', 'netdev', 'cstp_learn', 'ip2mac'], { check: true })).stdout;
          assert.match(map, new RegExp(`192\\.0\\.2\\.10 [^:]*: ${changed}`));
        });
      }

      it('falls back to refusing (not black-holing, not bypassing) when the listener stops', async () => {
        const exited = new Promise((done) => proxyChild.once('exit', done));
        proxyChild.kill('SIGTERM');
        await exited;
        for (let i = 0; i < 50; i++) {
          const ss = await lab.exec('box', ['ss', '-ltnH', 'sport = :10025']);
          if (ss.stdout.trim() === '') break;
          await new Promise((r) => setTimeout(r, 20));
        }
        const before = server().length;
        assert.match(await connect('192.0.2.20', 25, 3), /^REFUSED/);
        assert.equal(server().length, before);
      });
    });

    it('status exits 1 and names what is missing; up repairs it', async () => {
      await lab.exec('box', ['nft', 'delete', 'table', 'inet', 'cstp_ip'], { check: true });
      await lab.exec('box', ['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1'], { check: true });
      const r = await net('status');
      assert.equal(r.code, 1);
      assert.match(r.stdout, /^MISSING +nft inet cstp_ip: expected present, actual missing$/m);
      assert.match(r.stdout, /^MISSING +sysctl net\.bridge\.bridge-nf-call-iptables: expected 0, actual 1$/m);
      assert.equal((await net('up', ...base)).code, 0);
      assert.equal((await net('status')).code, 0);
    });

    it('down removes every table, rule and route it added, and the bridge it created; a second down is harmless', async () => {
      const down = await net('down');
      assert.equal(down.code, 0, down.stderr);
      assert.doesNotMatch(await ruleset(), /cstp_/);
      const rules = (await lab.exec('box', ['ip', 'rule', 'list'])).stdout;
      assert.doesNotMatch(rules, /fwmark/);
      assert.equal((await lab.exec('box', ['ip', 'route', 'show', 'table', '100'])).stdout.trim(), '');
      assert.equal((await lab.exec('box', ['ip', 'route', 'show', 'table', '101'])).stdout.trim(), '');
      assert.equal((await lab.exec('box', ['ip', 'route', 'show', 'default'])).stdout.trim(), '');
      if (mode === 'transparent') {
        assert.notEqual((await lab.exec('box', ['ip', 'link', 'show', 'br0'])).code, 0, 'the bridge up created is deleted');
      } else {
        const links = (await lab.exec('box', ['ip', '-o', 'link', 'show'], { check: true })).stdout;
        assert.match(links, /br0: /, 'the existing bridge is kept');
        assert.doesNotMatch(links, /master br0/, 'the ports up added are released');
        assert.equal((await lab.exec('box', ['ip', '-4', 'addr', 'show', 'dev', 'br0'])).stdout.trim(), '', 'the address is removed');
        assert.equal((await lab.exec('box', ['sysctl', '-n', 'net.bridge.bridge-nf-call-iptables'])).stdout.trim(), '1', 'sysctl restored');
      }
      const again = await net('down');
      assert.equal(again.code, 0, again.stderr);
      const status = await net('status', ...base);
      assert.equal(status.code, 1);
      const missing = ['port LAN_IF', 'port WAN_IF', 'rule fwmark', 'route local', 'nft bridge cstp_br', 'nft inet cstp_ip'];
      if (mode === 'transparent') missing.push('bridge', 'arp', 'route default');
      for (const name of missing) {
        assert.match(status.stdout, new RegExp(`^MISSING +${name}:`, 'm'));
      }
    });
  });
}
