/**
 * cstp-transparent: accepts the connections the inline bridge diverts (TPROXY, docs/NETWORK.md). The listening
 * socket comes from systemd socket activation (cstp.socket, Transparent=yes) when present, else it is made here
 * from [transparent] listen with the native addon. Connections accepted on it are marked as diverted, so
 * cstp-gateway continues them to their original destination, from the client's address. Without either, this
 * plugin does nothing (relay and content-filter use).
 */
import type { Server as NetServer } from 'node:net';
import { HOST_PORT } from '../../src/config/schema';
import { isDiverted, isOwnAddress, markDiverted } from '../../src/transparent/listener';
import { listenTransparent } from '../../src/transparent/native';
import { onFallback } from '../../src/transparent/outbound';
import { listenFds } from '../../src/transparent/systemd';
import { codes, gatewayConfig, type Connection, type Next, type Plugin } from '../haraka';

interface HarakaServer {
  /** Set when Haraka runs as a cluster (smtp.ini nodes > 0). */
  cluster?: unknown;
  cfg: { main: { inactivity_timeout?: number } };
  get_smtp_server(ep: { port: number }, inactivityTimeout: number): Promise<NetServer>;
}

export function register(this: Plugin): void {
  onFallback((reason) => this.logwarn(reason));
}

/** The descriptors to accept diverted connections on, and where they came from. */
function listeners(): { fds: number[]; origin: string } {
  const inherited = listenFds();
  if (inherited.length > 0) {
    // Not for our children (sd_listen_fds(3) unset_environment).
    delete process.env.LISTEN_FDS;
    delete process.env.LISTEN_PID;
    delete process.env.LISTEN_FDNAMES;
    return { fds: inherited, origin: 'systemd socket activation' };
  }
  const listen = gatewayConfig().transparent.listen;
  if (!listen) return { fds: [], origin: '' };
  const match = HOST_PORT.exec(listen)!; // validated at startup: IP literal and port
  return { fds: [listenTransparent(match[1] ?? match[2], Number(match[3]))], origin: `[transparent] listen = ${listen}` };
}

/**
 * The diverted-connection descriptors a cluster master hands its workers (in their environment, as cluster.fork
 * copies it). A worker that listens on one gets the master's socket through Node's cluster module and accepts on
 * it itself (cstp-config sets SCHED_NONE), so every worker serves diverted connections.
 */
const WORKER_FDS = 'CSTP_TRANSPARENT_FDS';

// Runs in the only process (nodes=0), once Haraka's own listeners are up, or in the cluster master before it forks.
export function hook_init_master(this: Plugin, next: Next, server: HarakaServer): void {
  let found: { fds: number[]; origin: string };
  try {
    found = listeners();
  } catch (err) {
    return next(codes.deny, `cstp-transparent: cannot accept diverted connections: ${(err as Error).message}`);
  }
  if (found.fds.length === 0) return next();
  if (server.cluster) {
    process.env[WORKER_FDS] = found.fds.join(',');
    this.lognotice(`Diverted connections on fd ${found.fds.join(', ')} (${found.origin}), accepted for the workers`);
    return next();
  }
  listenDiverted(this, server, found).then(() => next(), (err: Error) => next(codes.deny, `cstp-transparent: cannot accept diverted connections: ${err.message}`));
}

// Runs in each cluster worker.
export function hook_init_child(this: Plugin, next: Next, server: HarakaServer): void {
  const fds = (process.env[WORKER_FDS] ?? '').split(',').filter(Boolean).map(Number);
  if (fds.length === 0) return next();
  listenDiverted(this, server, { fds, origin: 'from the cluster master' }).then(
    () => next(),
    (err: Error) => next(codes.deny, `cstp-transparent: cannot accept diverted connections: ${err.message}`),
  );
}

/** A Haraka SMTP server on each descriptor, its connections marked as diverted. */
async function listenDiverted(plugin: Plugin, server: HarakaServer, found: { fds: number[]; origin: string }): Promise<void> {
  const timeoutMs = (server.cfg.main.inactivity_timeout ?? 300) * 1000;
  await Promise.all(
    found.fds.map(async (fd) => {
      const smtp = await server.get_smtp_server({ port: 0 }, timeoutMs);
      markDiverted(smtp);
      await new Promise<void>((resolve, reject) => {
        smtp.once('error', reject);
        smtp.listen({ fd }, () => {
          smtp.off('error', reject);
          resolve();
        });
      });
      const addr = smtp.address();
      const where = addr && typeof addr === 'object' ? `${addr.address}:${addr.port}` : `fd ${fd}`;
      plugin.lognotice(`Listening for diverted connections on ${where} (${found.origin})`);
    }),
  );
}

/** A diverted connection to this host itself would be continued to ourselves: refused before any SMTP. */
export function hook_connect(this: Plugin, next: Next, connection: Connection): void {
  if (isDiverted(connection.server) && isOwnAddress(connection.local.ip)) {
    connection.logwarn(this, `diverted connection from ${connection.remote.ip} to this host's own ${connection.local.ip}: refused (mail loop)`);
    return next(codes.denydisconnect, '5.4.6 routing loop: this gateway is the destination');
  }
  next();
}
