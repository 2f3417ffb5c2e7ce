/**
 * The shapes rows take in TypeScript: camelCase, `Date` for times. User, session and key
 * rows are the domain's records (declared by `src/shards/ports.ts`, which this folder
 * implements), so a change on either side fails to compile rather than to run.
 */
import type { ApiKeyRecord, PersistedState, SessionRecord, UserRecord } from '../shards/index.js';

export type UserRow = UserRecord;
export type SessionRow = SessionRecord;
export type ApiKeyRow = ApiKeyRecord;

export interface TierRow {
  name: string;
  limits: unknown[];
  failOpen: boolean;
  updatedAt: Date;
}

/** One actor's written-behind state, stamped with the epoch its shard was served under. */
export type ActorStateRow = PersistedState;

/** A session or API key seen in use at `at`. */
export interface ActivityTouch {
  id: string;
  at: Date;
}

/** Times inside json_agg arrive as ISO 8601 text (with the session's UTC offset). */
export function toDate(value: string): Date {
  return new Date(value);
}

export function toDateOrNull(value: string | null): Date | null {
  return value === null ? null : new Date(value);
}
