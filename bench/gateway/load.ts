/**
 * Load and measurement for the gateway benchmark: Postfix's smtp-source for throughput, a small open-loop SMTP
 * client for latency (smtp-source reports no per-message times), CPU time of a system's processes from /proc,
 * and the statistics.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';

export const SENDER = 'juro@amd';
export const RECIPIENT = 'julia@intel';

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/**
 * CPU seconds used so far by these processes: utime + stime + cutime + cstime from /proc/PID/stat, so children
 * the process has reaped (the openssl processes of the pipe filter) count too.
 */
export function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime..cstime are fields 14..17.
    ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  }
  return ticks / CLK_TCK;
}

/** CPU seconds of the children this process has reaped (smtp-source runs): cutime + cstime of /proc/self/stat. */
export function reapedChildrenSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / CLK_TCK;
}

/** Busy and total CPU seconds of the whole machine, all cores (the first line of /proc/stat; idle and iowait are not busy). */
export function machineSeconds(): { busy: number; total: number } {
  const [, ...ticks] = readFileSync('/proc/stat', 'latin1').split('\n')[0].trim().split(/\s+/);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const [user, nice, system, idle, iowait, irq, softirq, steal] = ticks.map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  return { busy: busy / CLK_TCK, total: (busy + idle + iowait) / CLK_TCK };
}

/** Resident set size in MB of a process (VmRSS). */
export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  return m ? Number(m[1]) / 1024 : NaN;
}

export interface SourceRun {
  seconds: number;
  messages: number;
}

/**
 * smtp-source: `count` messages of `file` (sent as is, one line per LF, dot-stuffed by smtp-source), `sessions`
 * SMTP sessions in parallel, one message per session (it reconnects for each message, as MTAs mostly do toward
 * a new destination). Rejects unless every message got a 2xx.
 */
export function smtpSource(port: number, file: string, count: number, sessions: number): Promise<SourceRun> {
  const args = ['-s', String(sessions), '-m', String(count), '-F', file, '-f', SENDER, '-t', RECIPIENT, '-M', 'bench.amd', `127.0.0.1:${port}`];
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn('smtp-source', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code === 0 && !/fatal|error/i.test(err)) resolve({ seconds, messages: count });
      else reject(new Error(`smtp-source ${args.join(' ')} exited ${code}: ${err.trim()}`));
    });
  });
}

export function smtpSourceCommand(port: number | string, file: string, count: number | string, sessions: number): string {
  return `smtp-source -s ${sessions} -m ${count} -F ${file} -f ${SENDER} -t ${RECIPIENT} -M bench.amd 127.0.0.1:${port}`;
}

/** SMTP dot-stuffing and the terminating dot for a CRLF message. */
export function dataPayload(message: Buffer): Buffer {
  const text = message.toString('latin1').replace(/\r?\n/g, '\r\n').replace(/(^|\r\n)\./g, '$1..');
  return Buffer.from(text.endsWith('\r\n') ? `${text}.\r\n` : `${text}\r\n.\r\n`, 'latin1');
}

/**
 * One SMTP session with one message, as smtp-source runs it (HELO, MAIL, RCPT, DATA, the message, QUIT);
 * resolves to the milliseconds from the start of the connection to the reply to the final dot.
 */
export function sendOne(port: number, payload: Buffer, timeoutMs = 30_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    const steps = ['HELO bench.amd\r\n', `MAIL FROM:<${SENDER}>\r\n`, `RCPT TO:<${RECIPIENT}>\r\n`, 'DATA\r\n', payload, 'QUIT\r\n'];
    const expect = [220, 250, 250, 250, 354, 250];
    let step = 0;
    let buf = '';
    let done = false;
    const timer = setTimeout(() => fail(new Error('timed out')), timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.on('error', (err) => (done ? undefined : fail(err)));
    socket.on('data', (d: Buffer) => {
      if (done) return;
      buf += d.toString('latin1');
      // Complete replies: the last line of each has a space after the code.
      for (;;) {
        const m = /^(\d{3}) [^\n]*\n/m.exec(buf);
        if (!m) return;
        buf = buf.slice(m.index + m[0].length);
        const code = Number(m[1]);
        if (code !== expect[step]) return fail(new Error(`expected ${expect[step]}, got ${m[0].trim()}`));
        if (step === expect.length - 1) {
          done = true;
          clearTimeout(timer);
          resolve(Number(process.hrtime.bigint() - started) / 1e6);
          socket.end(steps[step]);
          return;
        }
        socket.write(steps[step++]);
      }
    });
  });
}

/**
 * Open-loop load at a steady rate: a new session every 1/rate s whatever the earlier ones are doing, so a slow
 * system shows as latency, not as a lower offered rate. Resolves to each message's latency in ms.
 */
export async function steadyLatency(port: number, payload: Buffer, rate: number, count: number): Promise<number[]> {
  const results: Promise<number>[] = [];
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    results.push(sendOne(port, payload));
  }
  return Promise.all(results);
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

/** Nearest-rank percentile. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
