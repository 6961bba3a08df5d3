/**
 * Real SMTP peers for the delivery tests: Postfix's smtp-sink as a child process, and a tiny
 * scripted node:net / node:tls server for faults smtp-sink cannot produce.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Sink {
  port: number;
  dir: string;
  /** Dump files not returned before (smtp-sink's X-* headers, then the message, LF line ends). */
  unseen(): string[];
  /** Wait (up to 2 s) for n new dump files and return them; fewer if they do not come. */
  next(n: number): Promise<string[]>;
  stop(): Promise<void>;
}

/** A free loopback port: listen(0), note it, close. smtp-sink cannot be told to pick one itself. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Postfix smtp-sink on a loopback port, dumping each message to a file; extra args e.g. ['-r', 'MAIL'].
 * With ['-m', '1'] and backlog 1 it serves one session and leaves the next ones queued in the
 * kernel (connected, no greeting): a real MTA at its connection limit.
 */
export async function startSink(args: string[] = [], backlog = 100): Promise<Sink> {
  const dir = mkdtempSync(join(tmpdir(), 'cstp-sink-'));
  chmodSync(dir, 0o777); // smtp-sink writes as nobody
  const port = await freePort();
  const root = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  const child: ChildProcess = spawn('smtp-sink', [...root, ...args, '-d', `${dir}/%M.`, `127.0.0.1:${port}`, String(backlog)], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 200 && !(await canConnect(port)); i++) await new Promise((r) => setTimeout(r, 10));
  const seen = new Set<string>();
  return {
    port,
    dir,
    unseen: () => {
      const fresh = readdirSync(dir).filter((f) => !seen.has(f));
      fresh.forEach((f) => seen.add(f));
      return fresh.map((f) => readFileSync(join(dir, f), 'latin1'));
    },
    next: async (n: number) => {
      // smtp-sink writes the file while the transaction runs; it is complete once the client has its reply and a moment passed.
      let fresh: string[] = [];
      for (let i = 0; i < 200 && fresh.length < n; i++) {
        await new Promise((r) => setTimeout(r, 10));
        fresh = readdirSync(dir).filter((f) => !seen.has(f));
      }
      fresh.forEach((f) => seen.add(f));
      return fresh.map((f) => readFileSync(join(dir, f), 'latin1'));
    },
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One scripted peer connection: read lines, write raw bytes. */
export interface ScriptedConnection {
  socket: net.Socket;
  /** The next line the client sent (without CRLF). */
  line(): Promise<string>;
  send(raw: string): void;
  /** Everything received so far, raw. */
  received(): Buffer;
}

export interface ScriptedServer {
  port: number;
  /** Connections accepted so far. */
  accepted: number;
  close(): Promise<void>;
}

/**
 * A scripted SMTP peer on a real loopback socket (NOT a real MTA): each accepted connection runs
 * `script`; with `tlsContext` set, STARTTLS upgrades via upgrade() on the connection.
 */
export function scriptedServer(script: (conn: ScriptedConnection, index: number) => Promise<void> | void): Promise<ScriptedServer> {
  const sockets = new Set<net.Socket>();
  const info: { accepted: number } = { accepted: 0 };
  const srv = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const index = info.accepted++;
    void Promise.resolve(script(scripted(socket), index)).catch(() => socket.destroy());
  });
  return new Promise((resolve) => {
    srv.listen(0, '127.0.0.1', () => {
      resolve({
        port: (srv.address() as net.AddressInfo).port,
        get accepted() {
          return info.accepted;
        },
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            srv.close(() => r());
          }),
      });
    });
  });
}

export function scripted(socket: net.Socket): ScriptedConnection {
  let buf = Buffer.alloc(0);
  let all: Buffer[] = [];
  let wake: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    all.push(d);
    wake?.();
  });
  socket.on('close', () => wake?.());
  return {
    socket,
    async line() {
      for (;;) {
        const i = buf.indexOf('\r\n');
        if (i >= 0) {
          const l = buf.subarray(0, i).toString('utf8');
          buf = buf.subarray(i + 2);
          return l;
        }
        if (socket.destroyed) throw new Error('closed');
        await new Promise<void>((r) => (wake = r));
      }
    },
    send(raw: string) {
      if (!socket.destroyed) socket.write(raw);
    },
    received() {
      all = [Buffer.concat(all)];
      return all[0];
    },
  };
}

/** Upgrade a scripted connection's socket to TLS as the server side. */
export function upgradeToTls(conn: ScriptedConnection, key: Buffer, cert: Buffer): ScriptedConnection {
  conn.socket.removeAllListeners('data');
  const secure = new tls.TLSSocket(conn.socket, { isServer: true, key, cert });
  secure.on('error', () => undefined);
  return scripted(secure);
}

/** Greeting, then 250 to every command, 354 to DATA, 221 to QUIT: a well-behaved scripted peer. */
export async function acceptAll(conn: ScriptedConnection, greet = true): Promise<void> {
  if (greet) conn.send('220 scripted ESMTP\r\n');
  for (;;) {
    const line = await conn.line();
    if (line === 'DATA') {
      conn.send('354 go\r\n');
      while ((await conn.line()) !== '.');
      conn.send('250 2.0.0 queued as SCRIPTED\r\n');
    } else if (line === 'QUIT') {
      conn.send('221 2.0.0 bye\r\n');
      conn.socket.end();
      return;
    } else conn.send(line.startsWith('EHLO') ? '250-scripted\r\n250 DSN\r\n' : '250 2.1.0 ok\r\n');
  }
}
