import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { DEFAULT_POLICY, PolicyConfigError, resolvePolicyConfig, type PolicySettings } from '../../src/policy/config';
import { LocalNetworks } from '../../src/policy/network';
import { planMessage } from '../../src/policy/plan';
import { amdConfig, lookups, outbound } from './fixtures';

test('direction: a client in a local IPv4 or IPv6 block is outbound, anyone else inbound', () => {
  const cases: Array<[string, 'outbound' | 'inbound']> = [
    ['10.1.0.25', 'outbound'], ['10.1.255.255', 'outbound'], ['10.2.0.1', 'inbound'], ['192.0.2.1', 'inbound'],
    ['::ffff:10.1.3.4', 'outbound'], ['2001:db8:a:1::25', 'outbound'], ['2001:DB8:A::1', 'outbound'],
    ['2001:db8:b::25', 'inbound'], ['fe80::1%eth0', 'inbound'], ['not an address', 'inbound'], ['', 'inbound'],
  ];
  for (const [ip, want] of cases) {
    const plan = planMessage(outbound([], { clientIp: ip }), amdConfig(), lookups({}));
    assert.equal(plan.direction, want, ip);
  }
  assert.equal(planMessage(outbound([]), amdConfig(), lookups({})).directionReason, 'client 10.1.0.25 is in local network 10.1.0.0/16');
});

test('direction given overrides the client address', () => {
  const plan = planMessage(outbound(['x@intel'], { clientIp: '192.0.2.1', direction: 'outbound' }), amdConfig(), lookups({}));
  assert.equal(plan.direction, 'outbound');
  assert.equal(plan.directionReason, 'direction given');
});

test('LocalNetworks: bare addresses are single hosts; the defaults are loopback', () => {
  const n = LocalNetworks.parse(['192.0.2.7', '2001:db8::7']);
  assert.deepEqual(['192.0.2.7', '192.0.2.8', '2001:db8::7', '2001:db8::8'].map((ip) => n.contains(ip)), [true, false, true, false]);
  const d = resolvePolicyConfig().networks;
  assert.deepEqual(['127.0.0.1', '127.9.9.9', '::1', '::2'].map((ip) => d.contains(ip)), [true, true, true, false]);
  assert.ok(LocalNetworks.parse(['0.0.0.0/0']).contains('203.0.113.9'));
  assert.ok(LocalNetworks.parse(['fe80::/10']).contains('fe80::1%eth0'), 'the zone index is ignored');
});

test('the defaults are documented values', () => {
  const { networks, ...settings } = resolvePolicyConfig();
  assert.ok(networks);
  assert.deepEqual(settings, {
    localNetworks: ['127.0.0.0/8', '::1/128'], localDomains: [], mixedRecipients: 'restrictive', withoutCertificate: 'unaltered',
    requireEncryption: [], signing: 'user-then-gateway', preferAuthenticatedEncryption: true, preferOaep: true,
  });
  assert.deepEqual(settings, { ...DEFAULT_POLICY });
});

test('a wrong setting is an error naming the key and the reason', () => {
  const bad: Array<[Partial<PolicySettings>, keyof PolicySettings, RegExp]> = [
    [{ mixedRecipients: 'strict' as never }, 'mixedRecipients', /"strict" is not one of restrictive, liberal/],
    [{ withoutCertificate: 'sign' as never }, 'withoutCertificate', /not one of/],
    [{ signing: 'user' as never }, 'signing', /not one of/],
    [{ preferOaep: 'yes' as never }, 'preferOaep', /true or false/],
    [{ localNetworks: ['10.0.0.0/33'] }, 'localNetworks', /prefix length outside 0\.\.32/],
    [{ localNetworks: ['fd00::/129'] }, 'localNetworks', /outside 0\.\.128/],
    [{ localNetworks: ['10.0.0.0/8/1'] }, 'localNetworks', /not an IP address or CIDR/],
    [{ localNetworks: ['mail.amd'] }, 'localNetworks', /not an IP address/],
    [{ localNetworks: ['10.0.0.0/x'] }, 'localNetworks', /prefix length/],
    [{ localDomains: ['bad domain'] }, 'localDomains', /not a domain/],
    [{ requireEncryption: ['@intel'] }, 'requireEncryption', /not an address, a domain/],
    [{ requireEncryption: ['x@*.intel'] }, 'requireEncryption', /not an address/],
  ];
  for (const [settings, key, reason] of bad) {
    assert.throws(() => resolvePolicyConfig(settings), (e: unknown) => {
      assert.ok(e instanceof PolicyConfigError);
      assert.equal(e.key, key);
      assert.match(e.message, reason);
      return true;
    }, key);
  }
  assert.doesNotThrow(() => resolvePolicyConfig({ localDomains: ['*.amd', 'amd'], requireEncryption: ['ceo@intel', '*.intel', 'intel'] }));
});

test('LocalNetworks names the first block that matched and lists the blocks as configured', () => {
  const n = LocalNetworks.parse(['10.0.0.0/8', '10.1.0.0/16', '2001:db8::/32']);
  assert.equal(n.blockOf('10.1.2.3'), '10.0.0.0/8');
  assert.equal(n.blockOf('2001:db8::1'), '2001:db8::/32');
  assert.equal(n.blockOf('192.0.2.1'), undefined);
  assert.deepEqual(n.blocks, ['10.0.0.0/8', '10.1.0.0/16', '2001:db8::/32']);
  assert.deepEqual(LocalNetworks.parse([]).blocks, []);
  assert.equal(LocalNetworks.parse([]).contains('127.0.0.1'), false);
});
