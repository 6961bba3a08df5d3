/**
 * Connections to the original destination. A diverted client's connection is continued with the client's own
 * address as source (IP_TRANSPARENT through the native addon), so the destination sees and logs the client, as
 * without the gateway. When this process cannot do that (addon not built, no CAP_NET_RAW/CAP_NET_ADMIN) it
 * falls back, for good, to its own address: the reason is reported once through onFallback.
 */
import * as net from 'node:net';
import { connectTransparent } from './native';

export interface ConnectOptions {
  host: string;
  port: number;
  /** Our own source address (a plain bind). */
  localAddress?: string;
  /** A foreign source address to keep: the diverted client's. */
  source?: string;
  /** Aborting destroys the half-open socket. */
  signal?: AbortSignal;
}

/** Errors that say this process cannot make transparent sockets at all, rather than that this connection failed. */
const UNAVAILABLE = new Set(['EPERM', 'EACCES', 'ENOADDON', 'ENOPROTOOPT']);

let unavailable: string | undefined;
let fallbackListener: ((reason: string) => void) | undefined;

/** Called once, when transparent connections turn out to be impossible here. */
export function onFallback(listener: (reason: string) => void): void {
  fallbackListener = listener;
}

/** Why connections use our own address instead of the client's, once that has been found out. */
export function transparentOutboundUnavailable(): string | undefined {
  return unavailable;
}

function plainConnect(opts: ConnectOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: opts.host, port: opts.port, localAddress: opts.localAddress });
    const onAbort = (): void => {
      socket.destroy();
      reject(Object.assign(new Error(`connect to ${opts.host}:${opts.port}: aborted`), { code: 'ABORT_ERR' }));
    };
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', (err) => {
      opts.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(err);
    });
    socket.once('connect', () => {
      opts.signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

/** A connected socket to host:port; from `source` when given and possible, else from our own address. */
export async function openConnection(opts: ConnectOptions): Promise<net.Socket> {
  if (opts.source === undefined || unavailable !== undefined) return plainConnect(opts);
  try {
    return await connectTransparent({ source: opts.source, host: opts.host, port: opts.port, signal: opts.signal });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (!UNAVAILABLE.has(err.code ?? '')) throw err;
    unavailable = `connections to destinations use this host's address, not the client's: ${err.message}`;
    fallbackListener?.(unavailable);
    return plainConnect(opts);
  }
}
