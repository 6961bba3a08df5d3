/**
 * Listening sockets handed over by systemd socket activation (sd_listen_fds(3)): LISTEN_PID names this process,
 * LISTEN_FDS counts descriptors starting at 3. A .socket unit with Transparent=yes gives the gateway its
 * IP_TRANSPARENT listener without the gateway holding the capability to make one.
 */
const SD_LISTEN_FDS_START = 3;

export function listenFds(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number[] {
  if (env.LISTEN_PID === undefined || Number(env.LISTEN_PID) !== pid) return [];
  const count = Number(env.LISTEN_FDS);
  if (!Number.isInteger(count) || count <= 0) return [];
  return Array.from({ length: count }, (_, i) => SD_LISTEN_FDS_START + i);
}
