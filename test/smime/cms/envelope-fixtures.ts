/** Shared by the EnvelopedData tests: test-PKI loading, an X25519 recipient, and offsets into a message. */
import { execFileSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { children, expectSequence, parse, readOid, readSmallInt, type Asn1Node } from '../../../src/asn1/der';
import { Certificate } from '../../../src/pki/certificate';
import type { DecryptionKey } from '../../../src/smime/cms/enveloped-data';
import { pkiPath, pkiRead } from '../../helpers/pki';

export const cert = (name: string): Certificate => Certificate.fromPem(pkiRead(`${name}.crt`))[0];
export const key = (name: string): DecryptionKey => ({ key: createPrivateKey(pkiRead(`${name}.key`)), cert: cert(name) });

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'cstp-env-'));
}

let x25519: { dir: string; key: DecryptionKey } | undefined;

/** An X25519 keyAgreement certificate issued by the test CA (openssl signs it with -force_pubkey). */
export function x25519Recipient(): { dir: string; key: DecryptionKey } {
  if (x25519) return x25519;
  const dir = tempDir();
  const run = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  };
  run('genpkey', '-algorithm', 'X25519', '-out', 'x.key');
  run('pkey', '-in', 'x.key', '-pubout', '-out', 'x.pub');
  // A CSR needs a signing key; its public key is replaced by -force_pubkey.
  run('req', '-new', '-key', pkiPath('gw-b-rsa.key'), '-subj', '/CN=Gateway B (X25519)', '-out', 'x.csr');
  writeFileSync(join(dir, 'x.ext'), 'keyUsage=critical,keyAgreement\nsubjectKeyIdentifier=hash\n');
  run('x509', '-req', '-in', 'x.csr', '-force_pubkey', 'x.pub', '-CA', pkiPath('ca.crt'), '-CAkey', pkiPath('ca.key'),
    '-set_serial', '4242', '-days', '30', '-extfile', 'x.ext', '-out', 'x.crt');
  x25519 = {
    dir,
    key: { key: createPrivateKey(readFileSync(join(dir, 'x.key'))), cert: Certificate.fromPem(readFileSync(join(dir, 'x.crt')))[0] },
  };
  return x25519;
}

export interface EnvelopeLayout {
  version: number;
  contentType: string;
  recipientInfos: Asn1Node[];
  /** The encryptedContent node ([0] IMPLICIT). */
  encryptedContent: Asn1Node;
  /** AuthEnvelopedData only. */
  mac?: Asn1Node;
}

/** Walks a (DER or BER) ContentInfo down to the fields the tests poke at. */
export function layout(der: Buffer): EnvelopeLayout {
  const [type, wrapped] = expectSequence(parse(der), 'ContentInfo', 2);
  const fields = children(children(wrapped)[0]);
  const ris = children(fields[1]);
  const eci = children(fields[2]);
  return {
    version: readSmallInt(fields[0]),
    contentType: readOid(type),
    recipientInfos: ris,
    encryptedContent: eci[2],
    mac: fields[3],
  };
}

/** A copy of `der` with the octet at `offset` inverted. */
export function flipped(der: Buffer, offset: number): Buffer {
  const out = Buffer.from(der);
  out[offset] ^= 0xff;
  return out;
}
