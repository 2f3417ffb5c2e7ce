/**
 * The cluster's failures, classified by what they are rather than by what their message
 * says: a compare-and-set conflict is JetStream's API error code, and a request that got no
 * answer in time is a named error carrying what was asked.
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';

/**
 * JetStream refused a compare-and-set: the KV entry has moved past the revision the writer
 * knew (API error 10071, "wrong last sequence"), or a create found the key already there.
 */
export function isRevisionConflict(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamWrongLastSequence;
}

/** JetStream has no such stream: the KV bucket does not exist (API error 10059). */
export function isMissingBucket(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound;
}

/** A request to NATS or JetStream that got no answer within its deadline. */
export class RequestTimeoutError extends Error {
  override readonly name = 'RequestTimeoutError';
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super(`${what}: no answer within ${timeoutMs} ms`);
  }
}
