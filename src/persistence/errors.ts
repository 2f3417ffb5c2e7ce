/**
 * Errors of the storage layer itself. Constraint violations a user can cause surface as the
 * domain's own errors (`EmailTakenError`, `UnknownTierError`), which carry an HTTP mapping.
 */

/** SQLSTATEs raised by the triggers of migrations/001_init.sql. */
export const SQLSTATE = {
  /** An actor_state write under an epoch that is not its shard's current one. */
  staleEpoch: 'TF001',
  /** An attempt to move a shard's epoch backwards or to delete its fence row. */
  epochBackwards: 'TF002',
  uniqueViolation: '23505',
  foreignKeyViolation: '23503',
} as const;

export function sqlState(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null ? (error as { code?: string }).code : undefined;
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
