import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { addressMatches, domainMatches, domainOf, inDomains, isDomainPattern } from '../../src/policy/addresses';

test('domainOf lower-cases the domain; the null sender and a bare local part have none', () => {
  assert.equal(domainOf('Juro@AMD'), 'amd');
  assert.equal(domainOf('"a@b"@intel.example'), 'intel.example');
  assert.equal(domainOf(''), '');
  assert.equal(domainOf('postmaster'), '');
});

test('domain patterns: exact or *.parent (subdomains at any depth, not the parent itself)', () => {
  assert.ok(domainMatches('Intel', 'intel'));
  assert.ok(domainMatches('eu.intel', '*.intel'));
  assert.ok(domainMatches('a.eu.intel', '*.INTEL'));
  assert.ok(!domainMatches('intel', '*.intel'));
  assert.ok(!domainMatches('notintel', '*.intel'));
  assert.ok(!domainMatches('intel.com', 'intel'));
  assert.ok(inDomains('x@eu.intel', ['amd', '*.intel']));
  assert.ok(!inDomains('postmaster', ['amd']));
});

test('isDomainPattern accepts host names and one leading wildcard only', () => {
  for (const ok of ['amd', 'mail.amd.example', '*.amd', 'xn--bcher-kva.example', 'a-b.c']) assert.ok(isDomainPattern(ok), ok);
  for (const bad of ['', '*', '*.', 'a..b', '-a.b', 'a-.b', 'a b', 'a.*.b', '**.a', 'a@b']) assert.ok(!isDomainPattern(bad), bad);
});

test('address patterns: the local part exactly, the domain in any case; others are domain patterns', () => {
  assert.ok(addressMatches('ceo@Intel', 'ceo@intel'));
  assert.ok(!addressMatches('CEO@intel', 'ceo@intel'));
  assert.ok(addressMatches('anyone@eu.intel', '*.intel'));
  assert.ok(!addressMatches('anyone@intel', '*.intel'));
});
