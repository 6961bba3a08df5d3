/**
 * Dot-stuffing for the DATA phase (RFC 5321 4.5.2), streaming: chunk boundaries may fall anywhere,
 * including between a line end and the dot that follows it.
 */

const DOT = 0x2e;
const LF = 0x0a;
const CR = 0x0d;

export class DotStuffer {
  /** True when the next byte starts a line (the message start counts as one). */
  private atLineStart = true;
  private last2: [number, number] = [-1, -1];
  private empty = true;

  /** The chunk with a dot added before every line-initial dot. */
  stuff(chunk: Buffer): Buffer {
    if (chunk.length === 0) return chunk;
    const parts: Buffer[] = [];
    let from = 0;
    // A line starts after any LF: stuffing after a bare LF too keeps a "\n.\n" from ending the
    // message early at a lenient server (SMTP smuggling).
    for (let i = 0; i < chunk.length; i++) {
      if (chunk[i] === DOT && (i === 0 ? this.atLineStart : chunk[i - 1] === LF)) {
        parts.push(chunk.subarray(from, i), Buffer.of(DOT));
        from = i;
      }
    }
    parts.push(chunk.subarray(from));
    this.atLineStart = chunk[chunk.length - 1] === LF;
    this.last2 = chunk.length >= 2 ? [chunk[chunk.length - 2], chunk[chunk.length - 1]] : [this.last2[1], chunk[0]];
    this.empty = false;
    return parts.length === 1 ? chunk : Buffer.concat(parts);
  }

  /** The terminator: CRLF first if the message did not end with one, then ".\r\n". */
  end(): Buffer {
    const endsWithCrlf = this.empty || (this.last2[0] === CR && this.last2[1] === LF);
    return Buffer.from(endsWithCrlf ? '.\r\n' : '\r\n.\r\n', 'latin1');
  }
}
