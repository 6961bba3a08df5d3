import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_TIMEOUTS } from '../../src/delivery/smtp-client';
import { ConfigError, instancePath, parseCstpConfig } from '../../src/config/cstp-config';
import { deliverySettings, endpoint } from '../../src/config/delivery-settings';
import { parseIni } from '../../src/config/ini';
import { policySettings } from '../../src/config/schema';
import { resolvePolicyConfig } from '../../src/policy/config';

const REPO = join(__dirname, '..', '..', '..');
const FILE = 'config/cstp.ini';

function problems(text: string): string[] {
  try {
    parseCstpConfig(text, FILE);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('cstp.ini validation', () => {
  it('names the file, the key, the reason and the value', () => {
    assert.deepEqual(problems('[policy]\nmixed_recipients = liberl\n'), [
      'config/cstp.ini: [policy] mixed_recipients: must be one of restrictive, liberal (got "liberl")',
    ]);
  });

  it('reports every problem, one line each', () => {
    const text = '[delivery]\ndestination_port = abc\nconnect_timeout = 0\nnext_hop = [::1]:99999\nfoo = 1\n[upstream_tls]\nverify = yes\n';
    assert.deepEqual(problems(text).sort(), [
      'config/cstp.ini: [delivery] connect_timeout: must be >= 1 (got "0")',
      'config/cstp.ini: [delivery] destination_port: must be an integer (got "abc")',
      'config/cstp.ini: [delivery] foo: unknown key',
      'config/cstp.ini: [delivery] next_hop: must be empty, host or host:port (an IPv6 address in brackets) (got "[::1]:99999")',
      'config/cstp.ini: [upstream_tls] verify: must be true or false (got "yes")',
    ]);
  });

  it('names the one bad item of a list', () => {
    assert.deepEqual(problems('[policy]\nlocal_networks = 10.0.0.0/8, 10.0.0.0/33\n'), [
      'config/cstp.ini: [policy] local_networks: must be an IP address or network such as 192.0.2.0/24 or 2001:db8::/32 (got "10.0.0.0/33")',
    ]);
    assert.deepEqual(problems('[policy]\nrequire_encryption = ceo@*.example.org\n'), [
      'config/cstp.ini: [policy] require_encryption: must be an e-mail address, a domain or *.domain (got "ceo@*.example.org")',
    ]);
  });

  it('rejects unknown sections, keys outside a section and syntax errors, with the line', () => {
    assert.match(problems('[polcy]\nx = 1\n')[0], /^config\/cstp\.ini: \[polcy\]: unknown section \(known: policy, delivery/);
    assert.deepEqual(problems('mixed_recipients = liberal\n'), ['config/cstp.ini: settings must follow a [section] header']);
    assert.deepEqual(problems('[policy]\n\njust words\n'), ['config/cstp.ini:3: expected "[section]" or "key = value", got "just words"']);
    assert.deepEqual(problems('[policy]\nsigning = none\nsigning = gateway\n'), ['config/cstp.ini:3: key signing is set twice']);
  });

  it('fills every default for an empty file', () => {
    const config = parseCstpConfig('', FILE);
    assert.equal(config.delivery.destination_port, 25);
    assert.equal(config.delivery.next_hop, '');
    assert.equal(config.upstream_tls.policy, 'opportunistic');
    assert.equal(config.store.path, 'var/store');
    assert.equal(config.log.level, 'info');
    assert.deepEqual(config.policy.local_networks, ['127.0.0.0/8', '::1/128']);
  });

  it('types values and splits lists on commas and spaces', () => {
    const config = parseCstpConfig(
      '[policy]\nlocal_domains = amd.example, *.amd.example  intel.example ; ours\nprefer_oaep = false\n[delivery]\nnext_hop = [::1]:10025\nrelay_host = relay.example\n',
      FILE,
    );
    assert.deepEqual(config.policy.local_domains, ['amd.example', '*.amd.example', 'intel.example']);
    assert.equal(config.policy.prefer_oaep, false);
    assert.equal(config.delivery.next_hop, '[::1]:10025');
    assert.equal(config.delivery.relay_host, 'relay.example');
  });

  it('gives the policy what src/policy accepts', () => {
    const config = parseCstpConfig('[policy]\nlocal_networks = 10.1.0.0/16\nmixed_recipients = liberal\n', FILE);
    const policy = resolvePolicyConfig(policySettings(config));
    assert.equal(policy.mixedRecipients, 'liberal');
    assert.ok(policy.networks.contains('10.1.2.3'));
    assert.ok(!policy.networks.contains('127.0.0.1'));
  });

  it('config/cstp.ini sets every key, to its default', () => {
    const text = readFileSync(join(REPO, 'config', 'cstp.ini'), 'utf8');
    assert.deepEqual(parseCstpConfig(text, FILE), parseCstpConfig('', FILE));
    const doc = parseIni(text);
    const defaults = parseCstpConfig('', FILE) as unknown as Record<string, Record<string, unknown>>;
    for (const [section, keys] of Object.entries(defaults)) {
      assert.deepEqual([...(doc.get(section)?.keys() ?? [])].sort(), Object.keys(keys).sort(), `[${section}] documents every key`);
    }
  });

  it('resolves paths against the instance directory', () => {
    assert.equal(instancePath('/srv/cstp', 'var/store'), '/srv/cstp/var/store');
    assert.equal(instancePath('/srv/cstp', '/etc/cstp/pass'), '/etc/cstp/pass');
  });
});

describe('delivery settings', () => {
  it('converts host:port settings, seconds and the TLS policy', () => {
    const config = parseCstpConfig('[delivery]\nnext_hop = [::1]:10025\nrelay_host = relay.example\nconnect_timeout = 5\n[upstream_tls]\nverify = true\n', FILE);
    const settings = deliverySettings(config, '/nonexistent');
    assert.deepEqual(settings.nextHop, { host: '::1', port: 10025 });
    assert.deepEqual(settings.relay, { host: 'relay.example', port: 25 });
    assert.equal(settings.destinationPort, 25);
    assert.equal(settings.timeouts.connect, 5000);
    assert.deepEqual(settings.timeouts, { ...DEFAULT_TIMEOUTS, connect: 5000 });
    assert.deepEqual(settings.tls, { policy: 'opportunistic', verify: 'verify' });
  });

  it('leaves next hop and relay unset when empty', () => {
    const settings = deliverySettings(parseCstpConfig('', FILE), '/nonexistent');
    assert.equal(settings.nextHop, undefined);
    assert.equal(settings.relay, undefined);
    assert.equal(endpoint('192.0.2.1:2525')?.port, 2525);
  });

  it('reads ca_file relative to the instance, and names it when it cannot', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cstp-ca-'));
    try {
      writeFileSync(join(dir, 'ca.pem'), 'PEM');
      const ok = deliverySettings(parseCstpConfig('[upstream_tls]\nca_file = ca.pem\n', FILE), dir);
      assert.deepEqual(ok.tls.ca, Buffer.from('PEM'));
      assert.throws(() => deliverySettings(parseCstpConfig('[upstream_tls]\nca_file = missing.pem\n', FILE), dir), {
        message: 'config/cstp.ini: [upstream_tls] ca_file: cannot be read: ENOENT (got "missing.pem")',
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
