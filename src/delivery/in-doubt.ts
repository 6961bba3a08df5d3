/**
 * In-doubt deliveries: RFC 1047's duplicate-message problem on the client leg. When the gateway stops (kill -9,
 * a cut connection) after the destination accepted a message but before its client got our 250, the client (an
 * MTA) sends the same message again. A marker file per such transaction lets any gateway process recognise the
 * resend and answer it 250 without delivering again.
 *
 * A marker is written (synchronously; no fsync: the page cache survives kill -9; after a power loss the worst case
 * is a duplicate, never a loss) once every part of a delivery is accepted or queued, and removed once our
 * 250 is on the client socket. It is named by the transaction's key: SHA-256 over the envelope and the message
 * exactly as the client sent it. Files only, no state in memory, so every process sharing the directory (Haraka
 * cluster) sees every marker. Markers older than MAX_AGE_MS are swept: a client gives up long before.
 *
 * A marker answers a resend only once its transaction is over without our 250: its process is gone (a crash),
 * or its client left before the answer (abandon()). While the transaction is still being answered, an identical
 * message on another connection is not a resend (a load generator sending one file many times at once) and is
 * delivered.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { processAlive } from '../pid';

/** 5 days: the usual maximum queue lifetime of MTAs (Postfix maximal_queue_lifetime); no resend comes later. */
export const MAX_AGE_MS = 5 * 24 * 60 * 60 * 1000;

const KEY = /^[0-9a-f]{64}$/;

/** What a marker tells the process that meets the resend (for its log line). */
export interface InDoubtRecord {
  /** The transaction that delivered the message. */
  transaction: string;
  /** The destination's reply to it. */
  reply: string;
  /** The process answering that transaction's client. */
  pid?: number;
  /** Its client left before it had our 250. */
  abandoned?: boolean;
}

export interface Envelope {
  from: string;
  /** The recipients the destination accepted; order does not matter. */
  recipients: readonly string[];
}

/**
 * The key of a transaction: SHA-256 over its envelope (MAIL FROM, the sorted recipients) and the SHA-256 of the
 * message bytes as the client sent them (hashed while they arrive, so the message is never read twice).
 */
export function inDoubtKey(envelope: Envelope, messageDigest: Buffer): string {
  const hash = createHash('sha256');
  hash.update(`MAIL FROM:<${envelope.from}>\r\n`);
  for (const r of [...envelope.recipients].sort()) hash.update(`RCPT TO:<${r}>\r\n`);
  hash.update(messageDigest);
  return hash.digest('hex');
}

const missing = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENOENT';

export class InDoubtDeliveries {
  constructor(
    readonly dir: string,
    private readonly maxAgeMs = MAX_AGE_MS,
    private readonly now: () => number = Date.now,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 }); // envelopes are private
  }

  /** The destination accepted the transaction `key` and its client has not been answered yet. */
  record(key: string, record: InDoubtRecord): void {
    writeFileSync(this.path(key), JSON.stringify(record), { mode: 0o600 });
  }

  /**
   * The marker of an earlier delivery of `key` whose transaction ended without our 250 reaching its client, if
   * there is one: written by a process that is gone, or abandoned. (A process id reused since is taken for the
   * live writer: a duplicate at worst, never a loss.)
   */
  find(key: string): InDoubtRecord | undefined {
    const record = this.read(key);
    if (!record) return undefined;
    return record.abandoned || record.pid === undefined || !processAlive(record.pid) ? record : undefined;
  }

  /** The client of the transaction `key` left before our 250: a resend of it may come, on any connection. */
  abandon(key: string): void {
    const record = this.read(key);
    if (record) this.record(key, { ...record, abandoned: true });
  }

  private read(key: string): InDoubtRecord | undefined {
    const path = this.path(key);
    // Nearly every message has no marker: a failed open would cost an exception with its stack each time.
    if (!existsSync(path)) return undefined;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if (missing(err)) return undefined;
      throw err;
    }
    try {
      return JSON.parse(text) as InDoubtRecord;
    } catch {
      // Read while it is being written (or a write cut by a kill): taken as none, so a duplicate at worst.
      return undefined;
    }
  }

  /** The client has our 250: the transaction is no longer in doubt. */
  settle(key: string): void {
    try {
      unlinkSync(this.path(key));
    } catch (err) {
      if (!missing(err)) throw err;
    }
  }

  /** Removes markers older than the maximum age; returns how many. */
  sweep(): number {
    let removed = 0;
    for (const name of readdirSync(this.dir)) {
      const file = join(this.dir, name);
      try {
        if (this.now() - statSync(file).mtimeMs <= this.maxAgeMs) continue;
        unlinkSync(file);
        removed++;
      } catch (err) {
        // Another process settled or swept it meanwhile.
        if (!missing(err)) throw err;
      }
    }
    return removed;
  }

  /** Sweeps now and every `intervalMs`; the timer does not keep the process alive. */
  sweepEvery(intervalMs: number, onError: (err: Error) => void): NodeJS.Timeout {
    const run = (): void => {
      try {
        this.sweep();
      } catch (err) {
        onError(err as Error);
      }
    };
    run();
    return setInterval(run, intervalMs).unref();
  }

  private path(key: string): string {
    if (!KEY.test(key)) throw new Error(`not an in-doubt key: ${key}`);
    return join(this.dir, key);
  }
}
