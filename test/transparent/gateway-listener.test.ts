/**
 * The gateway's transparent listener (plugin cstp-transparent) in a network namespace: it accepts diverted
 * connections on [transparent] listen and refuses one whose original destination is the box itself (a loop),
 * as one process (nodes=0) and as a cluster (nodes=2: the master opens the socket, the workers accept on it). The full bridge with real mail servers is test/netns/paper-bridge.test.ts.
 *
 *   client ns 192.0.2.2 ---veth--- box ns 192.0.2.1 (gateway, TPROXY of tcp/25 to :10025)
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HARAKA_BIN, makeInstance, removeInstance } from '../gateway/harness';
import { Lab, netnsUnavailable } from '../netns/lab';
import { divertInto } from './divert';

/** The first reply line a client gets after connecting to host:25 from the client namespace. */
const GREETING = (host: string): string =>
  `const s = require('net').connect(25, '${host}'); s.on('data', (d) => { console.log(d.toString().split('\\r\\n')[0]); process.exit(0) }); s.on('error', (e) => { console.log(e.code); process.exit(0) })`;

for (const nodes of [0, 2]) describe(`the transparent listener of the gateway (nodes=${nodes})`, { skip: netnsUnavailable() }, () => {
  const lab = new Lab();
  let dir: string;
  let out = '';

  before(async () => {
    await lab.ns('box');
    await lab.ns('client');
    await lab.veth('box', 'eth0', 'client', 'eth0');
    await lab.addr('box', 'eth0', '192.0.2.1/24');
    await lab.addr('client', 'eth0', '192.0.2.2/24');
    await lab.exec('client', ['ip', 'route', 'add', '198.51.100.0/24', 'via', '192.0.2.1'], { check: true });
    await divertInto(lab, 'box', 'meta l4proto tcp th dport 25');
    dir = makeInstance(2525, '[transparent]\nlisten = 0.0.0.0:10025\n');
    const smtpIni = join(dir, 'config', 'smtp.ini');
    writeFileSync(smtpIni, readFileSync(smtpIni, 'utf8').replace(/^nodes=.*$/m, `nodes=${nodes}`));
    const gw = lab.spawn('box', [process.execPath, HARAKA_BIN, '-c', dir], { cwd: dir, env: { ...process.env, CSTP_STORE_PASSPHRASE: 'listener test' } });
    gw.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    gw.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 30_000;
    const listeners = (): number => out.split('Listening for diverted connections').length - 1;
    while (listeners() < Math.max(1, nodes)) {
      if (gw.exitCode !== null) throw new Error(`gateway exited:\n${out}`);
      if (Date.now() > deadline) throw new Error(`gateway not listening:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  after(async () => {
    await lab.destroy();
    if (dir) removeInstance(dir);
  });

  it('says where it accepts diverted connections', () => {
    if (nodes === 0) {
      assert.match(out, /Listening for diverted connections on 0\.0\.0\.0:10025 \(\[transparent\] listen = 0\.0\.0\.0:10025\)/);
    } else {
      assert.match(out, /Diverted connections on fd \d+ \(\[transparent\] listen = 0\.0\.0\.0:10025\), accepted for the workers/);
      assert.equal(out.match(/Listening for diverted connections on .* \(from the cluster master\)/g)?.length, nodes, out);
    }
  });

  it('greets clients diverted on their way to another server', async () => {
    for (let i = 0; i < 4; i++) {
      const r = await lab.exec('client', [process.execPath, '-e', GREETING('198.51.100.25')], { timeout: 10_000 });
      assert.match(r.stdout.trim(), /^220 /);
    }
  });

  it("refuses a diverted connection to the box's own address (it would loop back into the gateway)", async () => {
    const r = await lab.exec('client', [process.execPath, '-e', GREETING('192.0.2.1')], { timeout: 10_000 });
    assert.equal(r.stdout.trim(), '554 5.4.6 routing loop: this gateway is the destination');
  });
});
