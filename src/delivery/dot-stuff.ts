/**
 * Dot-stuffing for the DATA phase (RFC 5321 4.5.2), streaming: chunk boundaries may fall anywhere,
 * including between a line end and the dot that follows it.
 */

const DOT = 0x2e;
const LF = 0x0a;
const CR = 0x0d;
const LF_DOT = Buffer.from('\n.', 'latin1');
const EXTRA_DOT = Buffer.of(DOT);

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
    if (this.atLineStart && chunk[0] === DOT) parts.push(chunk.subarray(0, 0), EXTRA_DOT);
    // One native search per line-initial dot, not a JS loop over every octet: this runs over every
    // octet the gateway sends, a 100 MB message included.
    for (let i = chunk.indexOf(LF_DOT); i !== -1; i = chunk.indexOf(LF_DOT, i + 1)) {
      parts.push(chunk.subarray(from, i + 1), EXTRA_DOT);
      from = i + 1;
    }
    this.atLineStart = chunk[chunk.length - 1] === LF;
    this.last2 = chunk.length >= 2 ? [chunk[chunk.length - 2], chunk[chunk.length - 1]] : [this.last2[1], chunk[0]];
    this.empty = false;
    if (parts.length === 0) return chunk;
    parts.push(chunk.subarray(from));
    return Buffer.concat(parts);
  }

  /** The terminator: CRLF first if the message did not end with one, then ".\r\n". */
  end(): Buffer {
    const endsWithCrlf = this.empty || (this.last2[0] === CR && this.last2[1] === LF);
    return Buffer.from(endsWithCrlf ? '.\r\n' : '\r\n.\r\n', 'latin1');
  }
}
