/**
 * cstp-log: routes every Haraka log line through the cstp logger as one JSON object per line, and stops
 * Haraka from printing it again. config/log.ini sets format=json so Haraka hands over structured records.
 */
import { logger, setLogLevel } from '../../src/log';
import type { LogLevel } from '../../src/config/schema';
import { codes, gatewayConfig, type Next } from '../haraka';

interface HarakaLogItem {
  level: string;
  data: string;
}

const LEVELS: Record<string, LogLevel> = {
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
  if (level) {
    const { message, fields } = record(item.data);
    logger.log(level, redact(message, fields.uuid), fields);
  }
  next(codes.ok);
}

/** log.ini format=json gives a JSON object; anything else (a line logged before log.ini was read) becomes a message. */
function record(data: string): { message: string; fields: Record<string, unknown> } {
  if (data.startsWith('{')) {
    try {
      const { level: _haraka, message, ...rest } = JSON.parse(data) as Record<string, unknown>;
      return { message: String(message ?? ''), fields: { ...rest, source: 'haraka' } };
    } catch {
      // not JSON after all: fall through
    }
  }
  return { message: data, fields: { source: 'haraka' } };
}

/** Connections whose next client line answers a "334" AUTH challenge (a username or password). */
const answeringChallenge = new Set<string>();

/** Protocol traces show AUTH exchanges; the credentials in them (initial response or answers) must not be logged. */
function redact(message: string, uuid: unknown): string {
  const connection = String(uuid ?? '').replace(/\.\d+$/, '');
  if (message.startsWith('S: 334')) {
    answeringChallenge.add(connection);
    return message;
  }
  if (message.startsWith('C: ') && answeringChallenge.delete(connection)) return 'C: <redacted>';
  return message.replace(/^(C: AUTH \S+).*$/i, '$1 <redacted>');
}
