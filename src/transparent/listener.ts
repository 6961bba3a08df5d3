/**
 * Which listening servers take diverted (TPROXY) connections. On such a connection the accepted socket's local
 * address is the original destination, and the client expects to be talking to it.
 */
import { networkInterfaces } from 'node:os';

const diverted = new WeakSet<object>();

export function markDiverted(server: object): void {
  diverted.add(server);
}

/** Whether a connection accepted by `server` was diverted by the kernel rather than addressed to us. */
export function isDiverted(server: object | undefined | null): boolean {
  return server != null && diverted.has(server);
}

/**
 * Whether `ip` is one of this host's own addresses. A diverted connection whose original destination is this
 * host (say the bridge's management address, port 25) would be continued to ourselves: a loop.
 */
export function isOwnAddress(ip: string): boolean {
  const plain = ip.replace(/^::ffff:(?=\d+\.)/, '');
  return Object.values(networkInterfaces()).some((addrs) => addrs?.some((a) => a.address === plain));
}
