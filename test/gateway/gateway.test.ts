/**
 * The real gateway end to end: Haraka started as a child process with the repository's config/ and plugins/,
 * spoken to with swaks, stopped with SIGINT.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, jsonLines, listening, makeInstance, removeInstance, spawnGateway, stopGateway, swaks, type Gateway } from './harness';

describe('gateway on its default configuration', () => {
  let dir: string;
  let port: number;
  let gw: Gateway;

  before(async () => {
    port = await freePort();
    dir = makeInstance(port);
    gw = spawnGateway(dir);
    await listening(gw);
  });

  after(async () => {
    if (gw) await stopGateway(gw);
    if (dir) removeInstance(dir);
  });

  it('generates a STARTTLS key readable by its owner only', () => {
    assert.equal(statSync(join(dir, 'var', 'tls', 'key.pem')).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'var')).mode & 0o777, 0o700);
  });

  it('offers STARTTLS in its EHLO reply', async () => {
    const { output } = await swaks(port, ['--quit-after', 'EHLO']);
    assert.match(output, /<- {2}250[- ]STARTTLS/);
  });

  it('completes a STARTTLS handshake', async () => {
    const { code, output } = await swaks(port, ['--tls', '--quit-after', 'EHLO']);
    assert.equal(code, 0, output);
    assert.match(output, /TLS started with cipher/);
  });

  it('answers MAIL with a prompt 4xx when the original destination (127.0.0.1:25 here) does not answer', async () => {
    const started = Date.now();
    const { code, output } = await swaks(port, []);
    assert.notEqual(code, 0);
    assert.match(output, /<\*\* 4\d\d /);
    assert.doesNotMatch(output, /<- {2}354/);
    assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
  });

  it('decides the direction and logs it as a JSON line on stdout', async () => {
    await swaks(port, ['--quit-after', 'HELO']);
    const lines = jsonLines(gw.stdout());
    const decided = lines.find((l) => l.origin === 'cstp-direction');
    assert.ok(decided, gw.stdout());
    assert.match(String(decided.message), /^direction outbound: client 127\.0\.0\.1 is in local_networks/);
    assert.equal(typeof decided.uuid, 'string');
    assert.equal(typeof decided.timestamp, 'string');
    assert.ok(gw.stdout().split('\n').every((line) => line === '' || line.startsWith('{') || /^loaded (TLD|Public)|^Using iconv/.test(line)));
  });

  it('stops on SIGINT', async () => {
    const code = await stopGateway(gw);
    assert.equal(code, 0);
  });
});

describe('gateway with a wrong cstp.ini', () => {
  let dir: string | undefined;
  after(() => dir && removeInstance(dir));

  it('refuses to start, naming the file, the key and the reason', async () => {
    const port = await freePort();
    dir = makeInstance(port, '[policy]\nmixed_recipients = liberl\n');
    const gw = spawnGateway(dir);
    const code = await gw.exited;
    assert.equal(code, 78);
    assert.ok(
      // The gateway runs in its instance directory, so the file is named as the admin knows it.
      gw.stderr().includes('config/cstp.ini: [policy] mixed_recipients: must be one of restrictive, liberal (got "liberl")\n'),
      gw.stderr(),
    );
    assert.doesNotMatch(gw.stdout(), /Listening on/);
  });
});
