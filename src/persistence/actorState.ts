/**
 * The written-behind side of storage: shard epochs (the fence), actor state and activity
 * times, each a single statement for all the rows it is given (the write-behind flusher
 * cuts its batches to a bounded size; see writeBehind.ts).
 *
 * Why the fence holds: `writeStates` locks the fence rows of its shards FOR SHARE, in shard
 * order, before it compares epochs, and `claimShards` bumps them in the same order. A bump
 * therefore waits for a write in progress, and a write that starts after a bump sees the
 * new epoch (READ COMMITTED re-reads a row it had to wait for). The trigger on actor_state
 * checks the same thing again, for any writer that does not go through here.
 */

import { RESET_BUFFER_MODE } from 'msgpackr';
import type { PendingUsage } from '../shards/index.js';
import type { Sql } from './database.js';
import type { ActivityTouch, ActorStateRow } from './rows.js';
import { statePackr } from './stateCodec.js';

/** Takes shards over: bumps each one's epoch (creating it at 1) and returns shard → epoch. */
export async function claimShards(sql: Sql, shards: number[], owner: string): Promise<Map<number, number>> {
  if (shards.length === 0) return new Map();
  // Distinct and sorted: ON CONFLICT may touch a row once per statement, and a fixed lock
  // order keeps two claimers (or a claimer and a flush) from deadlocking.
  const ordered = [...new Set(shards)].sort((a, b) => a - b);
  const rows = await sql<{ shard: number; epoch: number }[]>`
    insert into shard_fence (shard, epoch, owner, updated_at)
    select s, 1, ${owner}, now() from unnest(${sql.array(ordered)}::int[]) as s order by s
    on conflict (shard) do update
      set epoch = shard_fence.epoch + 1, owner = excluded.owner, updated_at = excluded.updated_at
    returning shard, epoch`;
  return new Map(rows.map((row) => [row.shard, row.epoch]));
}

/** One row as the statement takes it, its state serialised once so the flusher can size its batches. */
export interface EncodedStateRow {
  entityKey: string;
  shard: number;
  epoch: number;
  seq: number;
  /** The state as MessagePack (the `body` column; see `encodeStateRow`). */
  body: Uint8Array;
  /** The current hour's usage counters as JSON text (the `usage_live` column), or null. */
  usageLive: string | null;
  /** In ms since 1970, within what `timestamptz` holds; null: kept for good. */
  expiresAt: number | null;
  /** Something in the state or its expiry was not storable as it was, and was replaced (see `encodeStateRow`). */
  mended?: true;
  /** Closed hours of usage to add to the history with this row; null: none. */
  usage: PendingUsage | null;
}

/**
 * A row Postgres takes, whatever the actor's memory holds: encoding is total, so that no
 * value can make an actor's row unwritable (its usage would then live in memory only, and
 * be lost with it).
 *
 * The state is stored as MessagePack in `body` (bytea): Postgres stores it as given, where a
 * `jsonb` state cost it a parse of every row on every flush (about 10 of the 21 µs a row cost;
 * docs/architecture.md). A value MessagePack cannot say (a cycle; a BigInt past 64 bits) is
 * written as JSON would say it: a cycle as null, a BigInt as a number. `usageLive`, the current hour's usage
 * counters, goes as JSON text, which usage queries read as `jsonb`; there U+0000 and lone
 * surrogates are refused, so they are written as U+FFFD.
 *
 * An expiry outside what `timestamptz` reads in ISO form (years 1 to 9999): a later one, or
 * none that is a number, is written as null (kept for good); an earlier one as 1970 (expired).
 *
 * Size needs nothing here: an actor's state is bounded (32 limits, 1,000 holds, 256
 * idempotency answers, and an hour's usage rows: 64 for resources no limit names, the rest
 * one per limit and credential; a few MB at most).
 */
export function encodeStateRow(row: ActorStateRow): EncodedStateRow {
  const { body, mended: stateMended } = stateBody(row.state);
  const live = row.liveUsage == null ? null : jsonText(row.liveUsage);
  const { expiresAt, mended: expiryMended } = storableExpiry(row.expiresAt);
  const encoded: EncodedStateRow = {
    entityKey: row.entityKey,
    shard: row.shard,
    epoch: row.epoch,
    seq: row.seq ?? 0,
    body,
    usageLive: live?.text ?? null,
    expiresAt,
    usage: row.usage ?? null,
  };
  if (stateMended || expiryMended || live?.mended === true) encoded.mended = true;
  return encoded;
}

function stateBody(state: unknown): { body: Uint8Array; mended: boolean } {
  try {
    return { body: copyOut(statePackr.pack(state, RESET_BUFFER_MODE)), mended: false };
  } catch {
    return { body: copyOut(statePackr.pack(storable(state, new Set()), RESET_BUFFER_MODE)), mended: true };
  }
}

/**
 * Encoded states are copied out of msgpackr's buffer (which RESET_BUFFER_MODE lets the next
 * state overwrite) into shared chunks: a view apiece, and one allocation per CHUNK_BYTES of
 * state, where a buffer per state (or msgpackr's own 8 KiB slabs) cost an allocation every
 * few dozen rows, each counted against the heap's limits until a collection freed it.
 */
const CHUNK_BYTES = 256 * 1024;
let chunk = Buffer.allocUnsafeSlow(0);
let chunkUsed = 0;

function copyOut(bytes: Uint8Array): Uint8Array {
  if (bytes.length > CHUNK_BYTES / 8) return Buffer.from(bytes);
  if (chunkUsed + bytes.length > chunk.length) {
    chunk = Buffer.allocUnsafeSlow(CHUNK_BYTES);
    chunkUsed = 0;
  }
  const view = chunk.subarray(chunkUsed, chunkUsed + bytes.length);
  view.set(bytes);
  chunkUsed += bytes.length;
  return view;
}

/** A state stored by `encodeStateRow` (`body`), or a row written before it existed (`state`, JSON). */
export function decodeState(body: Uint8Array | null, state: unknown): unknown {
  return body === null ? state : statePackr.unpack(body);
}

/**
 * An escape JSON.stringify writes only for text `jsonb` refuses: `\u0000`, or a surrogate
 * (escaped only when it stands alone). It can also match an escaped backslash followed by
 * "u0000" as text: then the state is copied for nothing, and written as it was.
 */
const REFUSED_ESCAPE = /\\u(?:0000|d[89a-f][0-9a-f]{2})/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is exactly what this replaces.
const ILL_FORMED = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
/** The earliest and latest times `timestamptz` reads in ISO 8601 form. */
const EARLIEST_EXPIRY = Date.parse('0001-01-01T00:00:00.000Z');
const LATEST_EXPIRY = Date.parse('9999-12-31T23:59:59.999Z');

/** `value` as JSON text `jsonb` takes (see `encodeStateRow`). */
function jsonText(value: unknown): { text: string; mended: boolean } {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    // A BigInt, or a cycle: copied below.
  }
  // `includes` first: most values hold no escape at all, and it is the cheaper scan.
  if (text !== undefined && (!text.includes('\\u') || !REFUSED_ESCAPE.test(text))) return { text, mended: false };
  const mendedText = JSON.stringify(storable(value, new Set())) ?? 'null';
  return { text: mendedText, mended: mendedText !== text };
}

/** `value` as JSON can say it and `jsonb` takes it (see `encodeStateRow`). */
function storable(value: unknown, seen: Set<object>): unknown {
  if (typeof value === 'string') return value.replace(ILL_FORMED, '\uFFFD');
  if (typeof value === 'bigint') return Number(value);
  if (typeof value !== 'object' || value === null) return value;
  if (seen.has(value)) return null;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return storable(toJSON.call(value), seen);
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((item) => storable(item, seen));
    // fromEntries, not assignment: a member may be named "__proto__".
    return Object.fromEntries(Object.entries(value).map(([name, item]) => [name.replace(ILL_FORMED, '\uFFFD'), storable(item, seen)]));
  } finally {
    seen.delete(value);
  }
}

function storableExpiry(expiresAt: number | null | undefined): { expiresAt: number | null; mended: boolean } {
  if (expiresAt === undefined || expiresAt === null) return { expiresAt: null, mended: false };
  if (!(expiresAt <= LATEST_EXPIRY)) return { expiresAt: null, mended: true }; // later, or NaN
  if (expiresAt < EARLIEST_EXPIRY) return { expiresAt: 0, mended: true };
  // Whole milliseconds: the statement adds them to 1970 as whole seconds and milliseconds,
  // each product exact in the float Postgres multiplies an interval by (a single product in
  // milliseconds was not, past the year 2255).
  return { expiresAt: Math.trunc(expiresAt), mended: false };
}

/**
 * Upserts actor states in one statement. Rows whose epoch is not their shard's current one
 * are skipped and returned as `fenced`: a newer owner has the shard, and these copies must
 * not serve again. For a key given twice, the last row wins.
 *
 * Every row's key, state and live usage travel as bytes of one `bytea` parameter, which the
 * statement cuts by offset and length (`packRows`); the numbers go as arrays. For 100,000
 * rows in slices of 1,000 this cost Postgres 7.4–7.9 µs of CPU a row against 8.5–10.6 µs
 * for arrays of hex text, and the node one string per statement instead of two or three a
 * row, which lived (and were copied by the young-generation collector) until the
 * statement returned.
 *
 * Rows that carry closed hours of usage go through the statement that also adds those hours
 * to the history; the rest (nearly every flush) through the plain one, which costs what it
 * did before usage existed.
 */
export async function writeStates(sql: Sql, rows: readonly EncodedStateRow[]): Promise<{ written: number; fenced: string[] }> {
  if (rows.length === 0) return { written: 0, fenced: [] };
  const latest = new Map<string, EncodedStateRow>();
  let usage = false;
  for (const row of rows) {
    latest.set(row.entityKey, row);
    if (row.usage !== null) usage = true;
  }
  const unique = [...latest.values()];
  const input = packRows(unique);
  const fenced = usage
    ? await sql.unsafe<{ entity_key: string }[]>(WRITE_WITH_USAGE, [...input, ...usageColumns(sql, unique)], { prepare: true })
    : await sql.unsafe<{ entity_key: string }[]>(WRITE_PLAIN, input, { prepare: true });
  return { written: unique.length - fenced.length, fenced: fenced.map((row) => row.entity_key) };
}

/**
 * The statements' parameters $1–$9: one `bytea` holding, row after row, the key (UTF-8), the
 * state and the live usage (UTF-8 JSON), then each row's offset into it, the three lengths
 * (-1: no live usage), shard, epoch, sequence and expiry (ms since 1970, or null).
 */
function packRows(rows: readonly EncodedStateRow[]) {
  let most = 0;
  for (const row of rows) most += packedBytesAtMost(row);
  // Cut to what was written.
  const bytes = Buffer.allocUnsafe(most);
  const columns = { at: [] as number[], key: [] as number[], body: [] as number[], live: [] as number[] };
  let at = 0;
  for (const row of rows) {
    columns.at.push(at);
    const key = bytes.write(row.entityKey, at);
    columns.key.push(key);
    bytes.set(row.body, at + key);
    columns.body.push(row.body.length);
    at += key + row.body.length;
    const live = row.usageLive === null ? -1 : bytes.write(row.usageLive, at);
    columns.live.push(live);
    if (live > 0) at += live;
  }
  return [
    bytes.subarray(0, at),
    numbers(columns.at),
    numbers(columns.key),
    numbers(columns.body),
    numbers(columns.live),
    numbers(rows.map((row) => row.shard)),
    numbers(rows.map((row) => row.epoch)),
    numbers(rows.map((row) => row.seq)),
    numbers(rows.map((row) => row.expiresAt)),
  ];
}

/** The most bytes a row takes in the statement's `bytea`: its state, and its key and live usage at 3 bytes of UTF-8 per UTF-16 unit. */
export function packedBytesAtMost(row: EncodedStateRow): number {
  return row.body.length + 3 * (row.entityKey.length + (row.usageLive?.length ?? 0));
}

/**
 * An array of integers (or nulls) as Postgres's array text, written here: the driver's array
 * writer quotes and escapes every element, a few strings apiece, for numbers that need neither.
 */
function numbers(values: readonly (number | null)[]): string {
  let text = '{';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) text += ',';
    text += values[i] ?? 'NULL';
  }
  return `${text}}`;
}

/** The rows `packRows` sends, as a relation `input` (and `usage_rolls` from $10 in the statement with usage). */
function inputRows(withRolls: boolean): string {
  return `input as (
      select convert_from(substring($1::bytea from r.at + 1 for r.key_bytes), 'UTF8') as entity_key,
        r.shard, r.epoch, r.seq,
        substring($1::bytea from r.at + r.key_bytes + 1 for r.body_bytes) as body,
        case when r.live_bytes >= 0
          then convert_from(substring($1::bytea from r.at + r.key_bytes + r.body_bytes + 1 for r.live_bytes), 'UTF8') end as usage_live,
        timestamptz 'epoch' + (r.expires_ms / 1000) * interval '1 second' + (r.expires_ms % 1000) * interval '1 millisecond' as expires_at${withRolls ? ', r.usage_rolls' : ''}
      from unnest($2::int[], $3::int[], $4::int[], $5::int[], $6::int[], $7::bigint[], $8::bigint[], $9::bigint[]${withRolls ? ', $10::bigint[]' : ''})
        as r(at, key_bytes, body_bytes, live_bytes, shard, epoch, seq, expires_ms${withRolls ? ', usage_rolls' : ''})
    )`;
}

/** What an upsert's update sets: everything but the key (a row from before `body` loses its JSON `state`). */
const UPDATED_COLUMNS = `shard = excluded.shard, epoch = excluded.epoch, seq = excluded.seq, body = excluded.body, state = null,
        usage_live = excluded.usage_live, expires_at = excluded.expires_at, updated_at = excluded.updated_at`;

/** The fence rows of the input's shards, locked FOR SHARE in shard order (see the file's comment). */
const FENCE_OF_INPUT = `fence as materialized (
      select shard, epoch from shard_fence
      where shard in (select shard from input)
      order by shard
      for share
    )`;

const WRITE_PLAIN = `
    with ${inputRows(false)}, ${FENCE_OF_INPUT}, written as (
      insert into actor_state (entity_key, shard, epoch, seq, body, state, usage_live, expires_at, updated_at)
      select i.entity_key, i.shard, i.epoch, i.seq, i.body, null, i.usage_live, i.expires_at, now()
      from input i join fence f on f.shard = i.shard and f.epoch = i.epoch
      on conflict (entity_key) do update
        set ${UPDATED_COLUMNS}
      returning entity_key
    )
    select entity_key from input where entity_key not in (select entity_key from written)`;

/**
 * The same upsert, which also adds each written row's closed hours ($11–$18) to `usage`: only
 * those numbered past the `usage_rolls` the row held before this statement (`before`, read
 * with the rows locked, before the upsert writes them), so hours a committed write already
 * added are never added again. A row refused by the fence adds nothing. Hours of one user,
 * resource and credential are summed first: ON CONFLICT may touch a row only once per
 * statement.
 */
const WRITE_WITH_USAGE = `
    with ${inputRows(true)}, closed as (
      select * from unnest($11::text[], $12::bigint[], $13::bigint[], $14::text[], $15::text[], $16::bigint[], $17::bigint[], $18::bigint[])
        as c(user_id, roll, hour, resource, key_id, amount, requests, denied)
    ), ${FENCE_OF_INPUT}, before as materialized (
      -- Locked, so it reads the latest committed row: a statement still running on the server
      -- when its connection broke (and the flush was sent again) has committed or rolled
      -- back by the time this one reads, and what it added is not added again.
      select entity_key, usage_rolls from actor_state where entity_key in (select entity_key from input)
      order by entity_key
      for update
    ), written as (
      insert into actor_state (entity_key, shard, epoch, seq, body, state, usage_live, expires_at, updated_at, usage_rolls)
      select i.entity_key, i.shard, i.epoch, i.seq, i.body, null, i.usage_live, i.expires_at, now(), i.usage_rolls
      from input i join fence f on f.shard = i.shard and f.epoch = i.epoch
      -- Joined only so that \`before\` is read (and its rows locked) before this writes them.
      left join before b on b.entity_key = i.entity_key
      on conflict (entity_key) do update
        set ${UPDATED_COLUMNS}, usage_rolls = greatest(actor_state.usage_rolls, excluded.usage_rolls)
      returning entity_key
    ), added as (
      insert into usage (user_id, hour, resource, key_id, amount, requests, denied)
      select c.user_id, to_timestamp(c.hour / 1000.0), c.resource, c.key_id, sum(c.amount), sum(c.requests), sum(c.denied)
      from closed c
      join written w on w.entity_key = c.user_id
      left join before b on b.entity_key = c.user_id
      where c.roll > coalesce(b.usage_rolls, 0)
      group by c.user_id, c.hour, c.resource, c.key_id
      on conflict (user_id, hour, resource, key_id) do update
        set amount = usage.amount + excluded.amount, requests = usage.requests + excluded.requests,
            denied = usage.denied + excluded.denied
    )
    select entity_key from input where entity_key not in (select entity_key from written)`;

/** $10–$18 of the statement with usage: each row's `usage_rolls`, then its closed hours, one entry per hour, resource and credential, as columns. */
function usageColumns(sql: Sql, rows: readonly EncodedStateRow[]) {
  const columns = {
    user: [] as string[],
    roll: [] as number[],
    hour: [] as number[],
    resource: [] as string[],
    key: [] as string[],
    amount: [] as number[],
    requests: [] as number[],
    denied: [] as number[],
  };
  for (const row of rows) {
    for (const closed of row.usage?.hours ?? []) {
      // Five slots per resource and credential: resource, key, amount, requests, denied (usage.ts).
      const { cells } = closed;
      for (let at = 0; at < cells.length; at += 5) {
        columns.user.push(row.entityKey);
        columns.roll.push(closed.roll);
        columns.hour.push(closed.hour);
        columns.resource.push(storableText(cells[at] as string));
        columns.key.push(storableText(cells[at + 1] as string));
        columns.amount.push(cells[at + 2] as number);
        columns.requests.push(cells[at + 3] as number);
        columns.denied.push(cells[at + 4] as number);
      }
    }
  }
  return [
    sql.array(rows.map((row) => row.usage?.rolls ?? 0)),
    sql.array(columns.user),
    sql.array(columns.roll),
    sql.array(columns.hour),
    sql.array(columns.resource),
    sql.array(columns.key),
    sql.array(columns.amount),
    sql.array(columns.requests),
    sql.array(columns.denied),
  ];
}

/** Text Postgres stores: U+0000 and lone surrogates become U+FFFD (see `encodeStateRow`). */
function storableText(text: string): string {
  return text.replace(ILL_FORMED, '\uFFFD');
}

/** The months (UTC, as `Date`s of their first instant) the closed hours of `rows` fall in. */
export function usageMonths(rows: readonly EncodedStateRow[]): Date[] {
  const months = new Set<number>();
  for (const row of rows) {
    // Nearly every row carries none: skipped without a loop (this runs on every flush).
    if (row.usage === null) continue;
    for (const closed of row.usage.hours) {
      const at = new Date(closed.hour);
      months.add(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1));
    }
  }
  return [...months].map((month) => new Date(month));
}

/** Every shard's current epoch. */
export async function fenceEpochs(sql: Sql): Promise<Map<number, number>> {
  const rows = await sql<{ shard: number; epoch: number }[]>`select shard, epoch from shard_fence`;
  return new Map(rows.map((row) => [row.shard, row.epoch]));
}

/**
 * An entity's state with the epoch and sequence it was written under, and its shard's fence
 * epoch, read in one statement (one snapshot).
 */
export async function loadState(
  sql: Sql,
  entityKey: string,
  shard: number,
): Promise<{ state: unknown | null; epoch: number; seq: number; fenceEpoch: number | null }> {
  const [row] = await sql<{ body: Uint8Array | null; state: unknown | null; epoch: string | null; seq: string | null; fence_epoch: number | null }[]>`
    select a.body, a.state, a.epoch, a.seq, (select epoch from shard_fence where shard = ${shard}) as fence_epoch
    from (select 1) as one left join actor_state a on a.entity_key = ${entityKey}`;
  return {
    state: row === undefined ? null : decodeState(row.body, row.state),
    epoch: Number(row?.epoch ?? 0),
    seq: Number(row?.seq ?? 0),
    fenceEpoch: row?.fence_epoch ?? null,
  };
}

/**
 * Deletes up to `limit` rows whose state no longer matters (see Actor.expiresAt). Rows a
 * flush is writing at that moment are skipped (it gives them a later expiry anyway).
 */
export async function deleteExpiredStates(sql: Sql, limit: number): Promise<number> {
  const deleted = await sql`
    with doomed as (
      select entity_key from actor_state where expires_at < now() limit ${limit} for update skip locked
    )
    delete from actor_state a using doomed d where a.entity_key = d.entity_key and a.expires_at < now()
    returning 1`;
  return deleted.length;
}

/**
 * Records when sessions and keys were last used, in one statement. A time never moves
 * backwards, and rows already as recent are left alone (no new row version to vacuum).
 */
export async function touchActivity(sql: Sql, sessions: ActivityTouch[], keys: ActivityTouch[]): Promise<void> {
  if (sessions.length === 0 && keys.length === 0) return;
  const encode = (touches: ActivityTouch[]) => sql.json(touches.map((t) => ({ id: t.id, at: t.at.toISOString() })) as never);
  // Grouped first: UPDATE ... FROM applies an arbitrary one of several matches per row.
  await sql`
    with session_touch as (
      select id, max(at) as at from jsonb_to_recordset(${encode(sessions)}::jsonb) as t(id text, at timestamptz) group by id
    ), key_touch as (
      select id, max(at) as at from jsonb_to_recordset(${encode(keys)}::jsonb) as t(id text, at timestamptz) group by id
    ), touched_sessions as (
      update sessions s set last_active_at = t.at
      from session_touch t where s.id = t.id and s.last_active_at < t.at
      returning 1
    )
    update api_keys k set last_used_at = t.at
    from key_touch t where k.id = t.id and (k.last_used_at is null or k.last_used_at < t.at)`;
}
