import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { encodedWordDecode } from '../../../src/smime/mime';

test('B and Q encoded words in any case, with surrounding text', () => {
  assert.equal(encodedWordDecode('=?utf-8?B?R3LDvMOfZQ==?= from Zürich'), 'Grüße from Zürich');
  assert.equal(encodedWordDecode('Re: =?ISO-8859-1?q?caf=E9_cr=E8me?='), 'Re: café crème');
  assert.equal(encodedWordDecode('=?UTF-8*en?Q?hello?='), 'hello', 'RFC 2231 language suffix');
  assert.equal(encodedWordDecode('no words here'), 'no words here');
});

test('whitespace between adjacent encoded words disappears, a character split across words survives', () => {
  assert.equal(encodedWordDecode('=?utf-8?Q?a?= =?utf-8?Q?b?=\r\n =?utf-8?Q?c?= d'), 'abc d');
  assert.equal(encodedWordDecode('=?utf-8?Q?Gr=C3?= =?utf-8?Q?=BC=C3=9Fe?='), 'Grüße');
  assert.equal(encodedWordDecode('=?iso-8859-1?Q?=E9?= =?utf-8?Q?=C3=A9?='), 'éé', 'different charsets, still joined');
  assert.equal(encodedWordDecode('=?utf-8?Q?a?= x =?utf-8?Q?b?='), 'a x b', 'text between words is kept');
});

test('unknown charsets and malformed words are left as they are', () => {
  assert.equal(encodedWordDecode('=?x-unknown?Q?abc?= =?utf-8?Q?d?='), '=?x-unknown?Q?abc?= d');
  assert.equal(encodedWordDecode('=?utf-8?X?abc?='), '=?utf-8?X?abc?=');
  assert.equal(encodedWordDecode('=?utf-8?Q?with space?='), '=?utf-8?Q?with space?=');
});
