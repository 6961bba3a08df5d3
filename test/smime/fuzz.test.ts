/**
 * Mutation fuzzing of verify/decrypt/unwrap: valid S/MIME messages are mutated at the MIME
 * level (bytes, headers, boundaries) and at the DER level (tags, lengths, contents of
 * individual TLVs), then fed to the engine. Every input must end in a valid result or one of
 * the engine's own errors, within a time bound. The PRNG is seeded: a failure prints the seed
 * and writes the input to a file so it can become a regression test.
 */
import { strict as assert } from 'node:assert';
import { createPrivateKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Certificate } from '../../src/pki/certificate';
import { decryptMessage, encryptMessage, signMessage, unwrapMessage, verifyMessage } from '../../src/smime/message';
import { mutateBytes, mutateDer, prng } from '../helpers/fuzz-mutators';
import { pkiRead } from '../helpers/pki';

const ITERATIONS = Number(process.env.CSTP_FUZZ_ITERATIONS ?? 10000);
const SEED = Number(process.env.CSTP_FUZZ_SEED ?? Date.now() % 2 ** 31);
const PER_INPUT_MS = 1000;
const ENGINE_ERRORS = new Set([
  'SmimeError', 'CmsError', 'NoMatchingRecipientError', 'DecryptionError', 'MimeError', 'Asn1Error', 'CertificateError',
]);

const cert = (n: string): Certificate => Certificate.fromPem(pkiRead(`${n}.crt`))[0];
const creds = (n: string) => ({ cert: cert(n), key: createPrivateKey(pkiRead(`${n}.key`)), chain: [] as Certificate[] });
const join2 = (c: Iterable<Buffer>): Buffer => Buffer.concat([...c]);

const PLAIN = Buffer.from(
  'From: user@a.example\r\nTo: gateway@b.example\r\nSubject: fuzz\r\nMIME-Version: 1.0\r\n' +
    'Content-Type: multipart/mixed; boundary="xx"\r\n\r\n--xx\r\nContent-Type: text/plain\r\n\r\nhello\r\n' +
    '--xx\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n--xx--\r\n',
);

interface Seed {
  /** Headers of the S/MIME wrapper up to and including the empty line. */
  head: Buffer;
  der?: Buffer;
  raw: Buffer;
}

function seeds(): Seed[] {
  const signer = creds('user-a-rsa');
  const messages = [
    join2(signMessage(PLAIN, signer)),
    join2(signMessage(PLAIN, creds('user-a-ec'), { opaque: true })),
    join2(encryptMessage(PLAIN, [cert('gw-b-rsa')])),
    join2(encryptMessage(PLAIN, [cert('gw-b-rsa')], { cipher: 'aes-256-gcm' })),
    join2(encryptMessage(PLAIN, [cert('gw-b-ec')], { cipher: 'aes-128-cbc' })),
    join2(encryptMessage(join2(signMessage(PLAIN, signer)), [cert('gw-b-rsa'), cert('gw-b-ec')])),
  ];
  return messages.map((raw) => {
    const split = raw.indexOf('\r\n\r\n') + 4;
    const head = raw.subarray(0, split);
    const isP7m = /application\/pkcs7-mime/.test(head.toString('latin1'));
    return { raw, head, der: isP7m ? Buffer.from(raw.subarray(split).toString('latin1'), 'base64') : undefined };
  });
}

test(`${ITERATIONS} mutated CMS/MIME inputs give results or clean errors (seed ${SEED})`, () => {
  const rnd = prng(SEED);
  const corpus = seeds();
  const keys = [creds('gw-b-rsa'), creds('gw-b-ec')];
  const trust = { anchors: [cert('ca')] };
  const ops = [
    (m: Buffer) => unwrapMessage(m, { keys, trust }),
    (m: Buffer) => verifyMessage(m, trust),
    (m: Buffer) => decryptMessage(m, keys),
  ];
  const outcomes = { ok: 0, error: 0 };
  for (let i = 0; i < ITERATIONS; i++) {
    const seed = corpus[Math.floor(rnd() * corpus.length)];
    const input = seed.der && rnd() < 0.6
      ? Buffer.concat([seed.head, Buffer.from(mutateDer(seed.der, rnd).toString('base64').replace(/.{76}/g, '$&\r\n'))])
      : mutateBytes(seed.raw, rnd);
    const op = ops[i % ops.length];
    const started = process.hrtime.bigint();
    try {
      op(input);
      outcomes.ok++;
    } catch (e) {
      const err = e as Error;
      if (!ENGINE_ERRORS.has(err.name)) {
        const file = join(tmpdir(), `cstp-fuzz-crash-${SEED}-${i}.eml`);
        writeFileSync(file, input);
        assert.fail(`input ${i} (seed ${SEED}, saved to ${file}) raised ${err.name}: ${err.message}\n${err.stack}`);
      }
      outcomes.error++;
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if (ms > PER_INPUT_MS) {
      const file = join(tmpdir(), `cstp-fuzz-slow-${SEED}-${i}.eml`);
      writeFileSync(file, input);
      assert.fail(`input ${i} took ${ms.toFixed(0)} ms (seed ${SEED}, saved to ${file})`);
    }
  }
  // A fuzzer whose every input is rejected at the first byte tests nothing.
  assert.ok(outcomes.ok > ITERATIONS / 100, `too few inputs got through: ${JSON.stringify(outcomes)}`);
});
