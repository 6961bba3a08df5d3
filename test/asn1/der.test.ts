import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  Asn1Error, children, integer, oid, parse, parseExact, readOid, readSmallInt, readTime, sequence, setOf,
  stringValue, time,
} from '../../src/asn1/der';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('encodes and decodes OIDs, integers and times', () => {
  for (const o of ['1.2.840.113549.1.7.2', '2.16.840.1.101.3.4.2.1', '1.3.101.112', '2.999.3']) assert.equal(readOid(parse(oid(o))), o);
  assert.deepEqual(integer(128), hex('02020080'));
  assert.deepEqual(integer(Buffer.from([0, 0, 0xff])), hex('020200ff'));
  assert.equal(readSmallInt(parse(integer(65537))), 65537);
  const d = new Date('2026-11-23T10:11:12Z');
  assert.equal(readTime(parse(time(d))).getTime(), d.getTime());
  assert.equal(time(new Date('2051-01-01T00:00:00Z'))[0], 0x18, 'GeneralizedTime after 2049');
});

test('SET OF is sorted by encoding (DER)', () => {
  assert.deepEqual(setOf(hex('0401ff'), hex('040100')), hex('3106 040100 0401ff'));
});

test('reads BER indefinite lengths and constructed strings', () => {
  // SEQUENCE(indef){ OCTET STRING(constructed, indef){ "ab", "c" } }
  const ber = hex('3080 2480 04026162 040163 0000 0000');
  const node = parseExact(ber);
  assert.ok(node.indefinite);
  assert.equal(stringValue(children(node)[0]).toString(), 'abc');
});

test('hostile encodings fail with Asn1Error, never a crash or a hang', () => {
  const cases: [string, Buffer, RegExp][] = [
    ['absurd length', hex('3084ffffffff00'), /exceeds/],
    ['huge length-of-length', hex('308900000000000000000100'), /absurd/],
    ['truncated', hex('300a0201'), /exceeds/],
    ['missing EOC', hex('3080020101'), /end-of-contents|truncated/],
    ['indefinite primitive', hex('0480000000'), /primitive/],
    ['empty', Buffer.alloc(0), /truncated/],
    ['trailing bytes', hex('300000'), /trailing/],
  ];
  for (const [what, buf, msg] of cases) assert.throws(() => parseExact(buf), (e: Error) => e instanceof Asn1Error && msg.test(e.message), what);
  const deep = Buffer.concat([Buffer.alloc(200000, Buffer.from([0x30, 0x80])), Buffer.alloc(200000)]);
  assert.throws(() => parseExact(deep), /nesting deeper/);
  const wide = sequence(...Array.from({ length: 50000 }, () => hex('0500')));
  assert.equal(children(parse(wide)).length, 50000);
});
