/**
 * Reading the usage history (written by actorState.ts), and keeping its monthly partitions.
 *
 * Every read goes through the `usage_hours` view (migrations/009): the closed hours in
 * `usage` and the hours still counted in users' state rows, as of their last write-behind
 * flush. One statement reads both in one snapshot, in which the state rows' `usage_rolls`
 * and the hours they added agree, so nothing is counted twice or missed.
 */
import type { TopUser, UsageCursor, UsageExportLine, UsageQuery, UsageResult } from '../shards/index.js';
import type { Sql } from './database.js';

const UNIT = { '1h': 'hour', '1d': 'day' } as const;

/** One page of results, in bucket order, and where the next begins (null: this is the last). */
export async function queryUsage(sql: Sql, query: UsageQuery): Promise<{ results: UsageResult[]; next: UsageCursor | null }> {
  const unit = UNIT[query.bucket];
  const byKey = query.groupBy.has('key');
  const byUser = query.groupBy.has('user');
  const byTier = query.groupBy.has('tier');
  const needsTier = byTier || query.tier !== undefined;
  const after = query.after;
  const rows = await sql<
    { start_ms: string; resource: string; key_id: string; user_id: string; tier: string; amount: string; requests: string; denied: string }[]
  >`
    select (extract(epoch from b.bucket) * 1000)::bigint as start_ms, b.resource, b.key_id, b.user_id, b.tier,
           sum(b.amount) as amount, sum(b.requests) as requests, sum(b.denied) as denied
    from (
      select date_trunc(${unit}, h.hour, 'UTC') as bucket, h.resource,
             case when ${byKey} then h.key_id else '' end as key_id,
             case when ${byUser} then h.user_id else '' end as user_id,
             ${needsTier ? sql`case when ${byTier} then coalesce(u.tier, '') else '' end` : sql`''`} as tier,
             h.amount, h.requests, h.denied
      from usage_hours h ${needsTier ? sql`left join users u on u.id = h.user_id` : sql``}
      where h.hour >= date_trunc(${unit}, ${query.start}::timestamptz, 'UTC') and h.hour < ${query.end}
        ${query.userId === undefined ? sql`` : sql`and h.user_id = ${query.userId}`}
        ${query.tier === undefined ? sql`` : sql`and u.tier = ${query.tier}`}
        ${after === undefined ? sql`` : sql`and h.hour >= to_timestamp(${after[0]} / 1000.0)`}
    ) b
    group by b.bucket, b.resource, b.key_id, b.user_id, b.tier
    ${
      after === undefined
        ? sql``
        : sql`having ((extract(epoch from b.bucket) * 1000)::bigint, b.resource collate "C", b.key_id collate "C", b.user_id collate "C", b.tier collate "C")
                    > (${after[0]}::bigint, ${after[1]}::text collate "C", ${after[2]}::text collate "C", ${after[3]}::text collate "C", ${after[4]}::text collate "C")`
    }
    order by 1, b.resource collate "C", b.key_id collate "C", b.user_id collate "C", b.tier collate "C"
    limit ${query.limit + 1}`;
  const results = rows.slice(0, query.limit).map((row) => ({
    start: Number(row.start_ms),
    resource: row.resource,
    keyId: row.key_id,
    userId: row.user_id,
    tier: row.tier,
    amount: Number(row.amount),
    requests: Number(row.requests),
    denied: Number(row.denied),
  }));
  const last = results[results.length - 1];
  const next: UsageCursor | null = rows.length > query.limit && last !== undefined ? [last.start, last.resource, last.keyId, last.userId, last.tier] : null;
  return { results, next };
}

/** Users whose lines one statement of the export reads. */
const EXPORT_USERS = 1000;

/**
 * The month starting at `month` (its first instant, UTC), by user, resource and day, in that
 * order, a page of users at a time: each page is one short statement that finds the next
 * users by primary key and their hours by the history's, so memory stays flat however long
 * the month, and the connection is free between pages (the embedded database has only one).
 */
export async function* exportUsage(sql: Sql, month: Date): AsyncGenerator<UsageExportLine[]> {
  const end = new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 1));
  let after = '';
  for (;;) {
    const users = await sql<{ id: string; tier: string }[]>`
      select id, tier from users where id > ${after} order by id limit ${EXPORT_USERS}`;
    if (users.length === 0) return;
    after = users[users.length - 1]!.id;
    const rows = await sql<{ user_id: string; resource: string; day: string; amount: string; requests: string; denied: string }[]>`
      select h.user_id, h.resource, to_char(date_trunc('day', h.hour, 'UTC') at time zone 'UTC', 'YYYY-MM-DD') as day,
             sum(h.amount) as amount, sum(h.requests) as requests, sum(h.denied) as denied
      from usage_hours h
      where h.user_id = any(${sql.array(users.map((user) => user.id))}::text[]) and h.hour >= ${month} and h.hour < ${end}
      group by h.user_id, h.resource, 3
      order by h.user_id collate "C", h.resource collate "C", 3`;
    if (rows.length === 0) continue;
    const tiers = new Map(users.map((user) => [user.id, user.tier]));
    yield rows.map((row) => ({
      userId: row.user_id,
      tier: tiers.get(row.user_id) ?? '',
      resource: row.resource,
      day: row.day,
      amount: Number(row.amount),
      requests: Number(row.requests),
      denied: Number(row.denied),
    }));
  }
}

/** How many users the export of any month pages over (for a progress bar). */
export async function countUsers(sql: Sql): Promise<number> {
  const [row] = await sql<{ count: string }[]>`select count(*) as count from users`;
  return Number(row?.count ?? 0);
}

/** The users who used the most of each resource in the month starting at `month`. */
export async function topUsers(sql: Sql, month: Date, limit: number): Promise<TopUser[]> {
  const end = new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 1));
  const rows = await sql<{ user_id: string; tier: string | null; resource: string; amount: string; requests: string; denied: string }[]>`
    select t.user_id, u.tier, t.resource, t.amount, t.requests, t.denied
    from (
      select user_id, resource, sum(amount) as amount, sum(requests) as requests, sum(denied) as denied,
             row_number() over (partition by resource order by sum(amount) desc, user_id) as place
      from usage_hours where hour >= ${month} and hour < ${end}
      group by user_id, resource
    ) t left join users u on u.id = t.user_id
    where t.place <= ${limit}
    order by t.resource collate "C", t.place`;
  return rows.map((row) => ({
    userId: row.user_id,
    tier: row.tier ?? '',
    resource: row.resource,
    amount: Number(row.amount),
    requests: Number(row.requests),
    denied: Number(row.denied),
  }));
}

/** Makes the monthly partitions from `from`'s month on, `months` of them. Returns how many were new. */
export async function ensureUsagePartitions(sql: Sql, from: Date, months: number): Promise<number> {
  const [row] = await sql<{ made: number }[]>`select usage_ensure_partitions(${from}, ${months}) as made`;
  return row?.made ?? 0;
}

/** Drops the monthly partitions that ended on or before `before`. Returns their names. */
export async function dropUsagePartitions(sql: Sql, before: Date): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`select usage_drop_partitions(${before}) as name`;
  return rows.map((row) => row.name);
}
