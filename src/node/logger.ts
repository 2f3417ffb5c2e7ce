/**
 * JSON logs (pino). Credentials never reach a log line: authorization headers, tokens, keys
 * and passwords are redacted wherever they appear in a logged object.
 */
import { type Logger, pino } from 'pino';
import type { LogLevel } from './config.js';

export const REDACTED_PATHS = [
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

export function createLogger(level: LogLevel, nodeId: string, destination?: pino.DestinationStream): Logger {
  const options = {
    level,
    base: { node: nodeId },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
