/**
 * RFC 5322 / RFC 8551 3.1.1 canonical form: every line ends in CRLF. A bare LF and a bare CR
 * each become CRLF. The scan uses native memchr (Buffer.indexOf) for CR and LF, so canonical
 * input costs about two native calls per line and is returned as is, without a copy.
 */
import { CR, LF } from './bytes';

export function canonicalize(input: Buffer): Buffer {
  const end = input.length;
  let out: Buffer | undefined;
  let written = 0;
  let copiedUpTo = 0;
  let nextCr = input.indexOf(CR);
  let nextLf = input.indexOf(LF);
  while (nextCr !== -1 || nextLf !== -1) {
    let bare: number;
    if (nextCr !== -1 && (nextLf === -1 || nextCr < nextLf)) {
      bare = nextCr;
      nextCr = input.indexOf(CR, bare + 1);
      if (bare + 1 < end && input[bare + 1] === LF) {
        nextLf = input.indexOf(LF, bare + 2);
        continue;
      }
    } else {
      bare = nextLf;
      nextLf = input.indexOf(LF, bare + 1);
    }
    out = reserve(out, written, written + (bare - copiedUpTo) + 2 + (end - bare - 1), end);
    written += input.copy(out, written, copiedUpTo, bare);
    out[written++] = CR;
    out[written++] = LF;
    copiedUpTo = bare + 1;
  }
  if (!out) return input;
  written += input.copy(out, written, copiedUpTo);
  return out.subarray(0, written);
}

/**
 * Output space for at least `needed` bytes. The first guess (3% over the input) fits LF-only
 * text with lines of 33 octets or more, so the usual conversion allocates once and never counts.
 */
function reserve(out: Buffer | undefined, written: number, needed: number, inputLength: number): Buffer {
  if (!out) return Buffer.allocUnsafe(Math.max(needed, inputLength + (inputLength >> 5) + 16));
  if (needed <= out.length) return out;
  const bigger = Buffer.allocUnsafe(Math.max(needed, out.length + (out.length >> 1)));
  out.copy(bigger, 0, 0, written);
  return bigger;
}
