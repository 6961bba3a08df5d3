/**
 * Keeping a streamed message's garbage small. Streaming a 100 MB message allocates a new Buffer for every
 * piece on its way (socket reads, cipher output, base64 lines), each garbage a moment later; V8 collects
 * them only when its young generation fills or external memory has grown by about 64 MB since the last
 * collection, which for Buffers (tiny on the heap, large outside it) means the latter: RSS would carry up to
 * 64 MB of dead Buffers. A young-generation collection (a millisecond) after every few MiB streamed frees them
 * at once. The collector is reached through --expose-gc set at run time; without it this does nothing.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Collect = (options?: { type?: 'major' | 'minor' }) => void;

let collect: Collect | null | undefined;

function collector(): Collect | null {
  if (collect === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      collect = runInNewContext('gc') as Collect;
    } catch {
      collect = null;
    }
  }
  return collect;
}

/** Octets streamed between two young-generation collections. */
export const COLLECT_EVERY = 8 * 1024 * 1024;

/** Counts octets of one stream and collects the young generation after every COLLECT_EVERY of them. */
export class GarbageMeter {
  private since = 0;

  count(octets: number): void {
    this.since += octets;
    if (this.since < COLLECT_EVERY) return;
    this.since = 0;
    collector()?.({ type: 'minor' });
  }
}

/** The chunks of `source`, with a young-generation collection after every COLLECT_EVERY octets. */
export function* metered(source: Iterable<Buffer>): Generator<Buffer> {
  const meter = new GarbageMeter();
  for (const chunk of source) {
    meter.count(chunk.length);
    yield chunk;
  }
}
