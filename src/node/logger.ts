/**
 * Logs (pino): JSON lines with level names, or, on a terminal, one readable line per entry
 * (pino-pretty). Credentials never reach a log line: authorization headers, tokens, keys and
 * passwords are redacted wherever they appear in a logged object.
 */
import { type Logger, pino } from 'pino';
import pretty from 'pino-pretty';
import type { LogFormat, LogLevel } from './config.js';

const REDACTED_PATHS = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'password',
  '*.password',
  'token',
  '*.token',
  'key',
  '*.key',
  'secret',
  '*.secret',
];

export interface LoggerOptions {
  level: LogLevel;
  /** Default `json`. */
  format?: LogFormat;
  nodeId: string;
  /** Where lines go; default standard output. */
  destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const base = {
    level: options.level,
    base: { node: options.nodeId },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  if (options.format === 'pretty') {
    const stream = pretty({
      destination: options.destination ?? 1,
      colorize: options.destination === undefined && process.stdout.isTTY === true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname',
      singleLine: true,
      sync: true,
    });
    return pino({ ...base, timestamp: pino.stdTimeFunctions.epochTime }, stream);
  }
  const json = {
    ...base,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return options.destination === undefined ? pino(json) : pino(json, options.destination);
}
