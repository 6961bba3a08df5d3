import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { parseAddressList } from '../../src/smime/address';

test('display names, quotes and comments are not addresses', () => {
  assert.deepEqual(parseAddressList('"Doe, John" (work, really) <john@example.org>'), ['john@example.org']);
  assert.deepEqual(parseAddressList('Juro <juro@amd.example>, julia@intel.example (Julia)'), ['juro@amd.example', 'julia@intel.example']);
  assert.deepEqual(parseAddressList('=?UTF-8?B?SsO6cm8=?= <juro@amd.example>'), ['juro@amd.example']);
});

test('groups yield their members only', () => {
  assert.deepEqual(parseAddressList('Team: a@x.example, "B" <b@x.example>;, c@y.example'), ['a@x.example', 'b@x.example', 'c@y.example']);
  assert.deepEqual(parseAddressList('undisclosed-recipients:;'), []);
});

test('quoted local parts are unquoted, empty input is empty', () => {
  assert.deepEqual(parseAddressList('<"john doe"@example.org>'), ['john doe@example.org']);
  assert.deepEqual(parseAddressList(undefined), []);
  assert.deepEqual(parseAddressList('no address here'), []);
});
