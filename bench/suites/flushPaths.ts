/**
 * The flush statement's paths into Postgres, compared on the same rows: a table of
 * `BENCH_FLUSH_ROWS` (100,000) users' states over 1,024 shards, each rewritten in slices of
 * 1,000 rows, as a node's flush writes them (`npm run bench:flush`):
 * - `unnest`: what a node sends (the store's `writeStates`): one `bytea` holding every row's
 *   key, state and live usage, integer arrays of offsets and numbers, unnested and upserted;
 * - `copy, upsert`: the rows in COPY's binary format into a temporary table, then the same
 *   upsert from it, in one transaction;
 * - `copy, update`: the same COPY, then `UPDATE … FROM` (which cannot add a row a node has
 *   never written: measured only to see what the upsert costs);
 * - `values`: one prepared multi-row upsert, seven parameters a row (the driver sends each
 *   as text, a state as hex);
 * and three controls, each the node's statement:
 * - `no fence trigger`: with the table's fence triggers (migration 006) disabled for the pass;
 * - `pages rewritten since the checkpoint`: counted on a second pass after the checkpoint (and
 *   a vacuum), whose pages the WAL already holds whole: what the others pay for full-page images;
 * - `expiry moved`: every row with a new `expires_at`, as a limiter's row has at every write.
 *   That column is indexed, so no such update is heap-only. A user's row has no expiry.
 * Every path locks its shards' fence rows FOR SHARE, writes only rows of the current epoch
 * and returns those it did not write, as the node's statement does. Before each pass the
 * table is vacuumed and a checkpoint taken (autovacuum is off for it), so that every pass
 * starts alike. The figures, each the median of `BENCH_FLUSH_ROUNDS` (3) passes taken in
 * turn: Postgres's CPU per row (every `postgres` process on this machine, whatever database
 * it serves: bench/harness/cpu.ts, so run it on a quiet server), this process's CPU per row
 * (the rows' encoding into the statement or the COPY stream, and the driver), rows per
 * second, the WAL written per row (the insert position: the whole server's) with its
 * full-page images (`pg_stat_wal`), and the share of updates that were heap-only. Prints a
 * table and a `FLUSH_RESULT {…}` line.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { Packr } from 'msgpackr';
import postgres from 'postgres';
import { type EncodedStateRow, migrate, Store } from '../../src/persistence/index.js';
import { SHARD_COUNT } from '../../src/shards/index.js';
import { postgresCpuTime } from '../harness/cpu.js';

const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const ROWS = Number(process.env.BENCH_FLUSH_ROWS ?? 100_000);
const ROUNDS = Number(process.env.BENCH_FLUSH_ROUNDS ?? 3);
const SLICE = 1000;
/** A node's users are spread over these: a slice of 1,000 spans about 640, and the fence locks each one's row. */
const SHARDS = SHARD_COUNT;
const EXPIRY_MOVED = 'unnest, expiry moved';
const UNTRIGGERED = 'unnest, no fence trigger';
const REWRITTEN = 'unnest, pages rewritten since the checkpoint';

interface PathResult {
  path: string;
  postgresUsPerRow: number;
  clientUsPerRow: number;
  rowsPerSecond: number;
  /** WAL written per row (the whole server's), and how many full-page images it held. */
  walBytesPerRow: number;
  fullPagesPerRow: number;
  /** Of the pass's updates of actor_state, the share that were heap-only (touched no index). */
  heapOnlyShare: number;
}

const packr = new Packr({ useRecords: false });

/**
 * About what a user's state holds after a few requests: two limits' cells, a hold, usage
 * counters; no expiry, as a user's row has none (`expiryMoved`: a new one each pass).
 */
function rowsOf(epochs: Map<number, number>, seq: number, expiryMoved: boolean): EncodedStateRow[] {
  const now = Date.now();
  return Array.from({ length: ROWS }, (_, i) => {
    const shard = i % SHARDS;
    return {
      entityKey: `usr_${i.toString(36).padStart(12, '0')}`,
      shard,
      epoch: epochs.get(shard)!,
      seq,
      body: packr.pack({
        v: 2,
        limits: { requests: [now + i, 0, 60_000], tokens: [1_000_000, 1234 + seq, now - 86_400_000] },
        holds: [{ id: `rsv_${i}`, amounts: { tokens: 500 }, expiresAt: now + 60_000 }],
        idempotency: [],
      }),
      usageLive: `{"hour":${Math.floor(now / 3_600_000)},"cells":["tokens","key_${i}",${seq},1,0]}`,
      expiresAt: expiryMoved ? now + 86_400_000 + i : null,
      usage: null,
    };
  });
}

const FENCE = `fence as materialized (
      select shard, epoch from shard_fence where shard in (select shard from input) order by shard for share
    )`;
/** As the node's statement (actorState.ts): the rows of the current epoch upserted, the others' keys returned. */
const UPSERT_FROM_INPUT = `written as (
      insert into actor_state (entity_key, shard, epoch, seq, body, state, usage_live, expires_at, updated_at)
      select i.entity_key, i.shard, i.epoch, i.seq, i.body, null, i.usage_live, i.expires_at, now()
      from input i join fence f on f.shard = i.shard and f.epoch = i.epoch
      on conflict (entity_key) do update
        set shard = excluded.shard, epoch = excluded.epoch, seq = excluded.seq, body = excluded.body, state = null,
          usage_live = excluded.usage_live, expires_at = excluded.expires_at, updated_at = excluded.updated_at
      returning entity_key
    )
    select entity_key from input where entity_key not in (select entity_key from written)`;

const STAGING = `create temporary table flush_input (
    entity_key text, shard int, epoch bigint, seq bigint, body bytea, usage_live text, expires_at timestamptz
  ) on commit delete rows`;
const COPY_UPSERT = `with input as (select * from flush_input), ${FENCE}, ${UPSERT_FROM_INPUT}`;
const COPY_UPDATE = `
    with input as (select * from flush_input), ${FENCE}, written as (
      update actor_state a set shard = i.shard, epoch = i.epoch, seq = i.seq, body = i.body, state = null,
        usage_live = i.usage_live, expires_at = i.expires_at, updated_at = now()
      from input i join fence f on f.shard = i.shard and f.epoch = i.epoch
      where a.entity_key = i.entity_key
      returning a.entity_key
    )
    select entity_key from input where entity_key not in (select entity_key from written)`;

function valuesStatement(rows: number): string {
  const tuples: string[] = [];
  for (let r = 0; r < rows; r++) {
    const p = r * 7;
    tuples.push(`($${p + 1}::text, $${p + 2}::int, $${p + 3}::bigint, $${p + 4}::bigint, $${p + 5}::bytea, $${p + 6}::text, $${p + 7}::timestamptz)`);
  }
  return `with input (entity_key, shard, epoch, seq, body, usage_live, expires_at) as (values ${tuples.join(', ')}), ${FENCE}, ${UPSERT_FROM_INPUT}`;
}

/** Microseconds from 1970 to 2000: COPY's binary `timestamptz` counts from 2000. */
const POSTGRES_EPOCH_US = 946_684_800_000_000n;
const COPY_HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);

/** The rows in COPY's binary format: a header, then per row its field count and each field's length and bytes. */
function copyBinary(rows: readonly EncodedStateRow[]): Buffer {
  let size = COPY_HEADER.length + 2;
  for (const row of rows) size += 2 + 7 * 4 + 3 * row.entityKey.length + 4 + 8 + 8 + row.body.length + 3 * (row.usageLive?.length ?? 0) + 8;
  const out = Buffer.allocUnsafe(size);
  let at = COPY_HEADER.copy(out, 0);
  for (const row of rows) {
    at = out.writeInt16BE(7, at);
    const key = out.write(row.entityKey, at + 4);
    at = out.writeInt32BE(key, at) + key;
    at = out.writeInt32BE(4, at);
    at = out.writeInt32BE(row.shard, at);
    at = out.writeInt32BE(8, at);
    at = out.writeBigInt64BE(BigInt(row.epoch), at);
    at = out.writeInt32BE(8, at);
    at = out.writeBigInt64BE(BigInt(row.seq), at);
    at = out.writeInt32BE(row.body.length, at);
    out.set(row.body, at);
    at += row.body.length;
    if (row.usageLive === null) at = out.writeInt32BE(-1, at);
    else {
      const live = out.write(row.usageLive, at + 4);
      at = out.writeInt32BE(live, at) + live;
    }
    if (row.expiresAt === null) at = out.writeInt32BE(-1, at);
    else {
      at = out.writeInt32BE(8, at);
      at = out.writeBigInt64BE(BigInt(row.expiresAt) * 1000n - POSTGRES_EPOCH_US, at);
    }
  }
  at = out.writeInt16BE(-1, at);
  return out.subarray(0, at);
}

/** Writes one slice; answers the keys it did not write (fenced). */
type Writer = (slice: readonly EncodedStateRow[]) => Promise<readonly unknown[]>;

function writers(sql: postgres.Sql, store: Store): Record<string, Writer> {
  const values = valuesStatement(SLICE);
  const unnest: Writer = async (slice) => (await store.writeStates(slice)).fenced;
  const viaCopy =
    (statement: string): Writer =>
    (slice) =>
      sql.begin(async (tx) => {
        const copy = await tx.unsafe('copy flush_input from stdin (format binary)').writable();
        copy.end(copyBinary(slice));
        await once(copy, 'finish');
        return tx.unsafe(statement, [], { prepare: true });
      });
  return {
    unnest,
    [EXPIRY_MOVED]: unnest,
    [UNTRIGGERED]: unnest,
    [REWRITTEN]: unnest,
    'copy, upsert': viaCopy(COPY_UPSERT),
    'copy, update': viaCopy(COPY_UPDATE),
    values: (slice) =>
      sql.unsafe(
        values,
        slice.flatMap((row) => [
          row.entityKey,
          row.shard,
          row.epoch,
          row.seq,
          row.body,
          row.usageLive,
          row.expiresAt === null ? null : new Date(row.expiresAt),
        ]) as never[],
        { prepare: true },
      ),
  };
}

/**
 * A connection to the URL's (first) host with Nagle's algorithm off, for the driver's `socket`
 * option, which takes a connected socket (a Unix socket, where the URL names one, has no Nagle
 * to turn off).
 */
function connectedAtOnce(options: { host: string[]; port: number[]; path?: string }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const done = () => {
      socket.off('error', reject);
      resolve(socket);
    };
    const socket = options.path ? connect(options.path, done) : connect({ host: options.host[0], port: options.port[0] ?? 5432, noDelay: true }, done);
    // What the driver sets on a socket of its own: TLS names the server by it.
    Object.assign(socket, { host: options.host[0] });
    socket.once('error', reject);
  });
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

export async function runFlushPaths(): Promise<PathResult[]> {
  if (!Number.isInteger(ROWS) || ROWS <= 0 || ROWS % SLICE !== 0) throw new Error(`BENCH_FLUSH_ROWS must be a positive multiple of ${SLICE}`);
  if (!Number.isInteger(ROUNDS) || ROUNDS <= 0) throw new Error('BENCH_FLUSH_ROUNDS must be a positive integer');
  const name = `tally_flush_${randomBytes(4).toString('hex')}`;
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  // One connection: the temporary table is the connection's own. Its socket sends at once
  // (no Nagle): COPY's end, a few bytes written after the rows, otherwise waits for the
  // server's delayed acknowledgement of them, about 40 ms a slice.
  // (`socket`, the driver's hook for a connection made elsewhere, is missing from its types.)
  const options = { max: 1, onnotice: () => {}, socket: connectedAtOnce };
  const sql = postgres(url.toString(), options as postgres.Options<Record<string, postgres.PostgresType>>);
  try {
    await migrate(sql);
    // The passes vacuum it themselves; a worker's CPU would land in whichever pass it met.
    await sql`alter table actor_state set (autovacuum_enabled = off)`;
    const store = new Store(sql);
    // Epochs as numbers (this pool, unlike a node's, reads int8 as text).
    const claimed = await store.claimShards(
      Array.from({ length: SHARDS }, (_, s) => s),
      'bench-flush',
    );
    const epochs = new Map([...claimed].map(([shard, epoch]) => [shard, Number(epoch)]));
    await sql.unsafe(STAGING);
    const paths = writers(sql, store);
    let seq = 1;
    const writeAll = async (write: Writer, rows: EncodedStateRow[]) => {
      for (let from = 0; from < rows.length; from += SLICE) {
        const fenced = await write(rows.slice(from, from + SLICE));
        if (fenced.length > 0) throw new Error(`rows of the current epoch were refused: ${fenced.length}`);
      }
    };
    // The whole server's WAL position, and this backend's counts (every write here is its
    // own), which it reports at most once a second unless told to (Postgres 15).
    const counters = async () => {
      await sql`select pg_stat_force_next_flush()`;
      const [row] = await sql<{ wal: number; fpi: number; updates: number; hot: number }[]>`
        select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::float8 as wal, (select wal_fpi from pg_stat_wal)::float8 as fpi,
          n_tup_upd::float8 as updates, n_tup_hot_upd::float8 as hot
        from pg_stat_user_tables where relname = 'actor_state'`;
      return row!;
    };
    /** One pass over every row, counted; `rewritten`: after an uncounted one since the checkpoint. */
    const pass = async (write: Writer, options: { rewritten?: boolean; expiryMoved?: boolean } = {}) => {
      await sql`vacuum actor_state`;
      await sql`checkpoint`;
      if (options.rewritten === true) {
        await writeAll(write, rowsOf(epochs, seq++, false));
        await sql`vacuum actor_state`;
      }
      const passSeq = seq++;
      const rows = rowsOf(epochs, passSeq, options.expiryMoved === true);
      const before = await counters();
      const postgresBefore = postgresCpuTime();
      const clientBefore = process.cpuUsage();
      const start = performance.now();
      await writeAll(write, rows);
      const seconds = (performance.now() - start) / 1000;
      const client = process.cpuUsage(clientBefore);
      const postgresAfter = postgresCpuTime();
      const after = await counters();
      const [written] = await sql<{ rows: number }[]>`select count(*)::int as rows from actor_state where seq = ${passSeq}`;
      if (written!.rows !== ROWS) throw new Error(`a pass wrote ${written!.rows} of ${ROWS} rows`);
      // Back to no expiry, uncounted: the next pass would otherwise change the index's column.
      if (options.expiryMoved === true) await writeAll(write, rowsOf(epochs, seq++, false));
      const postgresSeconds =
        postgresBefore === undefined || postgresAfter === undefined
          ? Number.NaN
          : postgresAfter.user + postgresAfter.kernel - postgresBefore.user - postgresBefore.kernel;
      return {
        postgres: (postgresSeconds * 1e6) / ROWS,
        client: (client.user + client.system) / ROWS,
        rate: ROWS / seconds,
        walBytes: (after.wal - before.wal) / ROWS,
        fullPages: (after.fpi - before.fpi) / ROWS,
        heapOnly: (after.hot - before.hot) / Math.max(1, after.updates - before.updates),
      };
    };
    // The first pass inserts every row; it is not counted.
    await pass(paths.unnest!);
    const runs = new Map<string, Awaited<ReturnType<typeof pass>>[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const [path, write] of Object.entries(paths)) {
        if (path === UNTRIGGERED) await sql`alter table actor_state disable trigger user`;
        try {
          const run = await pass(write, { rewritten: path === REWRITTEN, expiryMoved: path === EXPIRY_MOVED });
          runs.set(path, [...(runs.get(path) ?? []), run]);
        } finally {
          if (path === UNTRIGGERED) await sql`alter table actor_state enable trigger user`;
        }
      }
    }
    return [...runs].map(([path, results]) => ({
      path,
      postgresUsPerRow: median(results.map((r) => r.postgres)),
      clientUsPerRow: median(results.map((r) => r.client)),
      rowsPerSecond: median(results.map((r) => r.rate)),
      walBytesPerRow: median(results.map((r) => r.walBytes)),
      fullPagesPerRow: median(results.map((r) => r.fullPages)),
      heapOnlyShare: median(results.map((r) => r.heapOnly)),
    }));
  } finally {
    await sql.end({ timeout: 5 });
    await admin
      .unsafe(`drop database if exists ${name} with (force)`)
      .catch((error: unknown) => console.error(`[flush] could not drop database ${name}: ${error}`));
    await admin.end({ timeout: 5 });
  }
}

export function formatFlushPaths(results: readonly PathResult[]): string {
  const lines = [
    `Flush paths: ${ROWS.toLocaleString('en')} rows rewritten in slices of ${SLICE}, median of ${ROUNDS} passes`,
    '| path | Postgres CPU µs/row | client CPU µs/row | rows/s | WAL bytes/row | full-page images/row | heap-only updates |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of results)
    lines.push(
      `| ${r.path} | ${r.postgresUsPerRow.toFixed(2)} | ${r.clientUsPerRow.toFixed(2)} | ${Math.round(r.rowsPerSecond).toLocaleString('en')} | ${Math.round(r.walBytesPerRow)} | ${r.fullPagesPerRow.toFixed(3)} | ${Math.round(r.heapOnlyShare * 100)} % |`,
    );
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const results = await runFlushPaths();
  console.log(formatFlushPaths(results));
  console.log(`FLUSH_RESULT ${JSON.stringify(results)}`);
}
