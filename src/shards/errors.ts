/**
 * Domain errors. Each carries a stable `code`; `src/api/problem.ts` maps every code to an
 * HTTP status with an exhaustive switch, and the NATS service sends the code as is, so a
 * code is part of the contract and never reused for something else.
 */

export type ErrorCode =
  | 'invalid_request'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'email_taken'
  | 'too_large'
  | 'idempotency_mismatch'
  | 'exceeds_limit'
  | 'invalid_settlement'
  | 'too_many_attempts'
  | 'unknown_tier'
  | 'owner_unavailable'
  | 'at_capacity'
  | 'storage_unavailable'
  | 'internal';

export class TallyError extends Error {
  constructor(
    readonly code: ErrorCode,
    readonly detail: string,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(detail, options?.cause === undefined ? undefined : { cause: options.cause });
    this.retryAfterMs = options?.retryAfterMs;
  }
  readonly retryAfterMs: number | undefined;
  override get name(): string {
    return this.constructor.name;
  }
}

export class InvalidRequestError extends TallyError {
  constructor(
    detail: string,
    readonly errors?: readonly string[],
  ) {
    super('invalid_request', detail);
  }
}

/**
 * The one answer for an API key that is malformed, forged (its MAC does not verify), names a
 * user that does not exist, was deleted, or has the wrong secret: a prober learns nothing.
 */
export const INVALID_API_KEY = 'invalid API key';

/** Missing, malformed, expired or revoked credentials, a deleted key. */
export class UnauthenticatedError extends TallyError {
  constructor(detail = 'missing or invalid credentials') {
    super('unauthenticated', detail);
  }
}

export class ForbiddenError extends TallyError {
  constructor(detail: string) {
    super('forbidden', detail);
  }
}

export class NotFoundError extends TallyError {
  constructor(what: string) {
    super('not_found', `${what} not found`);
  }
}

export class EmailTakenError extends TallyError {
  constructor(options?: { cause?: unknown }) {
    super('email_taken', 'a user with this email already exists', options);
  }
}

export class TooLargeError extends TallyError {
  constructor(detail: string) {
    super('too_large', detail);
  }
}

export class IdempotencyMismatchError extends TallyError {
  constructor() {
    super('idempotency_mismatch', 'this Idempotency-Key was used with a different request');
  }
}

/** A settlement that cannot be applied to the hold it names; the hold stays open. */
export class InvalidSettlementError extends TallyError {
  constructor(detail: string) {
    super('invalid_settlement', detail);
  }
}

export class TooManyAttemptsError extends TallyError {
  constructor(detail: string, retryAfterMs: number) {
    super('too_many_attempts', detail, { retryAfterMs });
  }
}

export class UnknownTierError extends TallyError {
  constructor(tier: string, options?: { cause?: unknown }) {
    super('unknown_tier', `tier "${tier}" does not exist`, options);
  }
}

/** The owner of an entity cannot be reached (cluster) or the node is not serving it. */
export class OwnerUnavailableError extends TallyError {
  constructor(detail: string, retryAfterMs = 1000, options?: { cause?: unknown }) {
    super('owner_unavailable', detail, { ...options, retryAfterMs });
  }
}

/**
 * A written-through change refused by the epoch fence: it was made under an epoch of its
 * shard that another node's claim has since moved past, so nothing was written. Retryable
 * like any unavailable owner: the router asks the owner of the moment.
 */
export class StaleEpochError extends OwnerUnavailableError {
  constructor(
    readonly shard: number,
    readonly epoch: number,
    /** The fence's epoch for the shard when the change was refused; null when it has no fence row. */
    readonly fenceEpoch: number | null,
  ) {
    super(`shard ${shard} has been taken over by another node; nothing was changed, try again`);
  }
}

/**
 * The node holds as many actors as it may and none of them can be dropped (their state is
 * not yet written): a new one is refused until the database takes the writes again.
 */
export class CapacityError extends TallyError {
  constructor() {
    super('at_capacity', 'this node is full of actors whose state is not yet written; try again shortly', { retryAfterMs: 1000 });
  }
}

/** The database cannot be reached: what needs it is refused, what memory can decide goes on. */
export class StorageUnavailableError extends TallyError {
  constructor(options?: { cause?: unknown }) {
    super('storage_unavailable', 'the database cannot be reached; try again shortly', { ...options, retryAfterMs: 1000 });
  }
}
