/**
 * Baseline (d) of the gateway benchmark: the pipe-filter architecture of gpg-mailgate/Lacre and Zeyple on the same
 * Haraka as the plain relay. At queue time each message is piped through `openssl cms -sign | openssl cms -encrypt`
 * (two processes per message, via /bin/sh) and the result is forwarded to the next hop, synchronously: the client's
 * DATA gets the next hop's reply. Forwarding uses cstp's own SMTP client (Nagle off), so this baseline is not
 * slowed by Haraka's smtp_client: the comparison is about the crypto architecture.
 *
 * Configured from the environment of the Haraka process: BENCH_PIPE_NEXT_HOP (host:port), BENCH_PIPE_SIGNER_CERT,
 * BENCH_PIPE_SIGNER_KEY, BENCH_PIPE_RECIPIENT_CERT (PEM files).
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { SmtpClient } from '../../src/delivery/smtp-client';

const harakaRequire = createRequire(require.resolve('haraka/package.json'));
const codes = harakaRequire('haraka-constants') as { ok: number; denysoft: number };

type Next = (code?: number, message?: string) => void;
interface Address {
  address: string | (() => string);
}
interface Connection {
  transaction: {
    mail_from: Address;
    rcpt_to: Address[];
    message_stream: { get_data(options: Record<string, unknown>, cb: (data: Buffer) => void): void };
  } | null;
}

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`pipe filter: ${name} is not set`);
  return v;
};
const addr = (a: Address): string => (typeof a.address === 'function' ? a.address() : String(a.address));
const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The message through `openssl cms -sign | openssl cms -encrypt`, output in CRLF. */
function pipeThroughOpenssl(message: Buffer, from: string, to: string): Promise<Buffer> {
  const sign = `openssl cms -sign -md sha256 -signer ${q(env('BENCH_PIPE_SIGNER_CERT'))} -inkey ${q(env('BENCH_PIPE_SIGNER_KEY'))}`;
  const encrypt = `openssl cms -encrypt -aes-256-cbc -crlfeol -from ${q(from)} -to ${q(to)} -subject 'encrypted message' ${q(env('BENCH_PIPE_RECIPIENT_CERT'))}`;
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', `${sign} | ${encrypt}`], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdin.on('error', () => undefined);
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`openssl pipe exited ${code}: ${err.trim()}`))));
    child.stdin.end(message);
  });
}

async function forward(from: string, recipients: string[], message: Buffer): Promise<boolean> {
  const [host, port] = env('BENCH_PIPE_NEXT_HOP').split(':');
  const client = new SmtpClient({ host, port: Number(port), heloName: 'pipe-filter.bench', tls: { policy: 'off' } });
  try {
    if ((await client.open()).code !== 250) return false;
    if ((await client.mail(from)).code !== 250) return false;
    for (const r of recipients) if ((await client.rcpt(r)).code !== 250) return false;
    return (await client.data([message])).code === 250;
  } finally {
    void client.quit();
  }
}

export function hook_queue(next: Next, connection: Connection): void {
  const tx = connection.transaction;
  if (!tx) return next();
  const from = addr(tx.mail_from);
  const recipients = tx.rcpt_to.map(addr);
  tx.message_stream.get_data({ dot_stuffed: true }, (data) => {
    pipeThroughOpenssl(Buffer.from(data), from, recipients.join(', '))
      .then((secured) => forward(from, recipients, secured))
      .then(
        (ok) => (ok ? next(codes.ok, 'forwarded') : next(codes.denysoft, 'next hop refused')),
        (err: Error) => next(codes.denysoft, `pipe filter: ${err.message}`),
      );
  });
}
