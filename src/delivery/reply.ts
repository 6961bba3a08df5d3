/**
 * SMTP replies (RFC 5321 4.2): parsing from the wire, and replies cstp synthesises itself when
 * the peer cannot give one (timeout, unreachable, broken connection).
 */

export interface SmtpReply {
  /** The three-digit reply code. */
  code: number;
  /** The RFC 3463 enhanced status code at the start of the first line's text, when present. */
  enhanced?: string;
  /** The text of every line after "NNN-" / "NNN ", exactly as the server sent it (enhanced code included). */
  lines: string[];
  /** True when cstp made this reply up (timeout, unreachable, protocol error); the peer never sent it. */
  local?: boolean;
}

/** Longest reply line accepted; RFC 5321 4.5.3.1.5 says 512, real servers send somewhat longer. */
const MAX_LINE = 4096;
/** Most lines in one reply: EHLO replies have a few dozen at most. */
const MAX_LINES = 200;

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?= |$)/;

function enhancedOf(code: number, text: string): string | undefined {
  const m = ENHANCED.exec(text);
  // An enhanced code whose class differs from the reply code is not one (RFC 3463 section 2).
  return m && Number(m[1]) === Math.floor(code / 100) ? m[0] : undefined;
}

export function makeReply(code: number, lines: string[], local?: boolean): SmtpReply {
  const enhanced = enhancedOf(code, lines[0] ?? '');
  return { code, ...(enhanced ? { enhanced } : {}), lines, ...(local ? { local } : {}) };
}

/** A reply cstp synthesises, e.g. localReply(421, '4.4.2', 'mx timed out waiting for greeting'). */
export function localReply(code: number, enhanced: string, text: string): SmtpReply {
  return makeReply(code, [`${enhanced} ${text}`], true);
}

/** The reply as it goes on the wire, CRLF-terminated lines. */
export function formatReply(reply: SmtpReply): string {
  const lines = reply.lines.length ? reply.lines : [''];
  return lines.map((l, i) => `${reply.code}${i < lines.length - 1 ? '-' : ' '}${l}\r\n`).join('');
}

export const isPositive = (r: SmtpReply): boolean => r.code >= 200 && r.code < 400;
export const isTransient = (r: SmtpReply): boolean => r.code >= 400 && r.code < 500;
export const isPermanent = (r: SmtpReply): boolean => r.code >= 500;

export class ReplyParseError extends Error {}

/**
 * Incremental parser: feed it whatever the socket delivered (replies may be split across
 * packets or several may arrive in one) and it returns the replies completed so far.
 */
export class ReplyParser {
  private pending: Buffer = Buffer.alloc(0);
  private code = 0;
  private lines: string[] = [];

  /** True when bytes of an unfinished reply are held (used to detect data smuggled after STARTTLS). */
  get hasPartial(): boolean {
    return this.pending.length > 0 || this.lines.length > 0;
  }

  push(data: Buffer): SmtpReply[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, data]) : data;
    const done: SmtpReply[] = [];
    let start = 0;
    for (let nl = this.pending.indexOf(10, start); nl >= 0; nl = this.pending.indexOf(10, start)) {
      // CRLF is the rule; a bare LF is tolerated as a line end because some servers send it.
      const end = nl > start && this.pending[nl - 1] === 13 ? nl - 1 : nl;
      const reply = this.line(this.pending.toString('utf8', start, end));
      if (reply) done.push(reply);
      start = nl + 1;
    }
    this.pending = this.pending.subarray(start);
    if (this.pending.length > MAX_LINE) throw new ReplyParseError(`reply line longer than ${MAX_LINE} bytes`);
    return done;
  }

  private line(line: string): SmtpReply | undefined {
    const m = /^([2-5]\d\d)(?:([ -])(.*))?$/s.exec(line);
    if (!m) throw new ReplyParseError(`malformed reply line ${JSON.stringify(line.slice(0, 80))}`);
    const code = Number(m[1]);
    if (this.lines.length && code !== this.code) {
      throw new ReplyParseError(`reply code changed from ${this.code} to ${code} inside a multi-line reply`);
    }
    if (this.lines.length >= MAX_LINES) throw new ReplyParseError(`reply longer than ${MAX_LINES} lines`);
    this.code = code;
    this.lines.push(m[3] ?? '');
    if (m[2] === '-') return undefined;
    const reply = makeReply(code, this.lines);
    this.lines = [];
    return reply;
  }
}
