/** `cstp smime ...`: S/MIME on complete RFC 5322 messages, stdin to stdout unless --in/--out. */
import type { ContentCipher } from '../smime/cms/enveloped-data';
import type { DigestName } from '../smime/cms/digest';
import {
  decryptMessage, describeLayer, encryptMessage, signMessage, STATUS_HEADER, unwrapMessage, verifyMessage,
  type SignatureReport, type VerifiedMessage,
} from '../smime/message';
import {
  EXIT, KEYS, loadCertificates, loadKeyPairs, parse, readInput, UsageError, writeOutput, type Command,
} from './cli-support';

const USAGE = {
  sign: `cstp smime sign --cert C.pem --key K.pem [--chain CA.pem] [--opaque] [--digest sha256|sha384|sha512] [--pss]
  Signs a message: multipart/signed (default) or --opaque application/pkcs7-mime signed-data.
  --key may be a PKCS#12 file (then --cert is optional) with --pass-env VAR or --pass-file F.`,
  encrypt: `cstp smime encrypt --recipient R.pem [--recipient R2.pem ...] [--cipher aes-256-cbc|aes-128-cbc|aes-256-gcm|aes-128-gcm] [--oaep] [--ski]
  Encrypts a message to every recipient certificate. Default AES-256-CBC with RSA PKCS#1 v1.5 key transport
  (readable by Thunderbird, Outlook, gpgsm); *-gcm gives AuthEnvelopedData; --oaep uses RSAES-OAEP-SHA256;
  EC certificates get ECDH key agreement; --ski identifies recipients by subjectKeyIdentifier.`,
  decrypt: `cstp smime decrypt --cert C.pem --key K.pem [--cert C2.pem --key K2.pem ...]
  Decrypts a message; writes the content with the outer header fields restored.`,
  verify: `cstp smime verify --trust CA.pem [--trust ...] [--out content.eml]
  Verifies a signed message on its exact bytes; reports on stderr; writes the content (outer header fields
  restored) and exits 0 only when the signature is good and the signer trusted; 1 otherwise.`,
  unwrap: `cstp smime unwrap [--cert C.pem --key K.pem ...] --trust CA.pem [--trust ...] [--max-depth 16]
  Undoes every S/MIME layer it can (decrypt, verify, repeat) and writes the plain message with one
  ${STATUS_HEADER} header per layer. Exits 0 when every layer was opened and every signature is good and trusted.`,
};

async function smimeSign(args: string[]): Promise<number> {
  const v = parse(args, { ...KEYS, chain: { type: 'string', multiple: true }, opaque: { type: 'boolean' }, digest: { type: 'string' }, pss: { type: 'boolean' } });
  const keys = loadKeyPairs(v as never);
  if (keys.length !== 1) throw new UsageError('sign needs exactly one --key (with --cert, or a PKCS#12 file)');
  const digest = v.digest as string | undefined;
  if (digest && !['sha256', 'sha384', 'sha512'].includes(digest)) throw new UsageError(`--digest ${digest}: use sha256, sha384 or sha512`);
  const [creds] = keys;
  const chain = [...creds.chain, ...loadCertificates(v.chain as string[] | undefined, 'chain')];
  const input = await readInput(v.in as string | undefined);
  await writeOutput(v.out as string | undefined, signMessage(input, { ...creds, chain }, {
    opaque: v.opaque === true, digest: digest as DigestName | undefined, pss: v.pss === true,
  }));
  return EXIT.ok;
}

const CIPHERS: ContentCipher[] = ['aes-256-cbc', 'aes-128-cbc', 'aes-256-gcm', 'aes-128-gcm'];

async function smimeEncrypt(args: string[]): Promise<number> {
  const v = parse(args, { recipient: { type: 'string', multiple: true }, cipher: { type: 'string' }, oaep: { type: 'boolean' }, ski: { type: 'boolean' } });
  const recipients = loadCertificates(v.recipient as string[] | undefined, 'recipient certificate');
  if (recipients.length === 0) throw new UsageError('encrypt needs at least one --recipient');
  const cipher = (v.cipher as string | undefined) ?? 'aes-256-cbc';
  if (!CIPHERS.includes(cipher as ContentCipher)) throw new UsageError(`--cipher ${cipher}: use one of ${CIPHERS.join(', ')}`);
  const input = await readInput(v.in as string | undefined);
  await writeOutput(v.out as string | undefined, encryptMessage(input, recipients, {
    cipher: cipher as ContentCipher,
    rsaKeyTransport: v.oaep ? 'rsa-oaep' : 'rsa-pkcs1',
    recipientIdentifier: v.ski ? 'subjectKeyIdentifier' : 'issuerAndSerialNumber',
  }));
  return EXIT.ok;
}

async function smimeDecrypt(args: string[]): Promise<number> {
  const v = parse(args, KEYS);
  const keys = loadKeyPairs(v as never);
  if (keys.length === 0) throw new UsageError('decrypt needs --cert and --key (or a PKCS#12 --key)');
  const input = await readInput(v.in as string | undefined);
  const { message, envelope } = decryptMessage(input, keys);
  process.stderr.write(`cstp: decrypted (${envelope.cipher}, ${envelope.keyEncryption}) for ${envelope.recipient.subject}\n`);
  await writeOutput(v.out as string | undefined, [message]);
  return EXIT.ok;
}

function describeSigner(r: SignatureReport): string {
  const who = r.signer ? `"${r.signer.subject}"` : 'unknown signer';
  const when = r.signingTime ? `, signed ${r.signingTime.toISOString()}` : '';
  return `${r.verdict}: ${r.reason}; ${who}${when}`;
}

async function smimeVerify(args: string[]): Promise<number> {
  const v = parse(args, { trust: { type: 'string', multiple: true }, chain: { type: 'string', multiple: true } });
  const anchors = loadCertificates(v.trust as string[] | undefined, 'trust anchor');
  const intermediates = loadCertificates(v.chain as string[] | undefined, 'chain');
  const input = await readInput(v.in as string | undefined);
  const result: VerifiedMessage = verifyMessage(input, { anchors, intermediates });
  for (const s of result.signers) process.stderr.write(`cstp: verify: ${describeSigner(s)}\n`);
  if (result.verdict !== 'good-trusted') return EXIT.notTrusted;
  await writeOutput(v.out as string | undefined, [result.message]);
  return EXIT.ok;
}

async function smimeUnwrap(args: string[]): Promise<number> {
  const v = parse(args, { ...KEYS, trust: { type: 'string', multiple: true }, chain: { type: 'string', multiple: true }, 'max-depth': { type: 'string' } });
  const keys = loadKeyPairs(v as never);
  const anchors = loadCertificates(v.trust as string[] | undefined, 'trust anchor');
  const intermediates = loadCertificates(v.chain as string[] | undefined, 'chain');
  const maxDepth = v['max-depth'] === undefined ? undefined : Number(v['max-depth']);
  if (maxDepth !== undefined && !(Number.isInteger(maxDepth) && maxDepth > 0)) throw new UsageError('--max-depth takes a positive integer');
  const input = await readInput(v.in as string | undefined);
  const { message, layers } = unwrapMessage(input, { keys, trust: { anchors, intermediates }, maxDepth });
  layers.forEach((l, i) => process.stderr.write(`cstp: unwrap: ${describeLayer(l, i)}\n`));
  await writeOutput(v.out as string | undefined, [message]);
  const complete = layers.every((l) => (l.type === 'signed' ? l.report.verdict === 'good-trusted' : l.status === 'decrypted'));
  return complete ? EXIT.ok : EXIT.notTrusted;
}

export const smimeCommands: Record<string, Command> = {
  sign: { usage: USAGE.sign, run: smimeSign },
  encrypt: { usage: USAGE.encrypt, run: smimeEncrypt },
  decrypt: { usage: USAGE.decrypt, run: smimeDecrypt },
  verify: { usage: USAGE.verify, run: smimeVerify },
  unwrap: { usage: USAGE.unwrap, run: smimeUnwrap },
};
