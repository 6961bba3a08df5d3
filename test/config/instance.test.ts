import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTlsCertificate, ensureVarDir, generatedTlsPaths } from '../../src/config/instance';

describe('first-start preparation', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cstp-instance-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('creates var/ private to its owner', () => {
    ensureVarDir(dir);
    assert.equal(statSync(join(dir, 'var')).mode & 0o777, 0o700);
  });

  it('generates a server certificate and a 0600 key once', () => {
    assert.equal(ensureTlsCertificate(dir, 'gw.example'), true);
    const paths = generatedTlsPaths(dir);
    assert.equal(statSync(paths.key).mode & 0o777, 0o600);
    const cert = new X509Certificate(readFileSync(paths.cert));
    assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(paths.key))));
    assert.ok(cert.checkHost('gw.example'));
    assert.ok(cert.checkHost('localhost'));
    assert.match(cert.keyUsage?.join(',') ?? '', /1\.3\.6\.1\.5\.5\.7\.3\.1/);

    const before = readFileSync(paths.key);
    assert.equal(ensureTlsCertificate(dir, 'gw.example'), false);
    assert.deepEqual(readFileSync(paths.key), before);
  });
});
