/**
 * A durable on-disk retry queue for the parts of a split delivery that failed after another part
 * was accepted (the client got 250, so cstp now owns the rest). Each item is two files in the
 * spool directory: <id>.eml (the message, written once) and <id>.json (envelope and retry state,
 * replaced atomically on every change). Both are written to a temporary name, fsynced and renamed,
 * and the directory is fsynced, so a crash leaves either the old state or the new one.
 *
 * Items are retried with backoff; recipients that fail permanently, or still fail when the delays
 * are used up, get an RFC 3464 delivery status notification queued to the sender via the
 * configured bounce route. Any process may enqueue; exactly one per spool directory runs the queue (start()):
 * the only process, or the cluster master (plugins/cstp-gateway), so no cross-process locking is needed.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { isPermanent, isPositive, localReply, type SmtpReply } from './reply';
import { SmtpClient, type MailParams, type RcptParams, type Timeouts, type TlsOptions } from './smtp-client';
import type { Endpoint } from './transaction';

export interface QueuedRecipient {
  address: string;
  params: RcptParams;
}

export interface QueueItem {
  id: string;
  from: string;
  mailParams: MailParams;
  recipients: QueuedRecipient[];
  destination: Endpoint;
  /** ISO time of enqueueing. */
  arrival: string;
  attempts: number;
  /** Epoch ms of the next try. */
  nextAttempt: number;
  lastReply?: SmtpReply;
}

/** What a caller hands over: the envelope of one message copy and where it goes. */
export interface QueueEntry {
  from: string;
  mailParams?: MailParams;
  recipients: QueuedRecipient[];
  destination: Endpoint;
}

export interface RecipientOutcome {
  address: string;
  reply: SmtpReply;
}

/** Send one queued item; resolves to a reply per recipient (accepted ones positive). */
export type Sender = (item: QueueItem, message: Buffer) => Promise<RecipientOutcome[]>;

export interface RetryQueueOptions {
  dir: string;
  /** Waits between attempts in ms; when they are used up the remaining recipients bounce. */
  delays?: number[];
  /** Where DSNs to senders go (normally the local mail server). Without it failures are only recorded. */
  bounceRoute?: Endpoint;
  /** Our name in DSNs (Reporting-MTA, MAILER-DAEMON address). */
  reportingMta: string;
  send: Sender;
  now?: () => number;
  /** Errors of timer-driven runs (spool unreadable, disk full), for logging. */
  onError?: (err: Error) => void;
}

/** Minutes: 1, 5, 15, 30, then hourly up to about a day, a usual MTA schedule. */
export const DEFAULT_DELAYS = [1, 5, 15, 30, ...Array(23).fill(60)].map((m: number) => m * 60_000);

/**
 * Write to a temporary name, fsync, rename. On failure (disk full) the temporary file goes again, so a
 * full disk leaves neither half a file nor litter behind, and the error names the spool file.
 */
function writeDurably(path: string, data: Buffer | string): void {
  const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      const buf = typeof data === 'string' ? Buffer.from(data) : data;
      // writeSync may write less than asked (a full disk, a signal): loop until all is written or it throws.
      for (let done = 0; done < buf.length; ) done += writeSync(fd, buf, done, buf.length - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new QueueError(`cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** A spool file could not be written or read (disk full, permissions, a corrupt state file). */
export class QueueError extends Error {
  override name = 'QueueError';
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export class RetryQueue {
  private readonly delays: number[];
  private readonly now: () => number;
  private running?: Promise<void>;
  private timer?: NodeJS.Timeout;
  /** An item became due while a run was going on: run again when it ends. */
  private again = false;

  constructor(private readonly opts: RetryQueueOptions) {
    this.delays = opts.delays ?? DEFAULT_DELAYS;
    this.now = opts.now ?? Date.now;
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 }); // messages are private mail
  }

  /** Store a failed part durably; it is tried again after the first delay. */
  enqueue(entry: QueueEntry, message: Buffer): QueueItem {
    const item = this.newItem(entry);
    // The message first: a state file always has its message.
    writeDurably(this.path(item.id, 'eml'), message);
    try {
      this.save(item);
    } catch (err) {
      // Not queued after all (the caller must not report it delivered): no message without its state file.
      rmSync(this.path(item.id, 'eml'), { force: true });
      throw err;
    }
    // Due now (a first delay of 0) and the queue is running: try it right away, not at the next tick.
    if (this.timer && item.nextAttempt <= this.now()) this.kick();
    return item;
  }

  /** Queue a DSN at once for recipients that failed permanently before they reached the queue. */
  bounceNow(entry: QueueEntry, message: Buffer, failures: RecipientOutcome[]): void {
    const item = this.newItem(entry);
    const replies = new Map(failures.map((f) => [f.address, f.reply]));
    this.bounce(item, message, entry.recipients.filter((r) => replies.has(r.address)), replies);
  }

  /**
   * Every item in the spool, oldest first. A state file that cannot be read or parsed is skipped and
   * reported (onError), never deleted: one bad file must not stop the others, and its message stays for
   * an administrator.
   */
  list(): QueueItem[] {
    const items: QueueItem[] = [];
    for (const f of readdirSync(this.opts.dir).filter((name) => name.endsWith('.json')).sort()) {
      try {
        items.push(JSON.parse(readFileSync(join(this.opts.dir, f), 'utf8')) as QueueItem);
      } catch (err) {
        this.opts.onError?.(new QueueError(`skipping unreadable queue item ${join(this.opts.dir, f)}: ${(err as Error).message}`));
      }
    }
    return items;
  }

  /** Try every item that is due; never runs twice at once. */
  runDue(): Promise<void> {
    this.running ??= this.runAll().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
    return this.running;
  }

  /**
   * Make this process the queue's runner: drop what a crash left half-written (only the runner may: another
   * process could be writing an item right now), run due items now (a restarted gateway resumes its queue at
   * once) and every intervalMs until stop(); the timer does not keep the process alive.
   */
  start(intervalMs = 30_000): void {
    if (this.timer) return;
    this.dropIncomplete();
    this.timer = setInterval(() => {
      this.runDue().catch((err: Error) => this.opts.onError?.(err));
    }, intervalMs).unref();
    this.kick();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** A run soon, or one more right after the current run (which may have listed the spool already). */
  private kick(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    setImmediate(() => {
      if (this.timer) this.runDue().catch((err: Error) => this.opts.onError?.(err));
    }).unref();
  }

  /** Every due item is tried even when another fails (disk full, message file gone); the first error is thrown after. */
  private async runAll(): Promise<void> {
    let first: Error | undefined;
    for (const item of this.list().filter((i) => i.nextAttempt <= this.now())) {
      try {
        await this.attempt(item);
      } catch (err) {
        first ??= err as Error;
        if (first !== err) this.opts.onError?.(err as Error);
      }
    }
    if (first) throw first;
  }

  private async attempt(item: QueueItem): Promise<void> {
    const message = readFileSync(this.path(item.id, 'eml'));
    let outcomes: RecipientOutcome[];
    try {
      outcomes = await this.opts.send(item, message);
    } catch (err) {
      const reply = localReply(451, '4.3.0', `cstp could not send from the queue: ${(err as Error).message}`);
      outcomes = item.recipients.map((r) => ({ address: r.address, reply }));
    }
    const got = new Map(outcomes.map((o) => [o.address, o.reply]));
    const missing = localReply(451, '4.3.0', 'no reply for this recipient');
    const replyOf = new Map(item.recipients.map((r) => [r.address, got.get(r.address) ?? missing]));
    const attempts = item.attempts + 1;
    const exhausted = attempts >= this.delays.length;
    const undelivered = item.recipients.filter((r) => !isPositive(replyOf.get(r.address)!));
    const pending = exhausted ? [] : undelivered.filter((r) => !isPermanent(replyOf.get(r.address)!));
    const failed = undelivered.filter((r) => !pending.includes(r));
    if (failed.length) this.bounce(item, message, failed, replyOf);
    if (pending.length === 0) return this.remove(item.id);
    this.save({
      ...item,
      recipients: pending,
      attempts,
      nextAttempt: this.now() + this.delays[attempts],
      lastReply: replyOf.get(pending[0].address),
    });
  }

  /** Queue a DSN to the sender for recipients that will not be delivered (RFC 3461 NOTIFY honoured). */
  private bounce(item: QueueItem, message: Buffer, failed: QueuedRecipient[], replies: Map<string, SmtpReply>): void {
    const notify = failed.filter((r) => !r.params.notify || r.params.notify.includes('FAILURE'));
    // Never bounce a bounce (null sender), and without a route there is nowhere to send it.
    if (item.from === '' || notify.length === 0 || !this.opts.bounceRoute) return;
    const dsn = makeDsn({
      reportingMta: this.opts.reportingMta,
      item,
      message,
      failed: notify.map((r) => ({
        recipient: r,
        reply: replies.get(r.address) ?? localReply(451, '4.3.0', 'no reply recorded'),
      })),
      date: new Date(this.now()),
    });
    this.enqueue({ from: '', recipients: [{ address: item.from, params: {} }], destination: this.opts.bounceRoute }, dsn);
  }

  private newItem(entry: QueueEntry): QueueItem {
    return {
      id: `${this.now().toString(36)}-${randomBytes(6).toString('hex')}`,
      from: entry.from,
      mailParams: entry.mailParams ?? {},
      recipients: entry.recipients,
      destination: entry.destination,
      arrival: new Date(this.now()).toISOString(),
      attempts: 0,
      nextAttempt: this.now() + (this.delays[0] ?? 0),
    };
  }

  private save(item: QueueItem): void {
    writeDurably(this.path(item.id, 'json'), JSON.stringify(item));
    fsyncDir(this.opts.dir);
  }

  private remove(id: string): void {
    rmSync(this.path(id, 'json'), { force: true });
    rmSync(this.path(id, 'eml'), { force: true });
    fsyncDir(this.opts.dir);
  }

  /** Leftovers of a crash: temporary files, and messages whose state file was never written. */
  private dropIncomplete(): void {
    const files = readdirSync(this.opts.dir);
    for (const f of files) {
      const orphan = f.endsWith('.eml') && !files.includes(f.replace(/\.eml$/, '.json'));
      if (f.includes('.tmp-') || orphan) rmSync(join(this.opts.dir, f), { force: true });
    }
  }

  private path(id: string, ext: 'eml' | 'json'): string {
    return join(this.opts.dir, `${id}.${ext}`);
  }
}

/** The RFC 3464 report: human part, machine-readable status per recipient, original headers or message (RET). */
export function makeDsn(input: {
  reportingMta: string;
  item: QueueItem;
  message: Buffer;
  failed: { recipient: QueuedRecipient; reply: SmtpReply }[];
  date: Date;
}): Buffer {
  const { reportingMta, item, message, failed, date } = input;
  const boundary = `cstp-dsn-${randomBytes(8).toString('hex')}`;
  const status = (r: SmtpReply): string => r.enhanced ?? `${Math.floor(r.code / 100)}.0.0`;
  const diagnostic = (r: SmtpReply): string => `smtp; ${r.code} ${r.lines.join(' ')}`.replace(/[\r\n]/g, ' ');
  const headerEnd = message.indexOf('\r\n\r\n');
  // A large message's DSN is given its header section only (the body is on disk or gone): that is quoted as
  // headers even under RET=FULL, rather than as a message/rfc822 whose body is missing.
  const headersOnly = headerEnd < 0 || headerEnd + 4 >= message.length;
  const original =
    item.mailParams.ret === 'FULL' && !headersOnly
      ? ['Content-Type: message/rfc822', '', message.toString('latin1')]
      : ['Content-Type: text/rfc822-headers', '', message.subarray(0, headerEnd < 0 ? message.length : headerEnd + 2).toString('latin1')];
  const perRecipient = failed.flatMap(({ recipient, reply }) => [
    '',
    `Final-Recipient: rfc822; ${recipient.address}`,
    ...(recipient.params.orcpt ? [`Original-Recipient: ${recipient.params.orcpt.replace(';', '; ')}`] : []),
    'Action: failed',
    `Status: ${status(reply)}`,
    `Diagnostic-Code: ${diagnostic(reply)}`,
  ]);
  const lines = [
    `From: Mail Delivery System <MAILER-DAEMON@${reportingMta}>`,
    `To: <${item.from}>`,
    'Subject: Undelivered Mail Returned to Sender',
    `Date: ${date.toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${item.id}.dsn@${reportingMta}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    `Your message could not be delivered to ${failed.length === 1 ? 'this recipient' : 'these recipients'}:`,
    '',
    ...failed.map(({ recipient, reply }) => `<${recipient.address}>: ${reply.code} ${reply.lines.join(' ')}`),
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    `Reporting-MTA: dns; ${reportingMta}`,
    ...(item.mailParams.envid ? [`Original-Envelope-Id: ${item.mailParams.envid}`] : []),
    `Arrival-Date: ${new Date(item.arrival).toUTCString().replace('GMT', '+0000')}`,
    ...perRecipient,
    '',
    `--${boundary}`,
    ...original,
    `--${boundary}--`,
    '',
  ];
  return Buffer.from(lines.join('\r\n'), 'latin1');
}

/** The default Sender: one SMTP session to the item's destination. */
export function smtpSender(opts: { heloName: string; tls?: TlsOptions; timeouts?: Partial<Timeouts> }): Sender {
  return async (item, message) => {
    const client = new SmtpClient({ ...item.destination, heloName: opts.heloName, tls: opts.tls, timeouts: opts.timeouts });
    const all = (reply: SmtpReply): RecipientOutcome[] => item.recipients.map((r) => ({ address: r.address, reply }));
    try {
      const ready = await client.open();
      if (!isPositive(ready)) return all(ready);
      const mail = await client.mail(item.from, item.mailParams);
      if (!isPositive(mail)) return all(mail);
      const rcpts: RecipientOutcome[] = [];
      for (const r of item.recipients) rcpts.push({ address: r.address, reply: await client.rcpt(r.address, r.params) });
      if (!rcpts.some((r) => isPositive(r.reply))) return rcpts;
      const final = await client.data([message]);
      return rcpts.map((r) => (isPositive(r.reply) ? { address: r.address, reply: final } : r));
    } finally {
      void client.quit();
    }
  };
}
