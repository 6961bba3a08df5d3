/**
 * A small SMTP client for the reliability tests: one transaction per call, every step timed, and a callback at
 * each stage so a test can kill the gateway at that exact moment (crash.test.ts). It never throws: a refused or
 * cut connection is a result like any reply.
 */
import * as net from 'node:net';

export type Stage = 'connect' | 'ehlo' | 'mail' | 'rcpt' | 'data' | 'body' | 'dot' | 'done';

export interface SendOptions {
  port: number;
  host?: string;
  /** Source address (e.g. 127.0.0.2: a client outside local_networks, i.e. inbound mail). */
  localAddress?: string;
  helo?: string;
  from: string;
  to: string[];
  /** The message (CRLF), sent in these chunks, `chunkDelayMs` apart; dot-stuffing is done here. */
  chunks: Buffer[];
  chunkDelayMs?: number;
  onStage?: (stage: Stage) => void;
  /** Whole transaction limit; the socket is dropped after it (a hung gateway is a result, not a hung test). */
  timeoutMs?: number;
  /** Drop the connection right after the final dot, before its reply could be read (a network failure). */
  cutAfterDot?: boolean;
}

export interface SendResult {
  /** The stage at which the transaction ended: 'dot' for the reply to the final dot. */
  stage: Stage;
  /** The last reply's code; undefined when the connection failed or was cut without one. */
  code?: number;
  text: string;
  rcptCodes: number[];
  /** The connection was refused, cut or timed out (no reply ended it). */
  broken: boolean;
  ms: number;
}

interface Reply {
  code: number;
  text: string;
}

/** Dot-stuffing of whole lines; every chunk must end on a line boundary. */
function stuff(chunk: Buffer): Buffer {
  const s = chunk.toString('latin1').replace(/^\./gm, '..');
  return Buffer.from(s, 'latin1');
}

export function sendMail(opts: SendOptions): Promise<SendResult> {
  const started = Date.now();
  const rcptCodes: number[] = [];
  let stage: Stage = 'connect';
  const enter = (s: Stage): void => {
    stage = s;
    opts.onStage?.(s);
  };
  return new Promise((resolve) => {
    let settled = false;
    let buf = '';
    let lines: string[] = [];
    let waiter: ((r: Reply | undefined) => void) | undefined;
    const pending: (Reply | undefined)[] = [];
    enter('connect');
    const socket = net.connect({ port: opts.port, host: opts.host ?? '127.0.0.1', localAddress: opts.localAddress });
    socket.setNoDelay(true);
    const finish = (r: Partial<SendResult>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ stage, text: '', rcptCodes, broken: false, ms: Date.now() - started, ...r });
    };
    const timer = setTimeout(() => finish({ broken: true, text: 'client timeout' }), opts.timeoutMs ?? 60_000);
    const deliver = (r: Reply | undefined): void => {
      if (waiter) {
        const w = waiter;
        waiter = undefined;
        w(r);
      } else pending.push(r);
    };
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        lines.push(line);
        if (!/^\d{3}-/.test(line)) {
          deliver({ code: Number(line.slice(0, 3)) || 0, text: lines.join('\n') });
          lines = [];
        }
      }
    });
    let connected = false;
    socket.on('error', () => undefined);
    socket.on('close', () => {
      deliver(undefined);
      // Refused or reset before the connection was made: nobody reads, so end here.
      if (!connected) finish({ broken: true, text: 'connection failed' });
    });
    const read = (): Promise<Reply | undefined> =>
      pending.length ? Promise.resolve(pending.shift()) : new Promise((r) => (waiter = r));
    const write = (data: string | Buffer): Promise<void> =>
      new Promise((r) => {
        if (socket.destroyed) return r();
        if (socket.write(data)) return r();
        socket.once('drain', r);
        socket.once('close', r);
      });
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    const command = async (line: string, s: Stage): Promise<Reply | undefined> => {
      enter(s);
      await write(`${line}\r\n`);
      return read();
    };
    const ended = (r: Reply | undefined): void =>
      r ? finish({ code: r.code, text: r.text }) : finish({ broken: true, text: 'connection closed' });

    socket.once('connect', () => {
      connected = true;
      void (async () => {
        const greeting = await read();
        if (!greeting || greeting.code !== 220) return ended(greeting);
        const ehlo = await command(`EHLO ${opts.helo ?? 'client.crash.test'}`, 'ehlo');
        if (!ehlo || ehlo.code !== 250) return ended(ehlo);
        const mail = await command(`MAIL FROM:<${opts.from}>`, 'mail');
        if (!mail || mail.code !== 250) return ended(mail);
        let last: Reply | undefined;
        for (const to of opts.to) {
          last = await command(`RCPT TO:<${to}>`, 'rcpt');
          if (!last) return ended(last);
          rcptCodes.push(last.code);
        }
        if (!rcptCodes.some((c) => c === 250)) return ended(last);
        const data = await command('DATA', 'data');
        if (!data || data.code !== 354) return ended(data);
        enter('body');
        for (const [i, chunk] of opts.chunks.entries()) {
          if (i > 0 && opts.chunkDelayMs) await sleep(opts.chunkDelayMs);
          await write(stuff(chunk));
        }
        if (opts.cutAfterDot) {
          enter('dot');
          await write('.\r\n');
          return finish({ broken: true, text: 'cut by the client after the final dot' });
        }
        const final = await command('.', 'dot');
        if (!final) return ended(final);
        // The result's stage stays 'dot' (the reply to the final dot); the callback hears 'done'.
        finish({ code: final.code, text: final.text });
        opts.onStage?.('done');
        // QUIT is a courtesy; the result does not wait for it.
      })().catch((err: Error) => finish({ broken: true, text: err.message }));
    });
  });
}

/** A message with a unique Message-ID, `size` bytes of body in `parts` chunks (each ending with CRLF). */
export function numberedMessage(opts: {
  id: string;
  from: string;
  to: string[];
  size?: number;
  parts?: number;
  headers?: string[];
  marker?: string;
}): Buffer[] {
  const head = [
    `From: <${opts.from}>`,
    `To: ${opts.to.map((t) => `<${t}>`).join(', ')}`,
    `Subject: reliability ${opts.id}`,
    `Message-ID: <${opts.id}>`,
    'Date: Mon, 23 Nov 2026 12:00:00 +0000',
    ...(opts.headers ?? []),
    '',
    '',
  ].join('\r\n');
  const parts = opts.parts ?? 1;
  const line = `${opts.marker ?? 'line'} of ${opts.id} .............................................\r\n`;
  const lines = Math.max(parts, Math.ceil((opts.size ?? 1024) / line.length));
  const body = Array.from({ length: lines }, (_, i) => (i % 50 === 7 ? `.${line}` : line));
  const per = Math.ceil(lines / parts);
  const chunks = [Buffer.from(head)];
  for (let i = 0; i < lines; i += per) chunks.push(Buffer.from(body.slice(i, i + per).join('')));
  return chunks;
}
