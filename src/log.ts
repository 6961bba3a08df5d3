/**
 * The one logger of the gateway: one JSON object per line on stdout. Haraka's own log lines are routed here by
 * the cstp-log plugin, so an operator reads a single stream.
 *
 * Written directly rather than through winston: the gateway needs exactly this (a level threshold and a JSON
 * line), and winston's stream pipeline cost about 35 us per line against 8 us here, about 6% of the gateway's
 * CPU per small message at 8 lines per message (docs/BENCHMARKS.md).
 *
 * Nothing secret is ever logged: decision() copies only the fields it names, so a caller cannot leak a key, a
 * passphrase or a message body by passing a richer object than the types describe.
 */
import type { LogLevel } from './config/schema';
import type { Direction } from './policy/plan';

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** Where the lines go: stdout (journald under systemd), or a test's capture. */
let output: (line: string) => void = (line) => process.stdout.write(line);
let threshold = RANK.info;

export const logger = {
  get level(): LogLevel {
    return (Object.keys(RANK) as LogLevel[]).find((level) => RANK[level] === threshold)!;
  },
  set level(level: LogLevel) {
    threshold = RANK[level];
  },
  /** One line: level, message, the fields, timestamp (the field order of the earlier winston lines). */
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void {
    if (RANK[level] > threshold) return;
    output(`${JSON.stringify({ level, message, ...fields, timestamp: new Date().toISOString() })}\n`);
  },
  info(message: string, fields?: Record<string, unknown>): void {
    logger.log('info', message, fields);
  },
};

export function setLogLevel(level: LogLevel): void {
  logger.level = level;
}

/** Sends the lines to `sink` instead of stdout until the returned function is called (tests). */
export function captureLog(sink: (line: string) => void): () => void {
  const saved = output;
  output = sink;
  return () => {
    output = saved;
  };
}

/** One SMTP leg's TLS; null in its place means the leg was plaintext. */
export interface TlsFacts {
  protocol: string | null;
  cipher: string;
  /** The peer's certificate was verified (client certificates are seldom sent; upstream as [upstream_tls] verify). */
  verified: boolean;
}

export interface DeliveryFacts {
  recipients: string[];
  /** What was done to the message: e.g. "sign+encrypt", "sign", "detached-signature", "decrypt", "unaltered". */
  action: string;
  /** Content encryption and signature algorithms, e.g. "aes-256-cbc/rsa-pkcs1" or "sha-256/rsa". */
  algorithm?: string;
  /** SHA-256 fingerprints of the certificates used (encryption recipients and signer). */
  certificates?: string[];
  /** "same-destination", "second-connection" or "relay". */
  route?: string;
  /** TLS of the connection this delivery went over. */
  tls?: TlsFacts | null;
  reply: { code: number; text?: string };
  durationMs: number;
}

export interface TransactionFacts {
  uuid: string;
  direction: Direction;
  client: { ip: string; port?: number; helo?: string; tls: TlsFacts | null };
  destination: { host: string; port: number; tls: TlsFacts | null };
  sender: string;
  recipients: string[];
  deliveries: DeliveryFacts[];
}

/** The one decision line per transaction. */
export function decision(facts: TransactionFacts): void {
  logger.info('decision', {
    event: 'decision',
    uuid: facts.uuid,
    direction: facts.direction,
    client: { ...pick(facts.client, ['ip', 'port', 'helo']), tls: tlsRecord(facts.client.tls) },
    destination: { ...pick(facts.destination, ['host', 'port']), tls: tlsRecord(facts.destination.tls) },
    sender: facts.sender,
    recipients: [...facts.recipients],
    deliveries: facts.deliveries.map(deliveryRecord),
  });
}

function deliveryRecord(d: DeliveryFacts): Record<string, unknown> {
  return {
    recipients: [...d.recipients],
    action: d.action,
    algorithm: d.algorithm,
    certificates: d.certificates ? [...d.certificates] : [],
    route: d.route,
    ...(d.tls !== undefined ? { tls: tlsRecord(d.tls) } : {}),
    reply: pick(d.reply, ['code', 'text']),
    durationMs: d.durationMs,
  };
}

function tlsRecord(tls: TlsFacts | null): TlsFacts | null {
  return tls ? { protocol: tls.protocol, cipher: tls.cipher, verified: tls.verified } : null;
}

function pick<T extends object, K extends keyof T>(source: T, keys: K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const key of keys) if (source[key] !== undefined) out[key] = source[key];
  return out;
}
