/**
 * How the usage history is asked for and what it answers: the shapes shared by the store
 * that reads it (src/persistence/usage.ts) and the transports that offer it (src/api/usage.ts).
 */

export type UsageBucket = '1h' | '1d';
/** Results are always by resource; these split them further. */
export type UsageGroup = 'key' | 'user' | 'tier';

export interface UsageQuery {
  /** The first bucket is the one `start` falls in; the last, the one just before `end`. */
  start: Date;
  end: Date;
  bucket: UsageBucket;
  groupBy: ReadonlySet<UsageGroup>;
  userId?: string;
  tier?: string;
  /** Results per page. */
  limit: number;
  /** Where the previous page ended. */
  after?: UsageCursor;
}

/** The last result of a page: results are ordered by these. */
export type UsageCursor = [startMs: number, resource: string, keyId: string, userId: string, tier: string];

interface UsageCounts {
  amount: number;
  requests: number;
  denied: number;
}

export interface UsageResult extends UsageCounts {
  /** The bucket's start, ms since the epoch. */
  start: number;
  resource: string;
  /** '' when not grouped by (or no key asked). */
  keyId: string;
  userId: string;
  tier: string;
}

/** A line of the monthly export: one user, resource and day. */
export interface UsageExportLine extends UsageCounts {
  userId: string;
  tier: string;
  resource: string;
  /** YYYY-MM-DD (UTC). */
  day: string;
}

/** One of a month's top users of a resource. */
export interface TopUser extends UsageCounts {
  userId: string;
  tier: string;
  resource: string;
}
