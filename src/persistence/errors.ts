/**
 * Errors of the storage layer itself. Constraint violations a user can cause surface as the
 * domain's own errors (`EmailTakenError`, `UnknownTierError`), which carry an HTTP mapping.
 */

/** SQLSTATEs raised by the fence triggers (migrations 001, 003 and 006). */
export const SQLSTATE = {
  /** An actor_state write under an epoch that is not its shard's current one. */
  staleEpoch: 'TF001',
  /** An attempt to move a shard's epoch backwards or to delete its fence row. */
  epochBackwards: 'TF002',
  uniqueViolation: '23505',
  foreignKeyViolation: '23503',
  /** Also what inserting into a partitioned table raises when no partition takes the row. */
  checkViolation: '23514',
  /** A statement cancelled, by statement_timeout among others. */
  queryCanceled: '57014',
} as const;

export function sqlState(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null ? (error as { code?: string }).code : undefined;
}

/** Codes postgres.js and node:net give a query that never reached a working server. */
const UNREACHABLE_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOENT', // the embedded database's socket is gone
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down)
  '53300', // too_many_connections
]);

/** The database could not be reached, or went away mid-query: nothing about the query is wrong. */
export function isUnreachable(error: unknown): boolean {
  const code = sqlState(error);
  return code !== undefined && (UNREACHABLE_CODES.has(code) || code.startsWith('08'));
}

/**
 * An error the content of a row can cause: a data exception (class 22: text that is not
 * valid JSON, a number out of range), a violated constraint (23), a program limit (54).
 * Only these make a batched write worth splitting to find the row; any other error (the
 * database unreachable, a missing table, a permission) would fail every row alike.
 */
export function isRowError(error: unknown): boolean {
  const code = sqlState(error);
  return code !== undefined && /^(22|23|54)[0-9A-Z]{3}$/.test(code);
}

export class DataDirInUseError extends Error {
  constructor(
    readonly lockFile: string,
    readonly pid: number | undefined,
  ) {
    super(`the data directory is in use by ${pid === undefined ? 'another process' : `process ${pid}`} (lock file ${lockFile})`);
  }
  override get name(): string {
    return 'DataDirInUseError';
  }
}

export class MigrationError extends Error {
  constructor(
    readonly file: string,
    options: { cause: unknown },
  ) {
    super(`migration ${file} failed: ${options.cause instanceof Error ? options.cause.message : String(options.cause)}`, options);
  }
  override get name(): string {
    return 'MigrationError';
  }
}

/** The Redis replica did not answer within its deadline: the caller goes on without it. */
export class ReplicaTimeoutError extends Error {
  override readonly name = 'ReplicaTimeoutError';
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super(`${what}: no answer from Redis within ${timeoutMs} ms`);
  }
}
