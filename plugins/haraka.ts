/**
 * What cstp's plugins need from Haraka, typed. Package plugins are loaded with a plain require, outside Haraka's
 * vm sandbox, so Haraka's return-code globals (OK, DENYSOFT...) are not in scope: they come from the
 * haraka-constants module Haraka itself uses, resolved from Haraka's own directory so npm's layout does not matter.
 */
import { createRequire } from 'node:module';
import { loadCstpConfig, type CstpConfig } from '../src/config/cstp-config';
import type { TlsFacts, TransactionFacts } from '../src/log';

const harakaRequire = createRequire(require.resolve('haraka/package.json'));

export const codes = harakaRequire('haraka-constants') as {
  cont: number;
  stop: number;
  deny: number;
  denysoft: number;
  denydisconnect: number;
  denysoftdisconnect: number;
  ok: number;
};

export type Next = (code?: number, message?: string) => void;

export interface LogMethods {
  logdebug(...args: unknown[]): void;
  loginfo(...args: unknown[]): void;
  lognotice(...args: unknown[]): void;
  logwarn(...args: unknown[]): void;
  logerror(...args: unknown[]): void;
}

export interface Plugin extends LogMethods {
  name: string;
  haraka_require(module: string): unknown;
  /** Haraka's configuration of this instance (config/), e.g. get('smtp.ini'). */
  config: { get(name: string): unknown };
}

export interface Transaction extends LogMethods {
  uuid: string;
}

export interface Connection extends LogMethods {
  uuid: string;
  remote: { ip: string; port: number };
  local: { ip: string; port: number };
  relaying: boolean;
  hello: { host: string | null };
  tls: { enabled: boolean; verified: boolean; cipher: { name?: string; version?: string } };
  notes: Record<string, unknown>;
  results: { add(plugin: Plugin, result: Record<string, unknown>): void };
  transaction: Transaction | null;
  /** The listening server that accepted the connection. */
  server?: object;
  /** The client's socket; its timeout is smtp.ini inactivity_timeout (a 421 and a close when it fires). */
  client?: { setTimeout(ms: number): unknown };
}

/** The client leg of the decision line: who connected and how its TLS stands. */
export function clientFacts(connection: Connection): TransactionFacts['client'] {
  const { tls } = connection;
  const facts: TlsFacts | null = tls.enabled ? { protocol: tls.cipher.version ?? null, cipher: tls.cipher.name ?? '', verified: tls.verified } : null;
  return { ip: connection.remote.ip, port: connection.remote.port, helo: connection.hello.host ?? undefined, tls: facts };
}

/** The Haraka instance directory (haraka -c DIR); cstp's config/ and var/ are inside it. */
export function instanceDir(): string {
  const dir = process.env.HARAKA;
  if (!dir) throw new Error('cstp plugins run inside Haraka started with -c DIR (HARAKA is not set)');
  return dir;
}

let cached: CstpConfig | undefined;

/** cstp.ini of this instance, loaded once per process (cstp-config has already validated it at startup). */
export function gatewayConfig(): CstpConfig {
  cached ??= loadCstpConfig(instanceDir());
  return cached;
}
