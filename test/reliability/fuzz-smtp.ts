/**
 * SMTP on real loopback sockets for the gateway fuzzer and the security tests: a client that keeps one session
 * open and sends many transactions, each pipelined (MAIL, RCPT, DATA in one write, RFC 2920), timing the reply
 * to the final dot; and a sink, a small accepting SMTP server (NOT a real MTA) that hands every message it
 * receives to a callback, keyed by its envelope sender, so each delivered copy can be matched to what was sent.
 */
import * as net from 'node:net';

export interface Reply {
  code: number;
  text: string;
}

/** One transaction's result as the client saw it. */
export interface SendResult {
  /** The reply that decided it: the DATA reply after the dot, or the first refusal before it. */
  reply: Reply;
  stage: 'mail' | 'rcpt' | 'data' | 'dot';
  /** Milliseconds from the final dot leaving the client (write flushed) to the reply; undefined before DATA. */
  latencyMs?: number;
  /** The session ended without a reply (connection closed or reset, or `timeoutMs` passed). */
  lost?: 'closed' | 'timeout';
}

const CRLF = Buffer.from('\r\n');

/**
 * Dot-stuffing (RFC 5321 4.5.2) after every LF, not just CRLF: a receiver that splits lines at a bare LF (as
 * Haraka does) must not see a bare "LF . CR LF" in hostile content as the end of the data.
 */
export function dotStuff(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  if (data[0] === 0x2e) {
    parts.push(Buffer.from('.'));
  }
  for (let lf = data.indexOf(0x0a); lf !== -1; lf = data.indexOf(0x0a, lf + 1)) {
    if (data[lf + 1] === 0x2e) {
      parts.push(data.subarray(from, lf + 1), Buffer.from('.'));
      from = lf + 1;
    }
  }
  if (parts.length === 0) return data;
  parts.push(data.subarray(from));
  return Buffer.concat(parts);
}

/** Reads SMTP replies (multi-line ones joined) from a socket, in order. */
class ReplyReader {
  private buf = '';
  private lines: string[] = [];
  private waiting: ((r: Reply | undefined) => void)[] = [];
  private ready: Reply[] = [];
  closed = false;

  constructor(socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      for (let i = this.buf.indexOf('\n'); i !== -1; i = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, i).replace(/\r$/, '');
        this.buf = this.buf.slice(i + 1);
        this.lines.push(line);
        if (line.length < 4 || line[3] !== '-') {
          const reply = { code: Number(line.slice(0, 3)) || 0, text: this.lines.map((l) => l.slice(4)).join('\n') };
          this.lines = [];
          const w = this.waiting.shift();
          if (w) w(reply);
          else this.ready.push(reply);
        }
      }
    });
    const end = (): void => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w(undefined);
    };
    socket.on('close', end);
    socket.on('error', end);
  }

  next(): Promise<Reply | undefined> {
    const r = this.ready.shift();
    if (r) return Promise.resolve(r);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((done) => this.waiting.push(done));
  }
}

export class SmtpSession {
  private constructor(readonly socket: net.Socket, private readonly reader: ReplyReader) {}

  /** Connects, reads the greeting and says EHLO. */
  static async open(port: number, helo = 'fuzz.client.example'): Promise<SmtpSession> {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    const reader = new ReplyReader(socket);
    await new Promise<void>((done, fail) => {
      socket.once('connect', done);
      socket.once('error', fail);
    });
    const session = new SmtpSession(socket, reader);
    const greeting = await reader.next();
    if (greeting?.code !== 220) throw new Error(`no greeting: ${JSON.stringify(greeting)}`);
    socket.write(`EHLO ${helo}\r\n`);
    const ehlo = await reader.next();
    if (ehlo?.code !== 250) throw new Error(`EHLO refused: ${JSON.stringify(ehlo)}`);
    return session;
  }

  get alive(): boolean {
    return !this.reader.closed && !this.socket.destroyed;
  }

  private async reply(timeoutMs: number): Promise<Reply | 'timeout' | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((done) => (timer = setTimeout(() => done('timeout'), timeoutMs)));
    try {
      return await Promise.race([this.reader.next(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** One transaction, pipelined. `data` is the message as is (not dot-stuffed); a missing final CRLF is added. */
  async send(from: string, to: string[], data: Buffer, timeoutMs = 30_000): Promise<SendResult> {
    const lost = (r: Reply | 'timeout' | undefined, stage: SendResult['stage']): SendResult | undefined => {
      if (r === undefined) return { reply: { code: 0, text: 'connection closed' }, stage, lost: 'closed' };
      if (r === 'timeout') {
        this.socket.destroy();
        return { reply: { code: 0, text: 'no reply' }, stage, lost: 'timeout' };
      }
      return undefined;
    };
    const eightBit = data.some((b) => b > 127);
    this.socket.write(`MAIL FROM:<${from}>${eightBit ? ' BODY=8BITMIME' : ''}\r\n${to.map((t) => `RCPT TO:<${t}>\r\n`).join('')}DATA\r\n`);
    const mail = await this.reply(timeoutMs);
    const m = lost(mail, 'mail');
    if (m) return m;
    const rcpts: Reply[] = [];
    for (let i = 0; i < to.length; i++) {
      const r = await this.reply(timeoutMs);
      const l = lost(r, 'rcpt');
      if (l) return l;
      rcpts.push(r as Reply);
    }
    const dataReply = await this.reply(timeoutMs);
    const d = lost(dataReply, 'data');
    if (d) return d;
    const mailReply = mail as Reply;
    if (mailReply.code >= 400) return { reply: mailReply, stage: 'mail' };
    if ((dataReply as Reply).code !== 354) {
      const refused = rcpts.find((r) => r.code >= 400);
      return refused ? { reply: refused, stage: 'rcpt' } : { reply: dataReply as Reply, stage: 'data' };
    }
    const body = dotStuff(data);
    const tail = body.length === 0 || (body[body.length - 2] === 0x0d && body[body.length - 1] === 0x0a) ? '.\r\n' : '\r\n.\r\n';
    let flushed = 0n;
    const written = new Promise<void>((done) => this.socket.write(Buffer.concat([body, Buffer.from(tail)]), () => {
      flushed = process.hrtime.bigint();
      done();
    }));
    const final = await this.reply(timeoutMs);
    await Promise.race([written, new Promise((r) => setTimeout(r, 10))]);
    const l = lost(final, 'dot');
    if (l) return l;
    const latencyMs = flushed === 0n ? 0 : Number(process.hrtime.bigint() - flushed) / 1e6;
    return { reply: final as Reply, stage: 'dot', latencyMs };
  }

  /** RSET after a refusal, so the session can carry on. */
  async reset(timeoutMs = 10_000): Promise<Reply | undefined> {
    this.socket.write('RSET\r\n');
    const r = await this.reply(timeoutMs);
    return r === 'timeout' ? undefined : r;
  }

  async quit(): Promise<void> {
    if (this.alive) {
      this.socket.write('QUIT\r\n');
      await this.reply(2_000);
    }
    this.socket.destroy();
  }
}

// ---------------------------------------------------------------------------
// The sink

export interface SinkMessage {
  from: string;
  to: string[];
  /** The message as received, dot-stuffing undone. */
  data: Buffer;
  /** When the sink had the whole message (process.hrtime.bigint()). */
  at: bigint;
}

export interface NodeSink {
  port: number;
  /** Messages received and not yet taken, by envelope sender. */
  received: Map<string, SinkMessage[]>;
  /** Takes (removes) the messages received for `from`. */
  take(from: string): SinkMessage[];
  /** Connections accepted so far. */
  connections: number;
  close(): Promise<void>;
}

function undot(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  let start = 0;
  if (data[0] === 0x2e) {
    start = 1;
    from = 1;
  }
  for (let lf = data.indexOf(0x0a, start); lf !== -1; lf = data.indexOf(0x0a, lf + 1)) {
    if (data[lf + 1] === 0x2e) {
      parts.push(data.subarray(from, lf + 1));
      from = lf + 2;
    }
  }
  if (parts.length === 0 && from === 0) return data;
  parts.push(data.subarray(from));
  return Buffer.concat(parts);
}

const END_OF_DATA = Buffer.from('\r\n.\r\n');

/** An accepting SMTP server on a loopback port (PIPELINING, 8BITMIME, SMTPUTF8); every message goes to `received`. */
export function startNodeSink(onMessage?: (m: SinkMessage) => void): Promise<NodeSink> {
  const received = new Map<string, SinkMessage[]>();
  const sockets = new Set<net.Socket>();
  const state = { connections: 0 };
  const server = net.createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buf: Buffer = Buffer.alloc(0);
    let inData = false;
    let dataChunks: Buffer[] = [];
    let dataLength = 0;
    let from = '';
    let to: string[] = [];
    socket.write('220 fuzz-sink ESMTP\r\n');
    const finish = (data: Buffer): void => {
      const m: SinkMessage = { from, to, data: undot(data), at: process.hrtime.bigint() };
      const list = received.get(from) ?? [];
      list.push(m);
      received.set(from, list);
      onMessage?.(m);
      socket.write('250 2.0.0 Ok: queued as FUZZ\r\n');
      from = '';
      to = [];
    };
    socket.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        if (inData) {
          // Only the new bytes (and the last four before them) are searched for the end of data.
          const startsWithDot = dataLength === 0 && buf.length >= 3 && buf[0] === 0x2e && buf[1] === 0x0d && buf[2] === 0x0a;
          if (startsWithDot) {
            inData = false;
            buf = buf.subarray(3);
            finish(Buffer.alloc(0));
            continue;
          }
          const prev = dataChunks.length ? dataChunks[dataChunks.length - 1] : Buffer.alloc(0);
          const tail = prev.subarray(Math.max(0, prev.length - 4));
          const at = Buffer.concat([tail, buf]).indexOf(END_OF_DATA);
          if (at === -1) {
            if (dataLength + buf.length < 64 * 1024 * 1024) dataChunks.push(buf);
            dataLength += buf.length;
            buf = Buffer.alloc(0);
            return;
          }
          const end = dataLength - tail.length + at; // offset of CRLF.CRLF in the whole data
          const all = Buffer.concat([...dataChunks, buf]);
          inData = false;
          dataChunks = [];
          dataLength = 0;
          buf = all.subarray(end + END_OF_DATA.length);
          finish(all.subarray(0, end + 2));
          continue;
        }
        const lf = buf.indexOf(0x0a);
        if (lf === -1) return;
        const line = buf.toString('latin1', 0, lf).replace(/\r$/, '');
        buf = buf.subarray(lf + 1);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') socket.write('250-fuzz-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 0\r\n');
        else if (verb === 'HELO') socket.write('250 fuzz-sink\r\n');
        else if (verb === 'MAIL') {
          from = /<([^>]*)>/.exec(line)?.[1] ?? '';
          to = [];
          socket.write('250 2.1.0 Ok\r\n');
        } else if (verb === 'RCPT') {
          to.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
          socket.write('250 2.1.5 Ok\r\n');
        } else if (verb === 'DATA') {
          inData = true;
          socket.write('354 End data with <CR><LF>.<CR><LF>\r\n');
        } else if (verb === 'RSET') {
          from = '';
          to = [];
          socket.write('250 2.0.0 Ok\r\n');
        } else if (verb === 'QUIT') {
          socket.end('221 2.0.0 Bye\r\n');
          return;
        } else if (verb === 'NOOP') socket.write('250 2.0.0 Ok\r\n');
        else socket.write('502 5.5.2 Error: command not recognized\r\n');
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        received,
        take(from: string) {
          const list = received.get(from) ?? [];
          received.delete(from);
          return list;
        },
        get connections() {
          return state.connections;
        },
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

export { CRLF };
