/**
 * RFC 9457 problem details: the one place that turns an error into an HTTP status. The
 * switch over codes is exhaustive, so a new domain code without a status fails to compile.
 */
import { type ErrorCode, TallyError } from '../shards/index.js';

/** Reason phrases (RFC 9110 §15), also the `title` of problem details. */
export const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** Errors of the transport itself, before the domain is reached. */
export type HttpErrorCode = 'malformed_json' | 'payload_too_large' | 'unsupported_media_type' | 'route_not_found' | 'method_not_allowed' | 'rate_limited';

export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly code: HttpErrorCode,
    readonly detail: string,
    readonly extensions?: Record<string, unknown>,
  ) {
    super(detail);
  }
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  [extension: string]: unknown;
}

/** Problem types are URNs: stable identifiers that promise no documentation host. */
const TYPE_BASE = 'urn:tally:problem:';

function statusOf(code: ErrorCode | HttpErrorCode): number {
  switch (code) {
    case 'invalid_request':
    case 'malformed_json':
      return 400;
    case 'unauthenticated':
      return 401;
    case 'forbidden':
      return 403;
    case 'not_found':
    case 'route_not_found':
      return 404;
    case 'method_not_allowed':
      return 405;
    case 'email_taken':
      return 409;
    case 'too_large':
    case 'payload_too_large':
      return 413;
    case 'unsupported_media_type':
      return 415;
    case 'idempotency_mismatch':
    case 'exceeds_limit':
    case 'invalid_settlement':
    case 'unknown_tier':
      return 422;
    case 'too_many_attempts':
    case 'rate_limited':
      return 429;
    case 'internal':
      return 500;
    case 'owner_unavailable':
    case 'at_capacity':
    case 'storage_unavailable':
      return 503;
    default:
      return assertNever(code);
  }
}

export function problem(code: ErrorCode | HttpErrorCode, detail: string, extensions?: Record<string, unknown>): Problem {
  const status = statusOf(code);
  return { type: TYPE_BASE + code.replaceAll('_', '-'), title: STATUS_TEXT[status] ?? 'Error', status, detail, ...extensions };
}

/** The problem for any thrown value; unknown errors become a 500 that reveals nothing. */
export function problemFromError(error: unknown): { problem: Problem; retryAfterMs?: number; unexpected: boolean } {
  if (error instanceof TallyError) {
    const extensions = 'errors' in error && Array.isArray(error.errors) ? { errors: error.errors } : undefined;
    const answer: { problem: Problem; retryAfterMs?: number; unexpected: boolean } = {
      problem: problem(error.code, error.detail, extensions),
      unexpected: error.code === 'internal',
    };
    if (error.retryAfterMs !== undefined) answer.retryAfterMs = error.retryAfterMs;
    return answer;
  }
  if (error instanceof HttpError) return { problem: problem(error.code, error.detail, error.extensions), unexpected: false };
  return { problem: problem('internal', 'the server failed to answer this request'), unexpected: true };
}

/**
 * The problem as the service API answers it (the NATS subjects, `/v1/service/…` over HTTP,
 * and each failed item of a batch): `retry_after_ms` in the body where waiting helps, since
 * a NATS reply, or an item, has no `Retry-After` header of its own.
 */
export function serviceProblem(error: unknown): { problem: Problem; unexpected: boolean } {
  const { problem: body, retryAfterMs, unexpected } = problemFromError(error);
  if (retryAfterMs !== undefined) body.retry_after_ms = retryAfterMs;
  return { problem: body, unexpected };
}

function assertNever(value: never): never {
  throw new Error(`no status for error code ${String(value)}`);
}
