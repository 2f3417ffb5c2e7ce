/**
 * Every query Tally makes. Users, sessions, keys and tiers are written through: the call
 * returns once the row is committed. A written-through change of a user carries the epoch its
 * shard is served under and is made only while the fence still holds it (`fenced`). Actor
 * state and activity times arrive in batches from the write-behind flusher and are fenced by
 * shard epoch too (see actorState.ts).
 *
 * A query the database never answered (it is down, or restarting) fails with
 * `StorageUnavailableError`, which the edge answers with 503 and Retry-After; the flusher
 * tells those apart from errors a row's content caused (errors.ts).
 */
import type postgres from 'postgres';
import {
  EmailTakenError,
  type FencedLoad,
  InvalidRequestError,
  type LoadedUser,
  StaleEpochError,
  StorageUnavailableError,
  UnknownTierError,
  type UsageExportLine,
  type UsageQuery,
  type UserStore,
  type WriteFence,
} from '../shards/index.js';
import type { EncodedStateRow } from './actorState.js';
import * as actorState from './actorState.js';
import type { Sql } from './database.js';
import { isUnreachable, SQLSTATE, sqlState } from './errors.js';
import { chooseCopy, type ReplicaCopy, type StateReplica } from './replica.js';
import { type ActivityTouch, type ApiKeyRow, type SessionRow, type TierRow, toDate, toDateOrNull, type UserRow } from './rows.js';
import * as usage from './usage.js';

/** The unique index on lower(email), from migrations/001_init.sql. */
const EMAIL_INDEX = 'users_email_key';

/** A user row as selected, before it becomes camelCase. */
interface UserColumns {
  id: string;
  email: string;
  name: string | null;
  tier: string;
  password_hash: string;
  preferences: Record<string, unknown>;
  blocked: boolean;
  overrides: unknown[];
  created_at: Date;
}

/** Sessions and keys inside json_agg: already camelCase, times as ISO text. */
type Jsonified<Row> = { [K in keyof Row]: Row[K] extends Date ? string : Row[K] extends Date | null ? string | null : Row[K] };

export class Store implements UserStore {
  /** Loads of actors from the database, by kind: how much the negative cache and key MACs spare it. */
  readonly loads = { user: 0, state: 0 };
  /** Statements that loaded users (each for one batch or more). */
  readonly batches = { user: 0 };

  /** `replica`: the Redis replica cache, read beside Postgres on every activation. */
  constructor(
    private readonly sql: Sql,
    private readonly replica: StateReplica | null = null,
  ) {}

  /** Throws `EmailTakenError` when the email is taken (in any letter case), `UnknownTierError` for a missing tier. */
  async insertUser(user: Omit<UserRow, 'createdAt'>): Promise<UserRow> {
    const { sql } = this;
    try {
      const [row] = await sql<{ created_at: Date }[]>`
        insert into users (id, email, name, tier, password_hash, preferences, blocked, overrides)
        values (${user.id}, ${user.email}, ${user.name}, ${user.tier}, ${user.passwordHash},
                ${sql.json(user.preferences as never)}, ${user.blocked}, ${sql.json(user.overrides as never)})
        returning created_at`;
      return { ...user, createdAt: row!.created_at };
    } catch (error) {
      throw translate(error, user.tier);
    }
  }

  /**
   * A user with their live sessions (not revoked, not expired), undeleted keys and
   * written-behind state, and the fence epoch of `shard`, read in one snapshot.
   *
   * Loads asked for in the same turn of the event loop go to Postgres together, as one
   * statement for up to LOAD_BATCH users (`WHERE id = ANY(…)` in effect): a node that
   * activates thousands of users a second pays one round trip, one statement and one socket
   * write per batch instead of per user. Each caller still gets only its own user.
   */
  loadUser(id: string, shard: number): Promise<FencedLoad<LoadedUser>> {
    this.loads.user++;
    return new Promise((resolve, reject) => {
      this.pendingLoads.push({ id, shard, resolve, reject });
      if (this.pendingLoads.length === 1 && this.loadsInFlight < LOAD_STATEMENTS) setImmediate(this.sendLoads);
    });
  }

  private pendingLoads: PendingLoad[] = [];
  /** Load statements sent and not yet answered. */
  private loadsInFlight = 0;

  /**
   * Sends what is pending, as statements of up to LOAD_BATCH users, up to LOAD_STATEMENTS of
   * them out at a time. Loads asked for while those are out wait for one to return and go
   * together in the next: batches grow with the load, and a lone load still goes at once.
   */
  private readonly sendLoads = (): void => {
    while (this.pendingLoads.length > 0 && this.loadsInFlight < LOAD_STATEMENTS) {
      const batch = this.pendingLoads.length <= LOAD_BATCH ? this.pendingLoads : this.pendingLoads.slice(0, LOAD_BATCH);
      this.pendingLoads = batch === this.pendingLoads ? [] : this.pendingLoads.slice(LOAD_BATCH);
      this.batches.user++;
      this.loadsInFlight++;
      this.loadUsers(batch)
        .then(
          (found) => {
            for (let i = 0; i < batch.length; i++) batch[i]!.resolve(found[i]!);
          },
          (error: unknown) => {
            const failure = translate(error, undefined);
            for (const load of batch) load.reject(failure);
          },
        )
        .finally(() => {
          this.loadsInFlight--;
          this.sendLoads();
        });
    }
  };

  /** One statement for a batch of loads (and one read of the replica beside it); the answers in the batch's order. */
  private async loadUsers(batch: readonly PendingLoad[]): Promise<FencedLoad<LoadedUser>[]> {
    const ids = batch.map((load) => load.id);
    const shards = batch.map((load) => load.shard);
    const copies = this.replica?.read(ids);
    const rows = await this.sql<LoadedUserColumns[]>`
      select q.ord, (select epoch from shard_fence where shard = q.shard) as fence_epoch,
        u.id, u.email, u.name, u.tier, u.password_hash, u.preferences, u.blocked, u.overrides, u.created_at,
        coalesce((
          select json_agg(json_build_object(
            'id', s.id, 'userId', s.user_id, 'deviceName', s.device_name, 'deviceType', s.device_type,
            'ip', s.ip, 'userAgent', s.user_agent, 'createdAt', s.created_at, 'expiresAt', s.expires_at,
            'lastActiveAt', s.last_active_at) order by s.created_at, s.id)
          from sessions s where s.user_id = u.id and s.revoked_at is null and s.expires_at > now()
        ), '[]') as sessions,
        coalesce((
          select json_agg(json_build_object(
            'id', k.id, 'userId', k.user_id, 'prefix', k.prefix, 'hash', k.hash, 'name', k.name,
            'scopes', k.scopes, 'createdAt', k.created_at, 'expiresAt', k.expires_at,
            'lastUsedAt', k.last_used_at) order by k.created_at, k.id)
          from api_keys k where k.user_id = u.id and k.deleted_at is null
        ), '[]') as keys,
        a.body as state_body, a.state, a.epoch as state_epoch, a.seq as state_seq
      from unnest(${this.sql.array(ids)}::text[], ${this.sql.array(shards)}::int[]) with ordinality as q(id, shard, ord)
      left join users u on u.id = q.id
      left join actor_state a on a.entity_key = u.id`;
    const found = copies === undefined ? null : await copies;
    const answers: FencedLoad<LoadedUser>[] = new Array(batch.length);
    for (const row of rows) {
      const index = Number(row.ord) - 1;
      const written = { state: actorState.decodeState(row.state_body, row.state), epoch: Number(row.state_epoch ?? 0), seq: Number(row.state_seq ?? 0) };
      answers[index] = toLoadedUser(row, row.id == null ? null : this.newestState(written, found?.[index] ?? null, row.fence_epoch));
    }
    return answers;
  }

  /** The tier a user is on, or null when there is no such user. */
  async findTier(id: string): Promise<string | null> {
    const [row] = await this.sql<{ tier: string }[]>`select tier from users where id = ${id}`.catch(rethrow);
    return row?.tier ?? null;
  }

  /** Live API keys issued before keys carried a MAC (migrations/004): key id → user id. */
  async unsignedKeys(): Promise<Map<string, string>> {
    const rows = await this.sql<{ id: string; user_id: string }[]>`select id, user_id from api_keys where not signed and deleted_at is null`.catch(rethrow);
    return new Map(rows.map((row) => [row.id, row.user_id]));
  }

  /** Case-insensitive, through the unique index on lower(email). */
  async findLogin(email: string): Promise<{ id: string; email: string; passwordHash: string } | null> {
    const [row] = await this.sql<{ id: string; email: string; password_hash: string }[]>`
      select id, email, password_hash from users where lower(email) = lower(${email})`.catch(rethrow);
    return row === undefined ? null : { id: row.id, email: row.email, passwordHash: row.password_hash };
  }

  /** Absent fields stay as they are; `name: null` clears the name. Throws `EmailTakenError`. */
  async updateProfile(id: string, patch: { name?: string | null; email?: string }, fence: WriteFence): Promise<void> {
    if (patch.name === undefined && patch.email === undefined) return;
    await this.fenced(
      fence,
      (sql) => sql`
        update users set
          name = case when ${patch.name !== undefined} then ${patch.name ?? null}::text else name end,
          email = coalesce(${patch.email ?? null}::text, email),
          updated_at = now()
        where id = ${id}`,
    );
  }

  async updatePreferences(id: string, preferences: Record<string, unknown>, fence: WriteFence): Promise<void> {
    await this.fenced(fence, (sql) => sql`update users set preferences = ${sql.json(preferences as never)}, updated_at = now() where id = ${id}`);
  }

  async updatePasswordHash(id: string, previous: string, next: string): Promise<void> {
    await this.sql`update users set password_hash = ${next}, updated_at = now() where id = ${id} and password_hash = ${previous}`.catch(rethrow);
  }

  /** Absent fields stay as they are. Throws `UnknownTierError` for a tier not in `tiers`. */
  async updateAdmin(id: string, patch: { tier?: string; blocked?: boolean; overrides?: unknown[] }, fence: WriteFence): Promise<void> {
    if (patch.tier === undefined && patch.blocked === undefined && patch.overrides === undefined) return;
    await this.fenced(
      fence,
      (sql) => sql`
        update users set
          tier = coalesce(${patch.tier ?? null}::text, tier),
          blocked = coalesce(${patch.blocked ?? null}::boolean, blocked),
          overrides = coalesce(${patch.overrides === undefined ? null : sql.json(patch.overrides as never)}::jsonb, overrides),
          updated_at = now()
        where id = ${id}`,
      patch.tier,
    );
  }

  async insertSession(s: SessionRow, fence: WriteFence): Promise<void> {
    await this.fenced(
      fence,
      (sql) => sql`
        insert into sessions (id, user_id, device_name, device_type, ip, user_agent, created_at, expires_at, last_active_at)
        values (${s.id}, ${s.userId}, ${s.deviceName}, ${s.deviceType}, ${s.ip}, ${s.userAgent}, ${s.createdAt}, ${s.expiresAt}, ${s.lastActiveAt})`,
    );
  }

  /** Revokes those of `ids` that are the user's and still live; returns how many. */
  async revokeSessions(userId: string, ids: string[], fence: WriteFence): Promise<number> {
    if (ids.length === 0) return 0;
    const rows = await this.fenced(
      fence,
      (sql) => sql`
        update sessions set revoked_at = now()
        where user_id = ${userId} and id = any(${sql.array(ids)}::text[]) and revoked_at is null
        returning id`,
    );
    return rows.length;
  }

  /** A new key: it carries a MAC (`signed`), as every key issued since migrations/004 does. */
  async insertApiKey(k: ApiKeyRow, fence: WriteFence): Promise<void> {
    await this.fenced(
      fence,
      (sql) => sql`
        insert into api_keys (id, user_id, prefix, hash, name, scopes, created_at, expires_at, last_used_at, signed)
        values (${k.id}, ${k.userId}, ${k.prefix}, ${k.hash}, ${k.name}, ${sql.array(k.scopes)}::text[],
                ${k.createdAt}, ${k.expiresAt}, ${k.lastUsedAt}, true)`,
    );
  }

  /** Soft delete; false if the key is not the user's or is already deleted. */
  async deleteApiKey(userId: string, id: string, fence: WriteFence): Promise<boolean> {
    const rows = await this.fenced(
      fence,
      (sql) => sql`
        update api_keys set deleted_at = now() where user_id = ${userId} and id = ${id} and deleted_at is null returning id`,
    );
    return rows.length > 0;
  }

  /**
   * Runs a written-through change only under its shard's current epoch: one transaction that
   * first locks the shard's fence row FOR SHARE, in the same order as everything else that
   * locks fence rows, and compares the epoch. A claim that committed first is seen, and the
   * change is refused (`StaleEpochError`) with nothing written. A claim that comes later
   * waits for this transaction to end, and its node loads the user only after the claim, so
   * it sees the change. `tier`: the tier the change names, for `UnknownTierError`.
   */
  private async fenced<T>(fence: WriteFence, write: (sql: postgres.TransactionSql) => Promise<T>, tier?: string): Promise<T> {
    try {
      return (await this.sql.begin(async (sql) => {
        const [row] = await sql<{ epoch: number }[]>`select epoch from shard_fence where shard = ${fence.shard} for share`;
        const current = row?.epoch ?? null;
        if (current !== fence.epoch) throw new StaleEpochError(fence.shard, fence.epoch, current);
        return write(sql);
      })) as T;
    } catch (error) {
      throw translate(error, tier);
    }
  }

  async listTiers(): Promise<TierRow[]> {
    const rows = await this.sql<{ name: string; limits: unknown[]; fail_open: boolean; updated_at: Date }[]>`
      select name, limits, fail_open, updated_at from tiers order by name`.catch(rethrow);
    return rows.map((row) => ({ name: row.name, limits: row.limits, failOpen: row.fail_open, updatedAt: row.updated_at }));
  }

  async upsertTier(tier: Omit<TierRow, 'updatedAt'>): Promise<TierRow> {
    // clock_timestamp, not now(): two upserts in one transaction still get distinct times.
    const [row] = await this.sql<{ updated_at: Date }[]>`
      insert into tiers (name, limits, fail_open, updated_at)
      values (${tier.name}, ${this.sql.json(tier.limits as never)}, ${tier.failOpen}, clock_timestamp())
      on conflict (name) do update set limits = excluded.limits, fail_open = excluded.fail_open, updated_at = excluded.updated_at
      returning updated_at`.catch(rethrow);
    return { ...tier, updatedAt: row!.updated_at };
  }

  async loadState(entityKey: string, shard: number): Promise<FencedLoad<unknown>> {
    this.loads.state++;
    const copies = this.replica?.read([entityKey]);
    const { fenceEpoch, ...written } = await actorState.loadState(this.sql, entityKey, shard).catch(rethrow);
    const found = copies === undefined ? null : await copies;
    const { state, seq, unwritten } = this.newestState(written, found?.[0] ?? null, fenceEpoch);
    return { found: state, fenceEpoch, seq, unwritten };
  }

  /**
   * The newer of the row's state and the replica's copy (replica.ts), counted by where it
   * came from; `unwritten` when it is the replica's, which Postgres does not have yet.
   */
  private newestState(written: WrittenState, copy: ReplicaCopy | null, fenceEpoch: number | null): NewestState {
    if (this.replica === null) return { state: written.state, seq: written.seq, unwritten: false };
    const chosen = chooseCopy(written, copy, fenceEpoch);
    this.replica.chosen(chosen.source);
    return { state: chosen.state, seq: chosen.seq, unwritten: chosen.source === 'redis' };
  }

  fenceEpochs(): Promise<Map<number, number>> {
    return actorState.fenceEpochs(this.sql).catch(rethrow);
  }

  /** Bumps the shards' epochs in the fence, and then in the replica's (replica.ts), before any is served. */
  async claimShards(shards: number[], owner: string): Promise<Map<number, number>> {
    const epochs = await actorState.claimShards(this.sql, shards, owner).catch(rethrow);
    await this.replica?.fence(epochs);
    return epochs;
  }

  // The write-behind statements throw the driver's own errors: the flusher tells an
  // unreachable database from a row that cannot be written (errors.ts).

  /**
   * Before a write that adds closed hours to the usage history, the months they fall in get
   * their partitions, once per month per process. Should a partition have gone since (dropped
   * past retention by another node), the write makes it again and is sent once more.
   */
  async writeStates(rows: readonly EncodedStateRow[]): Promise<{ written: number; fenced: string[] }> {
    const months = actorState.usageMonths(rows).filter((month) => !this.partitioned.has(month.getTime()));
    for (const month of months) await this.ensurePartition(month);
    try {
      return await actorState.writeStates(this.sql, rows);
    } catch (error) {
      if (sqlState(error) !== SQLSTATE.checkViolation || !/no partition/i.test(String((error as Error).message))) throw error;
      for (const month of actorState.usageMonths(rows)) await this.ensurePartition(month);
      return actorState.writeStates(this.sql, rows);
    }
  }

  /** Months whose usage partition this process has made sure of. */
  private readonly partitioned = new Set<number>();

  private async ensurePartition(month: Date): Promise<void> {
    await usage.ensureUsagePartitions(this.sql, month, 1);
    this.partitioned.add(month.getTime());
  }

  // ---- usage history -----------------------------------------------------------------

  queryUsage(query: UsageQuery): ReturnType<typeof usage.queryUsage> {
    return this.boundedRead((sql) => usage.queryUsage(sql, query));
  }

  /** The month's export, a page of lines at a time (usage.ts); a database error surfaces as `StorageUnavailableError`. */
  async *exportUsage(month: Date): AsyncGenerator<UsageExportLine[]> {
    try {
      yield* usage.exportUsage(this.sql, month);
    } catch (error) {
      throw translate(error, undefined);
    }
  }

  countUsers(): Promise<number> {
    return usage.countUsers(this.sql).catch(rethrow);
  }

  topUsers(month: Date, limit: number): ReturnType<typeof usage.topUsers> {
    return this.boundedRead((sql) => usage.topUsers(sql, month, limit));
  }

  /**
   * A read of the usage history that may not run longer than USAGE_READ_TIMEOUT_MS: one that
   * would is cancelled by Postgres and refused (InvalidRequestError), so a query over a huge
   * range cannot hold a connection (the embedded database has one) for long.
   */
  private async boundedRead<T>(read: (sql: Sql) => Promise<T>): Promise<T> {
    try {
      return (await this.sql.begin(async (sql) => {
        await sql`select set_config('statement_timeout', ${String(USAGE_READ_TIMEOUT_MS)}, true)`;
        return read(sql as unknown as Sql);
      })) as T;
    } catch (error) {
      if (sqlState(error) === SQLSTATE.queryCanceled) {
        // The cancellation is the whole story: the caller asked for more than a read may cost.
        throw new InvalidRequestError(`the usage query ran past ${USAGE_READ_TIMEOUT_MS / 1000} s: ask for a shorter range, or fewer groups`);
      }
      throw translate(error, undefined);
    }
  }

  /**
   * Makes the partitions of the current month and the next two, and drops those that ended
   * before `retainFrom`. Idempotent: any node may run it, and nodes running it at once take
   * turns. Returns what it did.
   */
  async maintainUsagePartitions(now: Date, retainFrom: Date): Promise<{ made: number; dropped: string[] }> {
    const made = await usage.ensureUsagePartitions(this.sql, now, 3);
    const dropped = await usage.dropUsagePartitions(this.sql, retainFrom);
    if (dropped.length > 0) this.partitioned.clear();
    return { made, dropped };
  }

  touchActivity(sessions: ActivityTouch[], keys: ActivityTouch[]): Promise<void> {
    return actorState.touchActivity(this.sql, sessions, keys);
  }

  deleteExpiredStates(limit: number): Promise<number> {
    return actorState.deleteExpiredStates(this.sql, limit);
  }
}

function toUser(row: UserColumns): UserRow {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    tier: row.tier,
    passwordHash: row.password_hash,
    preferences: row.preferences,
    blocked: row.blocked,
    overrides: row.overrides,
    createdAt: row.created_at,
  };
}

/** The domain error for a constraint a user's input can violate or an unreachable database; anything else as it was. */
function translate(error: unknown, tier: string | undefined): unknown {
  if (isUnreachable(error)) return new StorageUnavailableError({ cause: error });
  const code = sqlState(error);
  if (code === SQLSTATE.uniqueViolation && (error as { constraint_name?: string }).constraint_name === EMAIL_INDEX) {
    return new EmailTakenError({ cause: error });
  }
  if (code === SQLSTATE.foreignKeyViolation && tier !== undefined) return new UnknownTierError(tier, { cause: error });
  return error;
}

function rethrow(error: unknown): never {
  throw translate(error, undefined);
}

/** A read of the usage history is cancelled past this. */
const USAGE_READ_TIMEOUT_MS = 10_000;

/** Users loaded together in one statement, at most. */
const LOAD_BATCH = 500;
/** Load statements out at once (see `sendLoads`). */
const LOAD_STATEMENTS = 2;

interface PendingLoad {
  id: string;
  shard: number;
  resolve(loaded: FencedLoad<LoadedUser>): void;
  reject(error: unknown): void;
}

/** An actor's state as its row holds it (state null: no row). */
interface WrittenState {
  state: unknown | null;
  epoch: number;
  seq: number;
}

interface NewestState {
  state: unknown | null;
  seq: number;
  unwritten: boolean;
}

/** A row of the batched user load. */
type LoadedUserColumns = Partial<UserColumns> & {
  ord: number;
  fence_epoch: number | null;
  sessions: Jsonified<SessionRow>[];
  keys: Jsonified<ApiKeyRow>[];
  /** The state as stored since migration 010 (MessagePack), else null. */
  state_body: Uint8Array | null;
  /** The state of a row not written since migration 010 (JSON), else null. */
  state: unknown | null;
  state_epoch: string | null;
  state_seq: string | null;
};

function toLoadedUser(row: LoadedUserColumns, newest: NewestState | null): FencedLoad<LoadedUser> {
  const fenceEpoch = row.fence_epoch ?? null;
  if (newest === null || row.id === null || row.id === undefined) return { found: null, fenceEpoch };
  return {
    fenceEpoch,
    seq: newest.seq,
    unwritten: newest.unwritten,
    found: {
      user: toUser(row as UserColumns),
      sessions: row.sessions.map((s) => ({
        ...s,
        createdAt: toDate(s.createdAt),
        expiresAt: toDate(s.expiresAt),
        lastActiveAt: toDate(s.lastActiveAt),
      })),
      keys: row.keys.map((k) => ({
        ...k,
        createdAt: toDate(k.createdAt),
        expiresAt: toDateOrNull(k.expiresAt),
        lastUsedAt: toDateOrNull(k.lastUsedAt),
      })),
      state: newest.state,
    },
  };
}
