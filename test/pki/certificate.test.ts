import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { Certificate, CertificateError } from '../../src/pki/certificate';
import { pkiRead } from '../helpers/pki';

const load = (name: string): Certificate => Certificate.fromPem(pkiRead(`${name}.crt`))[0];

test('parses the fields S/MIME policy needs', () => {
  const c = load('user-a-rsa');
  assert.deepEqual(c.emailAddresses.slice().sort(), ['user@a.example', 'user@a.example']);
  assert.ok(c.hasEmail('user@A.EXAMPLE'), 'domain is case-insensitive');
  assert.ok(!c.hasEmail('USER@a.example'), 'local part is case-sensitive');
  assert.ok(c.keyUsage?.has('digitalSignature') && c.keyUsage.has('keyEncipherment'));
  assert.ok(!c.keyUsage?.has('keyAgreement'));
  assert.deepEqual(c.extKeyUsage, ['1.3.6.1.5.5.7.3.4']);
  assert.equal(c.basicConstraints?.ca, false);
  assert.equal(c.rsaBits, 2048);
  assert.equal(c.serial.toString('hex'), '03e9');
  assert.ok(c.subjectKeyId && c.authorityKeyId);
  assert.ok(c.authorityKeyId.equals(load('ca').subjectKeyId!));
  assert.ok(load('ca').isSelfIssued && load('ca').isCA);
});

test('multi-address certificates list every address', () => {
  const c = load('multi-rsa');
  assert.ok(c.hasEmail('multi@a.example') && c.hasEmail('alias@a.example'));
});

test('intermediate CA carries its path length', () => {
  assert.deepEqual(load('inter').basicConstraints, { ca: true, pathLen: 0 });
});

test('garbage is a CertificateError, not a crash', () => {
  assert.throws(() => Certificate.fromDer(Buffer.from('3003020101', 'hex')), CertificateError);
  assert.throws(() => Certificate.fromPem('nothing here'), CertificateError);
});
