/**
 * Tally's errors as classes: one per problem type the service answers, so a caller writes
 * `catch (e) { if (e instanceof NotFoundError) … }` rather than comparing strings. Every one
 * keeps the service's problem document (`problem`) and, when it wraps a failure of the
 * transport, that failure as `cause`.
 *
 * A refusal is not an error: `consume` resolves `{allowed: false, …}`.
 */

/** An RFC 9457 problem document as Tally sends it. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  retry_after_ms?: number;
  [extension: string]: unknown;
}

export class TallyError extends Error {
  override name = 'TallyError';
  /** The problem type's last part (`not-found`), or the client's own code (`timeout`, `unavailable`). */
  readonly code: string;
  /** The HTTP status Tally gives this error (0 for the client's own). */
  readonly status: number;
  /** When waiting helps: how long, as the service said. */
  readonly retryAfterMs: number | undefined;
  readonly problem: Problem | undefined;

  constructor(code: string, status: number, detail: string, options: { problem?: Problem; cause?: unknown; retryAfterMs?: number } = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = status;
    this.problem = options.problem;
    this.retryAfterMs = options.retryAfterMs ?? options.problem?.retry_after_ms;
  }
}

/** 400: the request does not match the operation's shape (the client sent something Tally refuses). */
export class InvalidRequestError extends TallyError {
  override name = 'InvalidRequestError';
}
/** 401: the session token or API key is forged, expired or revoked. */
export class UnauthenticatedError extends TallyError {
  override name = 'UnauthenticatedError';
}
/** 403: the user is blocked, or the credential may not do this. */
export class ForbiddenError extends TallyError {
  override name = 'ForbiddenError';
}
/** 404: no such user, or no such reservation. */
export class NotFoundError extends TallyError {
  override name = 'NotFoundError';
}
/** 422: the same idempotency key came with a different request. */
export class IdempotencyMismatchError extends TallyError {
  override name = 'IdempotencyMismatchError';
}
/** 422: a settlement that contradicts its hold. */
export class InvalidSettlementError extends TallyError {
  override name = 'InvalidSettlementError';
}
/** 422: more than a limit can ever admit, where the operation treats that as an error. */
export class ExceedsLimitError extends TallyError {
  override name = 'ExceedsLimitError';
}
/** 429: too many attempts (Tally's own protection, not a quota decision). */
export class TooManyAttemptsError extends TallyError {
  override name = 'TooManyAttemptsError';
}
/** 503: the user's owner cannot be reached, and the user's tier is strict. */
export class OwnerUnavailableError extends TallyError {
  override name = 'OwnerUnavailableError';
}
/** 503: the node is at capacity; `retryAfterMs` says when to try again. */
export class AtCapacityError extends TallyError {
  override name = 'AtCapacityError';
}
/** 503: the node's database is not answering. */
export class StorageUnavailableError extends TallyError {
  override name = 'StorageUnavailableError';
}
/** 500: Tally failed; the detail reveals nothing. */
export class InternalError extends TallyError {
  override name = 'InternalError';
}
/** No answer within the call's `timeout`. The request may have been carried out. */
export class TimeoutError extends TallyError {
  override name = 'TimeoutError';
}
/** No node could be reached at all (nothing answered, or the connection is closed). Nothing was carried out. */
export class UnavailableError extends TallyError {
  override name = 'UnavailableError';
}

type ErrorClass = new (code: string, status: number, detail: string, options?: { problem?: Problem; cause?: unknown }) => TallyError;

const BY_CODE: Record<string, ErrorClass> = {
  'invalid-request': InvalidRequestError,
  'malformed-json': InvalidRequestError,
  'payload-too-large': InvalidRequestError,
  'too-large': InvalidRequestError,
  'unsupported-media-type': InvalidRequestError,
  unauthenticated: UnauthenticatedError,
  forbidden: ForbiddenError,
  'not-found': NotFoundError,
  'route-not-found': NotFoundError,
  'idempotency-mismatch': IdempotencyMismatchError,
  'invalid-settlement': InvalidSettlementError,
  'exceeds-limit': ExceedsLimitError,
  'too-many-attempts': TooManyAttemptsError,
  'rate-limited': TooManyAttemptsError,
  'owner-unavailable': OwnerUnavailableError,
  'at-capacity': AtCapacityError,
  'storage-unavailable': StorageUnavailableError,
  internal: InternalError,
};

const TYPE_BASE = 'urn:tally:problem:';

/** The error for a problem document Tally answered (an unknown type keeps its status, as a TallyError). */
export function errorFromProblem(problem: Problem, cause?: unknown): TallyError {
  const code = typeof problem.type === 'string' && problem.type.startsWith(TYPE_BASE) ? problem.type.slice(TYPE_BASE.length) : 'unknown';
  const ErrorOf = BY_CODE[code] ?? TallyError;
  const detail = typeof problem.detail === 'string' ? problem.detail : `Tally answered ${problem.status}`;
  return new ErrorOf(code, Number(problem.status) || 0, detail, cause === undefined ? { problem } : { problem, cause });
}

/** Whether a value is a problem document (an item's `{error}`, a service error's body). */
export function isProblem(value: unknown): value is Problem {
  return typeof value === 'object' && value !== null && typeof (value as Problem).type === 'string' && typeof (value as Problem).status === 'number';
}
