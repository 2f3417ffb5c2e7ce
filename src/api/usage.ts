/**
 * The usage history as every transport offers it: the query's parameters read and checked
 * once (HTTP sends them in the query string, NATS in a JSON or MessagePack body), the page
 * answered in one shape, and the monthly export's lines written as CSV or NDJSON.
 *
 * Buckets are whole UTC hours (`1h`) or days (`1d`): the first is the one `start` falls in,
 * the last the one just before `end`. Results are always by resource (amounts of two
 * resources do not add up); `group_by` splits them further. Buckets without usage are left
 * out. Pages hold up to `limit` results; `next_page` is an opaque cursor.
 */
import {
  InvalidRequestError,
  type TopUser,
  type UsageBucket,
  type UsageCursor,
  type UsageExportLine,
  type UsageGroup,
  type UsageQuery,
  type UsageResult,
} from '../shards/index.js';
import { textProblem } from './text.js';

/** Where usage is read from: the node's store. */
export interface UsageReader {
  queryUsage(query: UsageQuery): Promise<{ results: UsageResult[]; next: UsageCursor | null }>;
  exportUsage(month: Date): AsyncIterable<UsageExportLine[]>;
  countUsers(): Promise<number>;
  topUsers(month: Date, limit: number): Promise<TopUser[]>;
}

/** Who asks: a user for its own usage (by resource and key), or the admin (by user, tier and resource). */
export type UsageScope = { kind: 'user'; userId: string } | { kind: 'admin' };

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10_000;
const BUCKET_MS: Record<UsageBucket, number> = { '1h': 3_600_000, '1d': 86_400_000 };
/** RFC 3339 date-time: a full date, a time, and an offset (`Z` or ±hh:mm); the fields are range-checked below. */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:[Zz]|[+-](\d{2}):(\d{2}))$/;
/** The instants Postgres's timestamptz takes in ISO form: years 1 to 9999. */
const EARLIEST = Date.parse('0001-01-02T00:00:00Z');
const LATEST = Date.parse('9999-12-30T23:59:59.999Z');
/** The widest range one query may span, by bucket: a month of hours, 400 days. */
const MAX_RANGE_MS: Record<UsageBucket, number> = { '1h': 31 * 86_400_000, '1d': 400 * 86_400_000 };
const MONTH = /^(\d{4})-(0[1-9]|1[0-2])$/;
const NAME = /^[\x21-\x7e]{1,128}$/;
const GROUPS: Record<UsageScope['kind'], readonly string[]> = { user: ['resource', 'key'], admin: ['user', 'tier', 'resource'] };
const PARAMETERS: Record<UsageScope['kind'], ReadonlySet<string>> = {
  user: new Set(['start', 'end', 'bucket', 'group_by', 'page', 'limit']),
  admin: new Set(['start', 'end', 'bucket', 'group_by', 'page', 'limit', 'user_id', 'tier']),
};

/**
 * The query `params` ask for, or InvalidRequestError naming what is wrong. `params` holds
 * strings (a query string) or, from NATS, strings, numbers and a `group_by` list.
 */
export function usageQuery(params: Readonly<Record<string, unknown>>, scope: UsageScope, now: number): UsageQuery {
  for (const name of Object.keys(params)) {
    if (!PARAMETERS[scope.kind].has(name)) throw new InvalidRequestError(`unknown parameter "${name}" (use ${[...PARAMETERS[scope.kind]].join(', ')})`);
  }
  const start = time(params.start, 'start');
  if (start === undefined) throw new InvalidRequestError('`start` is required: an RFC 3339 time');
  const end = time(params.end, 'end') ?? new Date(now);
  if (end.getTime() <= start.getTime()) throw new InvalidRequestError('`end` must be after `start`');
  const bucket = params.bucket ?? '1d';
  if (bucket !== '1h' && bucket !== '1d') throw new InvalidRequestError('`bucket` is `1h` or `1d`');
  if (end.getTime() - start.getTime() > MAX_RANGE_MS[bucket]) {
    throw new InvalidRequestError(`a query spans at most ${bucket === '1h' ? '31 days of hours' : '400 days'}: ask for the rest in another`);
  }
  const query: UsageQuery = { start, end, bucket, groupBy: groups(params.group_by, scope), limit: limitOf(params.limit) };
  if (scope.kind === 'user') query.userId = scope.userId;
  else {
    if (params.user_id !== undefined) query.userId = name(params.user_id, 'user_id');
    if (params.tier !== undefined) query.tier = name(params.tier, 'tier');
  }
  if (params.page !== undefined) query.after = cursorOf(params.page);
  return query;
}

/** The page as the API answers it: results by bucket, and the cursor of the next page. */
export async function usagePage(reader: UsageReader, query: UsageQuery): Promise<{ data: unknown[]; next_page: string | null }> {
  const { results, next } = await reader.queryUsage(query);
  const width = BUCKET_MS[query.bucket];
  const data: { start: string; end: string; results: Record<string, unknown>[] }[] = [];
  let bucket: (typeof data)[number] | undefined;
  let bucketStart = Number.NaN;
  for (const result of results) {
    if (result.start !== bucketStart) {
      bucketStart = result.start;
      bucket = { start: new Date(result.start).toISOString(), end: new Date(result.start + width).toISOString(), results: [] };
      data.push(bucket);
    }
    const view: Record<string, unknown> = { resource: result.resource };
    if (query.groupBy.has('key') && result.keyId !== '') view.key_id = result.keyId;
    if (query.groupBy.has('user')) view.user_id = result.userId;
    if (query.groupBy.has('tier')) view.tier = result.tier;
    view.amount = result.amount;
    view.requests = result.requests;
    view.denied = result.denied;
    bucket!.results.push(view);
  }
  return { data, next_page: next === null ? null : Buffer.from(JSON.stringify(next)).toString('base64url') };
}

/** The first instant (UTC) of `month` (YYYY-MM), or InvalidRequestError. */
export function exportMonth(month: unknown): Date {
  const match = typeof month === 'string' ? MONTH.exec(month) : null;
  if (match === null) throw new InvalidRequestError('`month` is YYYY-MM');
  return new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, 1));
}

export type ExportFormat = 'csv' | 'ndjson';

export function exportFormat(format: unknown): ExportFormat {
  if (format === undefined || format === 'csv') return 'csv';
  if (format === 'ndjson') return 'ndjson';
  throw new InvalidRequestError('`format` is `csv` or `ndjson`');
}

export const EXPORT_CSV_HEADER = 'user_id,tier,resource,day,amount,requests,denied\n';

/** Lines of the export in `format`, each ending in a newline. */
export function exportText(lines: readonly UsageExportLine[], format: ExportFormat): string {
  let text = '';
  for (const line of lines) {
    text +=
      format === 'csv'
        ? `${csvField(line.userId)},${csvField(line.tier)},${csvField(line.resource)},${line.day},${line.amount},${line.requests},${line.denied}\n`
        : `${JSON.stringify({ user_id: line.userId, tier: line.tier, resource: line.resource, day: line.day, amount: line.amount, requests: line.requests, denied: line.denied })}\n`;
  }
  return text;
}

/**
 * RFC 4180: a field with a comma, a quote or a line break goes in quotes, its quotes doubled.
 * A field that a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) gets a leading
 * `'` (OWASP's CSV injection advice): resource names come from API callers.
 */
function csvField(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

function time(value: unknown, what: string): Date | undefined {
  if (value === undefined) return undefined;
  const match = typeof value === 'string' ? RFC3339.exec(value) : null;
  const at = match !== null && realFields(match) ? Date.parse(value as string) : Number.NaN;
  if (!(at >= EARLIEST && at <= LATEST)) throw new InvalidRequestError(`\`${what}\` is an RFC 3339 time, such as 2026-11-01T00:00:00Z`);
  return new Date(at);
}

/** The fields name a real date and time (Date.parse would take 31 February for 3 March). */
function realFields(match: RegExpExecArray): boolean {
  const [year, month, day, hour, minute, second, offsetHours, offsetMinutes] = match.slice(1).map((field) => (field === undefined ? 0 : Number(field)));
  const days = new Date(Date.UTC(year!, month!, 0)).getUTCDate(); // the last day of that month
  return (
    year! >= 1 &&
    month! >= 1 &&
    month! <= 12 &&
    day! >= 1 &&
    day! <= days &&
    hour! <= 23 &&
    minute! <= 59 &&
    second! <= 59 &&
    offsetHours! <= 23 &&
    offsetMinutes! <= 59
  );
}

function groups(value: unknown, scope: UsageScope): Set<UsageGroup> {
  const allowed = GROUPS[scope.kind];
  const names = value === undefined ? [] : typeof value === 'string' ? value.split(',').filter((part) => part !== '') : value;
  if (!Array.isArray(names) || names.some((part) => typeof part !== 'string' || !allowed.includes(part))) {
    throw new InvalidRequestError(`\`group_by\` is a comma-separated list of ${allowed.join(', ')}`);
  }
  // `resource` is always a group: it is accepted for clarity and adds nothing.
  return new Set(names.filter((part): part is UsageGroup => part !== 'resource'));
}

function limitOf(value: unknown): number {
  if (value === undefined) return DEFAULT_LIMIT;
  const limit = typeof value === 'string' && /^\d{1,6}$/.test(value) ? Number(value) : value;
  if (!Number.isSafeInteger(limit) || (limit as number) < 1 || (limit as number) > MAX_LIMIT) {
    throw new InvalidRequestError(`\`limit\` is a whole number from 1 to ${MAX_LIMIT}`);
  }
  return limit as number;
}

function name(value: unknown, what: string): string {
  if (typeof value !== 'string' || !NAME.test(value)) throw new InvalidRequestError(`\`${what}\` is 1 to 128 printable ASCII characters`);
  return value;
}

function cursorOf(page: unknown): UsageCursor {
  let cursor: unknown;
  try {
    cursor = typeof page === 'string' && page.length <= 2048 ? JSON.parse(Buffer.from(page, 'base64url').toString('utf8')) : undefined;
  } catch {
    // Not JSON: refused below like any other page that is not ours.
  }
  if (
    !Array.isArray(cursor) ||
    cursor.length !== 5 ||
    !(Number.isSafeInteger(cursor[0]) && cursor[0] >= EARLIEST && cursor[0] <= LATEST) ||
    cursor.slice(1).some((part) => typeof part !== 'string' || part.length > 512 || textProblem(part) !== null)
  ) {
    throw new InvalidRequestError('`page` is not a page this API gave: pass `next_page` as it came');
  }
  return cursor as UsageCursor;
}
