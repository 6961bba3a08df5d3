/**
 * Charset names from MIME (RFC 2047 encoded words, RFC 2231 parameters) to text, through the
 * WHATWG decoders Node ships with full ICU. Unknown names give undefined so callers can keep
 * the original text rather than guess.
 */
import { TextDecoder } from 'node:util';

const decoders = new Map<string, TextDecoder>();

export function decodeCharset(bytes: Uint8Array, charset: string): string | undefined {
  const decoder = decoderFor(charset.trim().toLowerCase());
  return decoder?.decode(bytes);
}

function decoderFor(label: string): TextDecoder | undefined {
  if (label === '') return undefined;
  let decoder = decoders.get(label);
  if (!decoder) {
    try {
      decoder = new TextDecoder(label);
    } catch {
      return undefined; // the cache holds only labels that exist, so input cannot grow it without bound
    }
    decoders.set(label, decoder);
  }
  return decoder;
}
