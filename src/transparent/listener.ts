/**
 * Which listening servers take diverted (TPROXY) connections. On such a connection the accepted socket's local
 * address is the original destination, and the client expects to be talking to it.
 */
const diverted = new WeakSet<object>();

export function markDiverted(server: object): void {
  diverted.add(server);
}

/** Whether a connection accepted by `server` was diverted by the kernel rather than addressed to us. */
export function isDiverted(server: object | undefined | null): boolean {
  return server != null && diverted.has(server);
}
