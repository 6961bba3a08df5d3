/**
 * A message kept on disk instead of in memory: its header section in memory, its body in a private file. The
 * body is written line by line as the SMTP server receives it (BodySpool: dot-unstuffed, canonical CRLF, in
 * large batches), and read back in pieces with positional reads as often as needed (SpooledMessage: each
 * delivery, relay fallback or retry reads it again from disk).
 */
import { closeSync, openSync, readSync, unlinkSync, writevSync } from 'node:fs';
import { canonicalize } from '../mime';

const DOT = 0x2e;

/** Written to the file in batches of this size (lines arrive one by one). */
const BATCH = 1024 * 1024;
/** Read back in pieces of this size (few system calls; the envelope slices them into its own 64 KB pieces). */
export const READ_PIECE = 256 * 1024;

export class SpooledMessage {
  private fd: number | undefined;

  constructor(
    /** The header section and the empty line after it (canonical CRLF). */
    readonly head: Buffer,
    /** The body file, or undefined for an empty body. */
    readonly path: string | undefined,
    readonly bodyLength: number,
  ) {}

  /** Octets of the whole message. */
  get length(): number {
    return this.head.length + this.bodyLength;
  }

  /**
   * Octets [start, end) of the message, in pieces of at most READ_PIECE octets, read when asked for. With `reuse`
   * every piece is read into the same buffer: for a consumer that is done with a piece before it asks for the
   * next (a cipher, a hash), so a pass over a large message makes no garbage.
   */
  *read(start = 0, end = this.length, reuse = false): Generator<Buffer> {
    if (start < 0 || end > this.length || start > end) throw new RangeError(`bad range ${start}..${end} of ${this.length}`);
    if (start < this.head.length) {
      yield this.head.subarray(start, Math.min(end, this.head.length));
      start = this.head.length;
    }
    const shared = reuse ? Buffer.allocUnsafe(Math.min(READ_PIECE, end - start)) : undefined;
    for (let pos = start; pos < end; ) {
      const size = Math.min(READ_PIECE, end - pos);
      const piece = shared ? shared.subarray(0, size) : Buffer.allocUnsafe(size);
      let got = 0;
      while (got < piece.length) {
        const n = readSync(this.descriptor(), piece, got, piece.length - got, pos - this.head.length + got);
        if (n === 0) throw new Error(`spool file ${this.path} is shorter than ${this.bodyLength} octets`);
        got += n;
      }
      pos += got;
      yield piece;
    }
  }

  /** The whole message in one Buffer (the in-memory path, for what cannot be streamed). */
  readAll(): Buffer {
    return Buffer.concat([...this.read()], this.length);
  }

  /** Close and remove the body file. Idempotent. */
  dispose(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    removeFile(this.path);
  }

  private descriptor(): number {
    this.fd ??= openSync(this.path!, 'r');
    return this.fd;
  }
}

function removeFile(path: string | undefined): void {
  if (!path) return;
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/**
 * The body of a message being received, written to `path` (created 0600, must not exist) one SMTP data line at a
 * time: a line-initial dot of the transparency procedure (RFC 5321 4.5.2) is removed, bare CR and LF become
 * CRLF. Lines must be whole (ending in LF, except perhaps the last), as the SMTP server splits them.
 */
export class BodySpool {
  private fd: number | undefined;
  private batch: Buffer[] = [];
  private batchLength = 0;
  private written = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'wx', 0o600);
  }

  /** One data line as received (dot-stuffed). */
  line(line: Buffer): void {
    let data = line.length >= 2 && line[0] === DOT && line[1] === DOT ? line.subarray(1) : line;
    data = canonicalize(data);
    this.batch.push(data);
    this.batchLength += data.length;
    if (this.batchLength >= BATCH) this.flush();
  }

  /** All lines written: the message, with `head` (header section and empty line) in front of the body. */
  finish(head: Buffer): SpooledMessage {
    this.flush();
    closeSync(this.fd!);
    this.fd = undefined;
    return new SpooledMessage(head, this.path, this.written);
  }

  /** Give up (the transaction ended without data_post): close and remove the file. Idempotent. */
  abort(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.batch = [];
    removeFile(this.path);
  }

  /** The batch in one gathering write (no copy into a batch buffer: the lines are written where they are). */
  private flush(): void {
    let pending = this.batch;
    let left = this.batchLength;
    while (left > 0) {
      let n = writevSync(this.fd!, pending);
      left -= n;
      if (left === 0) break;
      // A short write: continue after what was written.
      let i = 0;
      while (n >= pending[i].length) n -= pending[i++].length;
      pending = [pending[i].subarray(n), ...pending.slice(i + 1)];
    }
    this.written += this.batchLength;
    this.batch = [];
    this.batchLength = 0;
  }
}
