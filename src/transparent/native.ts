/**
 * The native addon (native/transparent.c, built by node-gyp at install) behind a typed surface: transparent
 * listening and connecting sockets, which Node has no API for. The addon is optional: when it was not built or
 * cannot be loaded, transparentSupport() says why and callers use ordinary sockets.
 */
import { constants as osConstants } from 'node:os';
import { Socket } from 'node:net';
import { join } from 'node:path';

interface Addon {
  listen(host: string, port: number, backlog: number): number;
  connect(source: string, host: string, port: number, done: (errno: number, fd: number) => void): void;
  close(fd: number): void;
}

/** build/ sits at the repository root; this file runs from dist/src/transparent/. */
const ADDON_PATH = join(__dirname, '..', '..', '..', 'build', 'Release', 'cstp_transparent.node');

let loaded: { addon: Addon } | { reason: string } | undefined;

function load(): { addon: Addon } | { reason: string } {
  if (!loaded) {
    try {
      loaded = { addon: require(ADDON_PATH) as Addon };
    } catch (e) {
      loaded = { reason: `native addon ${ADDON_PATH} not loadable (${(e as Error).message.split('\n')[0]}); run "npx node-gyp rebuild"` };
    }
  }
  return loaded;
}

export type Support = { ok: true } | { ok: false; reason: string };

/** Whether the addon is there; whether the process may use IP_TRANSPARENT shows only when a socket is made. */
export function transparentSupport(): Support {
  const l = load();
  return 'addon' in l ? { ok: true } : { ok: false, reason: l.reason };
}

function addon(): Addon {
  const l = load();
  if ('reason' in l) throw Object.assign(new Error(l.reason), { code: 'ENOADDON' });
  return l.addon;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, value]) => [value, name]));

/** An Error carrying the errno name as code (EPERM, ECONNREFUSED, ...), like Node's own socket errors. */
function errnoError(errno: number, what: string): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(errno) ?? `E${errno}`;
  return Object.assign(new Error(`${what}: ${code}`), { code, errno });
}

/** The addon throws with the errno (as a decimal string) in `code`; give it its name. */
function rethrow(e: unknown, what: string): never {
  const errno = Number((e as NodeJS.ErrnoException).code);
  if (Number.isInteger(errno)) throw errnoError(errno, `${what}: ${(e as Error).message}`);
  throw e;
}

/** A listening descriptor with IP_TRANSPARENT, for net.Server.listen({ fd }). Throws (e.g. code EPERM). */
export function listenTransparent(host: string, port: number, backlog = 511): number {
  const native = addon();
  try {
    return native.listen(host, port, backlog);
  } catch (e) {
    rethrow(e, `transparent listener on ${host}:${port}`);
  }
}

export interface TransparentConnect {
  /** The source address to use: the client's own, not one of this host's. */
  source: string;
  host: string;
  port: number;
  /** Gives up (rejecting with code ABORT_ERR) and closes the socket when it completes later. */
  signal?: AbortSignal;
}

/**
 * A connected socket to host:port with `source` as its source address. Rejects with code EPERM (no
 * CAP_NET_RAW/CAP_NET_ADMIN), ECONNREFUSED, ETIMEDOUT, ENOADDON (addon not built), ...
 */
export function connectTransparent(opts: TransparentConnect): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const what = `connect to ${opts.host}:${opts.port} from ${opts.source}`;
    let settled = false;
    const onAbort = (): void => {
      settled = true;
      reject(Object.assign(new Error(`${what}: aborted`), { code: 'ABORT_ERR' }));
    };
    if (opts.signal?.aborted) return onAbort();
    try {
      const native = addon();
      native.connect(opts.source, opts.host, opts.port, (errno, fd) => {
        opts.signal?.removeEventListener('abort', onAbort);
        if (settled) {
          // Completed after the caller gave up: nobody wants it any more.
          if (fd >= 0) native.close(fd);
          return;
        }
        settled = true;
        if (errno !== 0) reject(errnoError(errno, what));
        else resolve(new Socket({ fd, readable: true, writable: true }));
      });
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    } catch (e) {
      settled = true;
      try {
        rethrow(e, what);
      } catch (named) {
        reject(named);
      }
    }
  });
}
