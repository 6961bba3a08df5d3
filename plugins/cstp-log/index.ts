/**
 * cstp-log: routes every Haraka log line through the cstp winston logger as one JSON object per line, and stops
 * Haraka from printing it again. config/log.ini sets format=json so Haraka hands over structured records.
 */
import { logger, setLogLevel } from '../../src/log';
import { codes, gatewayConfig, type Next } from '../haraka';

interface HarakaLogItem {
  level: string;
  data: string;
}

const LEVELS: Record<string, string> = {
  EMERG: 'error',
  ALERT: 'error',
  CRIT: 'error',
  ERROR: 'error',
  WARN: 'warn',
  NOTICE: 'info',
  INFO: 'info',
  DEBUG: 'debug',
  PROTOCOL: 'debug',
};

export function register(): void {
  setLogLevel(gatewayConfig().log.level);
}

export function hook_log(next: Next, _logger: unknown, item: HarakaLogItem): void {
  const level = LEVELS[item.level];
  // DATA lines are message content; never logged, whatever the level.
  if (level) logger.log(level, redact(record(item.data)));
  next(codes.ok);
}

/** log.ini format=json gives a JSON object; anything else (a line logged before log.ini was read) becomes a message. */
function record(data: string): Record<string, unknown> & { message: string } {
  if (data.startsWith('{')) {
    try {
      const parsed = JSON.parse(data) as Record<string, unknown>;
      const { level: _haraka, message, ...rest } = parsed;
      return { ...rest, source: 'haraka', message: String(message ?? '') };
    } catch {
      // not JSON after all: fall through
    }
  }
  return { source: 'haraka', message: data };
}

/** Connections whose next client line answers a "334" AUTH challenge (a username or password). */
const answeringChallenge = new Set<string>();

/** Protocol traces show AUTH exchanges; the credentials in them (initial response or answers) must not be logged. */
function redact<T extends { message: string; uuid?: unknown }>(entry: T): T {
  const connection = String(entry.uuid ?? '').replace(/\.\d+$/, '');
  if (entry.message.startsWith('S: 334')) {
    answeringChallenge.add(connection);
  } else if (entry.message.startsWith('C: ') && answeringChallenge.delete(connection)) {
    entry.message = 'C: <redacted>';
  } else {
    entry.message = entry.message.replace(/^(C: AUTH \S+).*$/i, '$1 <redacted>');
  }
  return entry;
}
