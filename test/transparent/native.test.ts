/**
 * The transparent sockets of the inline bridge, for real in network namespaces: a connection keeps a foreign
 * source address and the server sees it; a listener accepts a TPROXY-diverted connection whose local address is
 * the original destination; without the capability, connections fall back to the host's own address, once.
 *
 *   client ns 192.0.2.1 (the "box": makes the transparent sockets) ---veth--- server ns 192.0.2.2
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Lab, netnsUnavailable } from '../netns/lab';
import { divertInto } from './divert';

const PROBE = join(__dirname, 'fixtures', 'probe.js');
const SERVER = `require('net').createServer((s) => s.on('error', () => {}).end('220 peer ' + s.remoteAddress + '\\r\\n')).listen(8025, '192.0.2.2', () => console.log('up'))`;
// Root without CAP_NET_RAW and CAP_NET_ADMIN: still able to read the checkout wherever CI put it.
const UNPRIVILEGED = ['setpriv', '--inh-caps=-all', '--bounding-set=-net_raw,-net_admin'];

describe('transparent sockets (native addon)', { skip: netnsUnavailable([['setpriv', '--version']]) }, () => {
  const lab = new Lab();

  const probe = async (args: string[], wrap: string[] = []): Promise<Record<string, unknown>> => {
    const r = await lab.exec('box', [...wrap, process.execPath, PROBE, ...args], { timeout: 10_000 });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    assert.ok(line.startsWith('{'), `probe printed no result: ${r.stdout}\n${r.stderr}`);
    return JSON.parse(line) as Record<string, unknown>;
  };

  before(async () => {
    await lab.ns('box');
    await lab.ns('server');
    await lab.veth('box', 'eth0', 'server', 'eth0');
    await lab.addr('box', 'eth0', '192.0.2.1/24');
    await lab.addr('server', 'eth0', '192.0.2.2/24');
    // The server answers 192.0.2.77 (a foreign address the box uses) through the box, as a bridge would.
    const mac = (await lab.exec('box', ['cat', '/sys/class/net/eth0/address'], { check: true })).stdout.trim();
    await lab.exec('server', ['ip', 'neigh', 'replace', '192.0.2.77', 'lladdr', mac, 'dev', 'eth0', 'nud', 'permanent'], { check: true });
    await lab.exec('server', ['ip', 'route', 'add', '198.51.100.25/32', 'via', '192.0.2.1'], { check: true });
    // The box takes replies to its transparent sockets, and diverts TCP to 198.51.100.25:25 into port 10025.
    await divertInto(lab, 'box', 'ip daddr 198.51.100.25 tcp dport 25');
    const server = lab.spawn('server', [process.execPath, '-e', SERVER]);
    await new Promise((ready) => server.stdout!.once('data', ready));
  });

  after(() => lab.destroy());

  it("connects with the client's address as source: the server sees it", async () => {
    assert.deepEqual(await probe(['connect', '192.0.2.77', '192.0.2.2', '8025']), { line: '220 peer 192.0.2.77' });
  });

  it('names the errno of a refused connection', async () => {
    assert.deepEqual(await probe(['connect', '192.0.2.77', '192.0.2.2', '8026']), { error: 'ECONNREFUSED' });
  });

  it('refuses a source and destination of different families', async () => {
    assert.deepEqual(await probe(['connect', '2001:db8::77', '192.0.2.2', '8025']), { error: 'EAFNOSUPPORT' });
  });

  it('accepts a diverted connection: its local address is the original destination', async () => {
    const listener = lab.spawn('box', [process.execPath, PROBE, 'listen', '0.0.0.0', '10025']);
    let out = '';
    listener.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await lab.waitListening('box', 10025);
    const client = await lab.exec('server', [process.execPath, '-e',
      `require('net').connect(25, '198.51.100.25').on('data', (d) => { console.log(d.toString().trim()); process.exit(0) })`], { timeout: 5_000 });
    assert.equal(client.stdout.trim(), '220 diverted');
    await new Promise((done) => listener.once('exit', done));
    const accepted = JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
    assert.deepEqual(accepted, { local: '198.51.100.25:25', remote: '192.0.2.2' });
  });

  it('without CAP_NET_RAW/CAP_NET_ADMIN: listening fails with EPERM', async () => {
    assert.deepEqual(await probe(['listen', '0.0.0.0', '10026'], UNPRIVILEGED), { error: 'EPERM' });
  });

  it("without the capability, connections use the host's own address and say so once", async () => {
    const result = await probe(['open', '192.0.2.77', '192.0.2.2', '8025'], UNPRIVILEGED);
    assert.equal(result.line, '220 peer 192.0.2.1');
    const fallbacks = result.fallbacks as string[];
    assert.equal(fallbacks.length, 1);
    assert.match(fallbacks[0], /this host's address, not the client's: .*EPERM/);
  });

  it("with the capability, openConnection keeps the client's address", async () => {
    assert.deepEqual(await probe(['open', '192.0.2.77', '192.0.2.2', '8025']), { line: '220 peer 192.0.2.77', fallbacks: [] });
  });
});
