/**
 * A small, strict SMTP client session on one connection, written on node:net / node:tls because
 * Haraka's smtp_client never reports an unreachable next hop (the client then waits for the
 * plugin timeout) and suffers Nagle/delayed-ACK stalls.
 *
 * Every method resolves to an SmtpReply, never rejects for network trouble: when the peer cannot
 * answer (unreachable, timeout, connection lost, garbage) the socket is destroyed and a local 4xx
 * reply stands in, at once, so the gateway can hand its client a temporary failure immediately.
 * Methods reject only on programming errors (CR/LF in an argument, a command while another runs).
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { openConnection } from '../transparent/outbound';
import { DotStuffer } from './dot-stuff';
import { localReply, ReplyParser, type SmtpReply } from './reply';

export type TlsPolicy = 'opportunistic' | 'required' | 'off';

export interface TlsOptions {
  /** 'opportunistic' (default): STARTTLS when offered; 'required': refuse a server without it; 'off': never. */
  policy?: TlsPolicy;
  /** 'none' (default, as usual for opportunistic MTA-to-MTA TLS) or 'verify' the chain and servername. */
  verify?: 'none' | 'verify';
  /** Name to verify and to send as SNI; defaults to host when it is not an IP address. */
  servername?: string;
  /** Trust anchors for 'verify' (PEM); Node's default CA list otherwise. */
  ca?: string | Buffer | Array<string | Buffer>;
}

/**
 * Per-phase limits in milliseconds. The defaults sit below the RFC 5321 4.5.3.2 client values
 * (greeting 5 min, MAIL/RCPT 5 min, DATA 2 min, data block 3 min, final dot 10 min) because the
 * gateway's own client waits with those same limits: our 4xx must reach it before it gives up.
 */
export interface Timeouts {
  connect: number;
  greeting: number;
  /** EHLO, STARTTLS and the TLS handshake, MAIL, RCPT, DATA (until 354), RSET, QUIT. */
  command: number;
  /** Waiting for the peer to take more message data (a stalled write). */
  dataBlock: number;
  /** Waiting for the reply to the final dot. */
  finalDot: number;
}

export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = {
  connect: 30_000,
  greeting: 120_000,
  command: 120_000,
  dataBlock: 150_000,
  finalDot: 540_000,
};

export interface SmtpClientOptions {
  host: string;
  port: number;
  localAddress?: string;
  /** Keep this foreign source address (the diverted client's), when the host allows it: see src/transparent. */
  source?: string;
  /** Name used in synthesised replies; defaults to "host:port". */
  label?: string;
  /** Our EHLO/HELO argument. */
  heloName: string;
  tls?: TlsOptions;
  timeouts?: Partial<Timeouts>;
}

export interface Capabilities {
  /** Keyword (upper case) to its parameters, from the EHLO reply; empty after HELO. */
  keywords: Map<string, string[]>;
  /** SIZE limit when advertised; 0 means advertised without a limit. */
  size?: number;
}

export interface TlsState {
  protocol: string | null;
  cipher: string;
  authorized: boolean;
  authorizationError?: string;
}

/** Envelope parameters of the client's MAIL command, passed on only where the server advertises them. */
export interface MailParams {
  size?: number;
  body?: '7BIT' | '8BITMIME';
  smtputf8?: boolean;
  /** DSN (RFC 3461). */
  ret?: 'FULL' | 'HDRS';
  /** DSN envelope id, as xtext exactly as the client sent it. */
  envid?: string;
}

export interface RcptParams {
  /** DSN NOTIFY values, e.g. ['SUCCESS', 'FAILURE'] or ['NEVER']. */
  notify?: string[];
  /** DSN original recipient as the client sent it, e.g. "rfc822;user@example.org" (xtext). */
  orcpt?: string;
}

export type MessageSource = AsyncIterable<Buffer> | Iterable<Buffer>;

/** MAIL FROM arguments the server can take, and the names of those it cannot (for logging). */
export function mailArgs(params: MailParams, caps: Capabilities): { args: string[]; dropped: string[] } {
  const args: string[] = [];
  const dropped: string[] = [];
  const add = (keyword: string, name: string, arg: string): void => {
    (caps.keywords.has(keyword) ? args : dropped).push(caps.keywords.has(keyword) ? arg : name);
  };
  if (params.size !== undefined) add('SIZE', 'SIZE', `SIZE=${params.size}`);
  if (params.body) add('8BITMIME', 'BODY', `BODY=${params.body}`);
  if (params.smtputf8) add('SMTPUTF8', 'SMTPUTF8', 'SMTPUTF8');
  if (params.ret) add('DSN', 'RET', `RET=${params.ret}`);
  if (params.envid !== undefined) add('DSN', 'ENVID', `ENVID=${xtextArg(params.envid)}`);
  return { args, dropped };
}

export function rcptArgs(params: RcptParams, caps: Capabilities): { args: string[]; dropped: string[] } {
  const dsn = caps.keywords.has('DSN');
  const args: string[] = [];
  const dropped: string[] = [];
  if (params.notify?.length) (dsn ? args : dropped).push(dsn ? `NOTIFY=${params.notify.join(',')}` : 'NOTIFY');
  if (params.orcpt !== undefined) (dsn ? args : dropped).push(dsn ? `ORCPT=${xtextArg(params.orcpt)}` : 'ORCPT');
  return { args, dropped };
}

/** xtext values are printable ASCII without space and "="; anything else would corrupt the command. */
function xtextArg(value: string): string {
  if (!/^[\x21-\x3c\x3e-\x7e]+$/.test(value)) throw new RangeError(`not an xtext value: ${JSON.stringify(value)}`);
  return value;
}

function commandArg(value: string): string {
  if (/[\r\n\0]/.test(value)) throw new RangeError('CR, LF or NUL in an SMTP command argument');
  return value;
}

function parseCapabilities(ehlo: SmtpReply | undefined): Capabilities {
  const keywords = new Map<string, string[]>();
  for (const line of ehlo?.lines.slice(1) ?? []) {
    const [keyword, ...params] = line.trim().split(/\s+/);
    if (keyword) keywords.set(keyword.toUpperCase(), params);
  }
  const size = keywords.get('SIZE');
  return { keywords, ...(size ? { size: Number(size[0] ?? 0) || 0 } : {}) };
}

function isIp(host: string): boolean {
  return net.isIP(host) !== 0;
}

type Phase = keyof Timeouts;

export class SmtpClient {
  readonly label: string;
  private readonly timeouts: Timeouts;
  private socket?: net.Socket;
  private parser = new ReplyParser();
  private replies: SmtpReply[] = [];
  private waiter?: (reply: SmtpReply) => void;
  /** Set once the connection is unusable; every later command resolves to it. */
  private fatal?: SmtpReply;
  /** What we are waiting for, for messages about a lost connection. */
  private phase = 'connect';
  private busy = false;
  private opened = false;
  private caps: Capabilities = { keywords: new Map() };
  private tlsState?: TlsState;
  /** The server's greeting. */
  greeting?: SmtpReply;
  /** The last EHLO (or HELO) reply: after STARTTLS, the one given over TLS. */
  ehlo?: SmtpReply;

  constructor(private readonly opts: SmtpClientOptions) {
    this.label = opts.label ?? `${opts.host}:${opts.port}`;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  }

  get capabilities(): Capabilities {
    return this.caps;
  }

  /** Protocol, cipher and verification result when STARTTLS succeeded. */
  get tls(): TlsState | undefined {
    return this.tlsState;
  }

  /** False once the connection failed, timed out or was closed. */
  get usable(): boolean {
    return this.socket !== undefined && this.fatal === undefined;
  }

  /**
   * Connect, read the greeting, EHLO (HELO after 500/502), STARTTLS per policy and EHLO again.
   * Resolves to the last EHLO/HELO reply when the session is ready, else to the failing reply
   * (the connection is then closed).
   */
  async open(): Promise<SmtpReply> {
    if (this.opened) throw new Error('SmtpClient.open() called twice');
    this.opened = true;
    const connected = await this.connect();
    if (connected) return connected;
    const greeting = await this.read('greeting', 'greeting');
    this.greeting = greeting;
    if (greeting.code !== 220) return this.giveUp(greeting);
    const hello = await this.hello();
    if (hello.code !== 250) return this.giveUp(hello);
    return this.startTlsPerPolicy(hello);
  }

  async mail(from: string, params: MailParams = {}): Promise<SmtpReply> {
    const { args } = mailArgs(params, this.caps);
    return this.command(['MAIL FROM:<' + commandArg(from) + '>', ...args].join(' '), 'MAIL');
  }

  async rcpt(to: string, params: RcptParams = {}): Promise<SmtpReply> {
    const { args } = rcptArgs(params, this.caps);
    return this.command(['RCPT TO:<' + commandArg(to) + '>', ...args].join(' '), 'RCPT');
  }

  /**
   * DATA, the message dot-stuffed and terminated, and the final reply. The input is canonical
   * CRLF; a last line without CRLF gets one. A reply the server sends early (it may reject and
   * close before the dot) is returned as the final reply.
   */
  async data(message: MessageSource): Promise<SmtpReply> {
    const go = await this.command('DATA', 'DATA');
    if (go.code !== 354) return go;
    this.busy = true;
    try {
      this.phase = 'message data';
      const stuffer = new DotStuffer();
      // Each chunk is written once the next one exists, so the last one and the terminating dot go out in one
      // write (one syscall and one segment for a small message instead of two).
      let pending: Buffer | undefined;
      for await (const chunk of message) {
        if (pending && !(await this.write(pending))) {
          pending = undefined;
          break;
        }
        pending = stuffer.stuff(chunk);
      }
      if (this.usable) await this.write(...(pending ? [pending, stuffer.end()] : [stuffer.end()]));
      return await this.read('finalDot', 'reply to end of data');
    } catch (err) {
      // The message source failed: drop the connection without the final dot so nothing is delivered.
      return this.fail(localReply(451, '4.3.0', `cstp could not read the message: ${(err as Error).message}`));
    } finally {
      this.busy = false;
    }
  }

  rset(): Promise<SmtpReply> {
    return this.command('RSET', 'RSET');
  }

  /** QUIT, its reply, then the socket is closed either way. */
  async quit(): Promise<SmtpReply> {
    if (!this.usable) return this.close();
    const reply = await this.command('QUIT', 'QUIT');
    this.close();
    return reply;
  }

  /** Drop the connection now. Idempotent. */
  close(): SmtpReply {
    return this.fail(localReply(421, '4.4.2', `${this.label} connection closed by cstp`));
  }

  // ---- session steps ----

  /** Resolves to undefined once connected, else to the 421 that says why not. */
  private connect(): Promise<SmtpReply | undefined> {
    return new Promise((resolve) => {
      const abort = new AbortController();
      const timer = setTimeout(() => {
        abort.abort();
        resolve(this.fail(localReply(421, '4.4.1', `${this.label} timed out waiting for connection`)));
      }, this.timeouts.connect);
      const { host, port, localAddress, source } = this.opts;
      openConnection({ host, port, localAddress, source, signal: abort.signal }).then(
        (socket) => {
          clearTimeout(timer);
          if (this.fatal) {
            // Closed by our caller while connecting.
            socket.destroy();
            return resolve(this.fatal);
          }
          this.socket = socket;
          socket.setNoDelay(true); // commands are small and each waits for a reply: never let Nagle hold one back
          this.attach(socket);
          resolve(undefined);
        },
        (err: NodeJS.ErrnoException) => {
          clearTimeout(timer);
          if (err.code !== 'ABORT_ERR') resolve(this.fail(localReply(421, '4.4.1', `${this.label} unreachable: ${err.code ?? err.message}`)));
        },
      );
    });
  }

  private async hello(): Promise<SmtpReply> {
    const name = commandArg(this.opts.heloName);
    const ehlo = await this.command(`EHLO ${name}`, 'EHLO');
    if (ehlo.code === 500 || ehlo.code === 502) {
      const helo = await this.command(`HELO ${name}`, 'HELO');
      this.ehlo = helo;
      this.caps = { keywords: new Map() };
      return helo;
    }
    this.ehlo = ehlo;
    this.caps = parseCapabilities(ehlo.code === 250 ? ehlo : undefined);
    return ehlo;
  }

  private async startTlsPerPolicy(hello: SmtpReply): Promise<SmtpReply> {
    const policy = this.opts.tls?.policy ?? 'opportunistic';
    if (policy === 'off') return hello;
    if (!this.caps.keywords.has('STARTTLS')) {
      if (policy === 'opportunistic') return hello;
      return this.giveUp(localReply(421, '4.7.0', `${this.label} does not offer STARTTLS, which policy requires`));
    }
    const go = await this.command('STARTTLS', 'STARTTLS');
    if (go.local || go.code === 421) return this.giveUp(go);
    if (go.code !== 220) {
      // Refused after offering it: under 'opportunistic' the session goes on as the server wants it.
      if (policy === 'opportunistic') return hello;
      return this.giveUp(localReply(421, '4.7.0', `${this.label} refused STARTTLS: ${go.code} ${go.lines[0] ?? ''}`));
    }
    // Bytes after the 220 were sent in plaintext and must not be taken as TLS-protected replies
    // (STARTTLS response injection, CVE-2011-0411 class).
    if (this.replies.length || this.parser.hasPartial) {
      return this.giveUp(localReply(421, '4.7.0', `${this.label} sent data after its STARTTLS reply`));
    }
    const secured = await this.handshake();
    if (secured) return secured;
    const again = await this.hello();
    return again.code === 250 ? again : this.giveUp(again);
  }

  /** Resolves to undefined once TLS is up, else to the failure. No plaintext fallback: that would be a downgrade. */
  private handshake(): Promise<SmtpReply | undefined> {
    const plain = this.socket!;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    plain.on('error', () => undefined); // its errors surface as the TLS socket's error or close
    const opt = this.opts.tls ?? {};
    const servername = opt.servername ?? (isIp(this.opts.host) ? undefined : this.opts.host);
    return new Promise((resolve) => {
      const secure = tls.connect({
        socket: plain,
        rejectUnauthorized: opt.verify === 'verify',
        ...(servername ? { servername } : {}),
        ...(opt.ca ? { ca: opt.ca } : {}),
      });
      this.socket = secure;
      const timer = setTimeout(() => {
        resolve(this.fail(localReply(421, '4.4.2', `${this.label} timed out waiting for TLS handshake`)));
      }, this.timeouts.command);
      const onError = (err: Error): void => {
        clearTimeout(timer);
        resolve(this.fail(localReply(421, '4.7.0', `${this.label} TLS handshake failed: ${err.message}`)));
      };
      secure.on('error', onError);
      // The plain socket closing (peer gone) during the handshake is also a failure.
      secure.once('close', () => onError(new Error('connection closed')));
      secure.once('secureConnect', () => {
        clearTimeout(timer);
        secure.off('error', onError);
        secure.removeAllListeners('close');
        this.parser = new ReplyParser();
        this.tlsState = {
          protocol: secure.getProtocol(),
          cipher: secure.getCipher().name,
          authorized: secure.authorized,
          ...(secure.authorizationError ? { authorizationError: String(secure.authorizationError) } : {}),
        };
        this.attach(secure);
        resolve(undefined);
      });
    });
  }

  /**
   * A failed session step: a QUIT is written if the connection still works, but not waited for,
   * so the failure reaches the gateway's client at once.
   */
  private giveUp(reply: SmtpReply): SmtpReply {
    if (this.usable) this.socket!.write('QUIT\r\n');
    this.fail(reply);
    return reply;
  }

  // ---- wire ----

  private attach(socket: net.Socket): void {
    socket.on('data', (data: Buffer) => this.received(data));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.fail(localReply(421, '4.4.2', `${this.label} connection lost during ${this.phase}: ${err.code ?? err.message}`));
    });
    socket.on('close', () => {
      this.fail(localReply(421, '4.4.2', `${this.label} closed the connection during ${this.phase}`));
    });
  }

  private received(data: Buffer): void {
    let replies: SmtpReply[];
    try {
      replies = this.parser.push(data);
    } catch (err) {
      // Only ReplyParseError is expected; anything else must not escape a socket event either.
      this.fail(localReply(421, '4.5.0', `${this.label} sent an invalid reply during ${this.phase}: ${(err as Error).message}`));
      return;
    }
    for (const reply of replies) {
      if (this.waiter) {
        const resolve = this.waiter;
        this.waiter = undefined;
        resolve(reply);
      } else {
        this.replies.push(reply);
      }
    }
  }

  /** Mark the session dead (first reason wins), destroy the socket, wake whoever waits. */
  private fail(reply: SmtpReply): SmtpReply {
    this.fatal ??= reply;
    this.socket?.destroy();
    if (this.waiter) {
      const resolve = this.waiter;
      this.waiter = undefined;
      resolve(this.fatal);
    }
    return this.fatal;
  }

  /** The next reply, or the fatal one, or a timeout that kills the session. */
  private read(phase: Phase, what: string): Promise<SmtpReply> {
    this.phase = what;
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.fatal) return Promise.resolve(this.fatal);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.fail(localReply(421, '4.4.2', `${this.label} timed out waiting for ${what}`));
      }, this.timeouts[phase]);
      this.waiter = (reply) => {
        clearTimeout(timer);
        resolve(reply);
      };
    });
  }

  private async command(line: string, verb: string): Promise<SmtpReply> {
    if (this.busy || this.waiter) throw new Error(`SMTP command ${verb} while another is in progress`);
    if (this.fatal) return this.fatal;
    // A reply nobody asked for (e.g. a 421 announcing shutdown) answers this command.
    this.socket!.write(line + '\r\n', 'utf8');
    const reply = await this.read('command', `reply to ${verb}`);
    // 421: the server is closing the channel (RFC 5321 3.8); do not wait for it to do so.
    if (reply.code === 421 && !reply.local) this.fail(reply);
    return reply;
  }

  /**
   * Write message data (several buffers as one write), waiting (data-block timeout) while the peer does not
   * read. False if the session died.
   */
  private write(...bufs: Buffer[]): Promise<boolean> {
    if (this.fatal) return Promise.resolve(false);
    const socket = this.socket!;
    let flushed = true;
    if (bufs.length > 1) socket.cork();
    for (const buf of bufs) flushed = socket.write(buf) && flushed;
    if (bufs.length > 1) socket.uncork();
    if (flushed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        socket.off('drain', onDrain);
        socket.off('close', onClose);
        resolve(ok);
      };
      const onDrain = (): void => done(true);
      const onClose = (): void => done(false);
      const timer = setTimeout(() => {
        this.fail(localReply(421, '4.4.2', `${this.label} timed out waiting for the peer to take message data`));
        done(false);
      }, this.timeouts.dataBlock);
      socket.once('drain', onDrain);
      socket.once('close', onClose);
    });
  }
}
