/**
 * A recording SMTP sink that runs as its own process (the gateway's destination in the crash and store-fault
 * tests): every accepted message is written to <dir>/<n>-<pid>.eml (envelope as smtp-sink's X-Mail-Args /
 * X-Rcpt-Args lines, then the message) and fsynced BEFORE the 250 goes out, so "the destination said 250"
 * always means "it is on disk". Started as `node crash-sink.js DIR [--defer-once HEADER]`; prints
 * {"port": N} on stdout when listening.
 *
 * --defer-once HEADER: a copy that is not S/MIME-encrypted and carries HEADER gets 451 at the end of DATA the
 * first time its Message-ID is seen, and 250 after: a destination that refuses part of a split delivery once,
 * which puts that part into the gateway's retry queue.
 *
 * startCrashSink() starts it from a test and reads what it recorded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fsyncSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function serve(dir: string, deferHeader: string | undefined): void {
  let counter = 0;
  const deferred = new Set<string>();
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let inData = false;
    let from = '';
    let rcpts: string[] = [];
    let data: Buffer[] = [];
    const send = (s: string): void => {
      if (!socket.destroyed) socket.write(s);
    };
    send('220 crash-sink ESMTP\r\n');
    const endOfData = (): void => {
      const message = Buffer.concat(data).toString('latin1').replace(/^\.\./gm, '.');
      data = [];
      inData = false;
      const messageId = /^Message-ID:\s*(<[^>]*>)/im.exec(message.slice(0, message.search(/\r\n\r\n|$/)))?.[1] ?? '';
      const encrypted = /^Content-Type:\s*application\/(x-)?pkcs7-mime/im.test(message);
      const header = deferHeader && new RegExp(`^${deferHeader}:`, 'im').test(message.slice(0, message.indexOf('\r\n\r\n')));
      if (header && !encrypted && !deferred.has(messageId)) {
        deferred.add(messageId);
        send('451 4.3.0 crash-sink: deferred once, try again\r\n');
      } else {
        const text = [`X-Mail-Args: <${from}>`, ...rcpts.map((r) => `X-Rcpt-Args: <${r}>`), ''].join('\n') + message;
        const name = join(dir, `${++counter}-${process.pid}.eml`);
        const fd = openSync(`${name}.tmp`, 'w');
        writeSync(fd, Buffer.from(text, 'latin1'));
        fsyncSync(fd);
        closeSync(fd);
        renameSync(`${name}.tmp`, name);
        send(`250 2.0.0 Ok: queued as ${counter}\r\n`);
      }
      from = '';
      rcpts = [];
    };
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
        const line = buf.subarray(0, i);
        buf = buf.subarray(i + 2);
        if (inData) {
          if (line.length === 1 && line[0] === 0x2e) endOfData();
          else data.push(line, Buffer.from('\r\n'));
          continue;
        }
        const cmd = line.toString('latin1');
        const verb = cmd.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') send('250-crash-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 DSN\r\n');
        else if (verb === 'HELO') send('250 crash-sink\r\n');
        else if (verb === 'MAIL') {
          from = /<([^>]*)>/.exec(cmd)?.[1] ?? '';
          rcpts = [];
          send('250 2.1.0 Ok\r\n');
        } else if (verb === 'RCPT') {
          rcpts.push(/<([^>]*)>/.exec(cmd)?.[1] ?? '');
          send('250 2.1.5 Ok\r\n');
        } else if (verb === 'DATA') {
          inData = true;
          send('354 End data with <CR><LF>.<CR><LF>\r\n');
        } else if (verb === 'RSET') {
          from = '';
          rcpts = [];
          send('250 2.0.0 Ok\r\n');
        } else if (verb === 'QUIT') {
          send('221 2.0.0 Bye\r\n');
          socket.end();
        } else if (verb === 'NOOP') send('250 2.0.0 Ok\r\n');
        else send('502 5.5.2 Error: command not recognized\r\n');
      }
    });
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ port: (server.address() as net.AddressInfo).port })}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
}

export interface Recorded {
  file: string;
  messageId: string;
  recipients: string[];
  encrypted: boolean;
  text: string;
}

/** One dump of smtp-sink -d or of this sink: its Message-ID and envelope recipients. */
export function parseDump(file: string, text: string): Recorded {
  const rcpts = [...text.matchAll(/^X-Rcpt-Args: <([^>]*)>/gm)].map((m) => m[1]);
  const messageId = /^Message-ID:\s*(<[^>]*>)/im.exec(text)?.[1] ?? '';
  return { file, messageId, recipients: rcpts, encrypted: /^Content-Type:\s*application\/(x-)?pkcs7-mime/im.test(text), text };
}

/** Every complete dump in a sink directory (temporary files skipped). */
export function readDumps(dir: string): Recorded[] {
  return readdirSync(dir)
    .filter((f) => !f.endsWith('.tmp'))
    .map((f) => parseDump(f, readFileSync(join(dir, f), 'latin1')));
}

export interface CrashSink {
  port: number;
  dir: string;
  dumps(): Recorded[];
  stop(): Promise<void>;
}

export async function startCrashSink(opts: { deferOnce?: string } = {}): Promise<CrashSink> {
  const dir = mkdtempSync(join(tmpdir(), 'cstp-crash-sink-'));
  const args = [__filename, dir, ...(opts.deferOnce ? ['--defer-once', opts.deferOnce] : [])];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('crash-sink did not start')), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /\{"port":(\d+)\}/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`crash-sink exited with ${code}`)));
  });
  return {
    port,
    dir,
    dumps: () => readDumps(dir),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

if (require.main === module) {
  const [dir, ...rest] = process.argv.slice(2);
  const i = rest.indexOf('--defer-once');
  serve(dir, i >= 0 ? rest[i + 1] : undefined);
}
