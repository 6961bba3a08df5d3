/**
 * The [delivery] and [upstream_tls] sections in the shape src/delivery takes them. Read once at startup (the
 * cstp-config plugin calls it), so an unreadable CA file stops the gateway instead of failing the first delivery.
 */
import { readFileSync } from 'node:fs';
import type { Endpoint } from '../delivery/transaction';
import type { Timeouts, TlsOptions } from '../delivery/smtp-client';
import { ConfigError, instancePath } from './cstp-config';
import { HOST_PORT, type CstpConfig } from './schema';

const SMTP_PORT = 25;

export interface DeliverySettings {
  /** The port of the original destination (its address is the one the client connected to). */
  destinationPort: number;
  /** A fixed next hop replacing the original destination, when configured. */
  nextHop?: Endpoint;
  relay?: Endpoint;
  tls: TlsOptions;
  timeouts: Timeouts;
}

export function deliverySettings(config: CstpConfig, instanceDir: string, fileName = 'config/cstp.ini'): DeliverySettings {
  const d = config.delivery;
  const t = config.upstream_tls;
  return {
    destinationPort: d.destination_port,
    nextHop: endpoint(d.next_hop),
    relay: endpoint(d.relay_host),
    tls: {
      policy: t.policy,
      verify: t.verify ? 'verify' : 'none',
      ...(t.ca_file ? { ca: readCa(instancePath(instanceDir, t.ca_file), t.ca_file, fileName) } : {}),
    },
    timeouts: {
      connect: d.connect_timeout * 1000,
      greeting: d.greeting_timeout * 1000,
      command: d.command_timeout * 1000,
      dataBlock: d.data_block_timeout * 1000,
      finalDot: d.final_dot_timeout * 1000,
    },
  };
}

/** "host", "host:port" or "[v6]:port" (already validated by the schema); empty means not configured. */
export function endpoint(setting: string): Endpoint | undefined {
  if (setting === '') return undefined;
  const match = HOST_PORT.exec(setting);
  if (!match) throw new RangeError(`not host[:port]: ${setting}`);
  return { host: match[1] ?? match[2], port: match[3] ? Number(match[3]) : SMTP_PORT };
}

function readCa(path: string, setting: string, fileName: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError([`${fileName}: [upstream_tls] ca_file: cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)} (got "${setting}")`]);
  }
}
