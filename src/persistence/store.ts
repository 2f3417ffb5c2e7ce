/**
 * Every query Tally makes. Written-through rows (users, sessions, keys, tiers) commit
 * before a request answers; actor state arrives in batches from the write-behind loop and
 * is fenced by shard epoch.
 */
import { EmailTakenError, UnknownTierError, type ApiKeyRecord, type LoadedUser, type PersistedState, type SessionRecord, type UserRecord } from '../shards/index.js';
import type { Sql } from './database.js';

export interface TierRow {
  name: string;
  limits: unknown[];
  failOpen: boolean;
  updatedAt: Date;
}

const UNIQUE_VIOLATION = '23505';
const FOREIGN_KEY_VIOLATION = '23503';

function code(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}

/** Maps constraint violations to domain errors; rethrows anything else. */
function translate(error: unknown, tier: string | undefined): never {
  if (code(error) === UNIQUE_VIOLATION) throw new EmailTakenError({ cause: error });
  if (code(error) === FOREIGN_KEY_VIOLATION && tier !== undefined) throw new UnknownTierError(tier, { cause: error });
  throw error;
}

const date = (value: string | Date | null): Date | null => (value === null ? null : new Date(value));

export class Store {
  constructor(private readonly sql: Sql) {}

  async insertUser(user: Omit<UserRecord, 'createdAt'>): Promise<UserRecord> {
    try {
      const [row] = await this.sql<{ created_at: Date }[]>`
        insert into users (id, email, name, tier, password_hash, preferences, blocked, overrides)
        values (${user.id}, ${user.email}, ${user.name}, ${user.tier}, ${user.passwordHash},
                ${this.sql.json(user.preferences as never)}, ${user.blocked}, ${this.sql.json(user.overrides as never)})
        returning created_at`;
      return { ...user, createdAt: row!.created_at };
    } catch (error) {
      translate(error, user.tier);
    }
  }

  /** The user with live sessions, undeleted keys and written-behind state, in one round trip. */
  async loadUser(id: string): Promise<LoadedUser | null> {
    const [row] = await this.sql<
      {
        id: string;
        email: string;
        name: string | null;
        tier: string;
        password_hash: string;
        preferences: Record<string, unknown>;
        blocked: boolean;
        overrides: unknown[];
        created_at: Date;
        sessions: Record<string, string | null>[];
        keys: (Record<string, string | null> & { scopes: string[] })[];
        state: unknown | null;
      }[]
    >`
      select u.id, u.email, u.name, u.tier, u.password_hash, u.preferences, u.blocked, u.overrides, u.created_at,
        (select coalesce(json_agg(s), '[]') from sessions s
           where s.user_id = u.id and s.revoked_at is null and s.expires_at > now()) as sessions,
        (select coalesce(json_agg(k), '[]') from api_keys k
           where k.user_id = u.id and k.deleted_at is null) as keys,
        (select a.state from actor_state a where a.entity_key = u.id) as state
      from users u where u.id = ${id}`;
    if (row === undefined) return null;
    return {
      user: {
        id: row.id,
        email: row.email,
        name: row.name,
        tier: row.tier,
        passwordHash: row.password_hash,
        preferences: row.preferences,
        blocked: row.blocked,
        overrides: row.overrides,
        createdAt: row.created_at,
      },
      sessions: row.sessions.map((s) => ({
        id: s.id!,
        userId: s.user_id!,
        deviceName: s.device_name ?? null,
        deviceType: s.device_type ?? null,
        ip: s.ip ?? null,
        userAgent: s.user_agent ?? null,
        createdAt: date(s.created_at!)!,
        expiresAt: date(s.expires_at!)!,
        lastActiveAt: date(s.last_active_at!)!,
      })),
      keys: row.keys.map((k) => ({
        id: k.id!,
        userId: k.user_id!,
        prefix: k.prefix!,
        hash: k.hash!,
        name: k.name ?? null,
        scopes: k.scopes,
        createdAt: date(k.created_at!)!,
        expiresAt: date(k.expires_at ?? null),
        lastUsedAt: date(k.last_used_at ?? null),
      })),
      state: row.state,
    };
  }

  async findLogin(email: string): Promise<{ id: string; passwordHash: string } | null> {
    const [row] = await this.sql<{ id: string; password_hash: string }[]>`
      select id, password_hash from users where lower(email) = lower(${email})`;
    return row === undefined ? null : { id: row.id, passwordHash: row.password_hash };
  }

  async updateProfile(id: string, patch: { name?: string | null; email?: string }): Promise<void> {
    try {
      await this.sql`
        update users set
          name = case when ${patch.name !== undefined} then ${patch.name ?? null} else name end,
          email = coalesce(${patch.email ?? null}, email),
          updated_at = now()
        where id = ${id}`;
    } catch (error) {
      translate(error, undefined);
    }
  }

  async updatePreferences(id: string, preferences: Record<string, unknown>): Promise<void> {
    await this.sql`update users set preferences = ${this.sql.json(preferences as never)}, updated_at = now() where id = ${id}`;
  }

  async updateAdmin(id: string, patch: { tier?: string; blocked?: boolean; overrides?: unknown[] }): Promise<void> {
    try {
      await this.sql`
        update users set
          tier = coalesce(${patch.tier ?? null}, tier),
          blocked = coalesce(${patch.blocked ?? null}, blocked),
          overrides = coalesce(${patch.overrides === undefined ? null : this.sql.json(patch.overrides as never)}::jsonb, overrides),
          updated_at = now()
        where id = ${id}`;
    } catch (error) {
      translate(error, patch.tier);
    }
  }

  async insertSession(s: SessionRecord): Promise<void> {
    await this.sql`
      insert into sessions (id, user_id, device_name, device_type, ip, user_agent, created_at, expires_at, last_active_at)
      values (${s.id}, ${s.userId}, ${s.deviceName}, ${s.deviceType}, ${s.ip}, ${s.userAgent}, ${s.createdAt}, ${s.expiresAt}, ${s.lastActiveAt})`;
  }

  async revokeSessions(userId: string, ids: string[]): Promise<number> {
    const rows = await this.sql`
      update sessions set revoked_at = now()
      where user_id = ${userId} and id = any(${this.sql.array(ids)}) and revoked_at is null
      returning id`;
    return rows.length;
  }

  async insertApiKey(k: ApiKeyRecord): Promise<void> {
    await this.sql`
      insert into api_keys (id, user_id, prefix, hash, name, scopes, created_at, expires_at)
      values (${k.id}, ${k.userId}, ${k.prefix}, ${k.hash}, ${k.name}, ${this.sql.array(k.scopes)}, ${k.createdAt}, ${k.expiresAt})`;
  }

  async deleteApiKey(userId: string, id: string): Promise<boolean> {
    const rows = await this.sql`
      update api_keys set deleted_at = now() where user_id = ${userId} and id = ${id} and deleted_at is null returning id`;
    return rows.length > 0;
  }

  async listTiers(): Promise<TierRow[]> {
    const rows = await this.sql<{ name: string; limits: unknown[]; fail_open: boolean; updated_at: Date }[]>`
      select name, limits, fail_open, updated_at from tiers order by name`;
    return rows.map((row) => ({ name: row.name, limits: row.limits, failOpen: row.fail_open, updatedAt: row.updated_at }));
  }

  async upsertTier(tier: Omit<TierRow, 'updatedAt'>): Promise<TierRow> {
    const [row] = await this.sql<{ updated_at: Date }[]>`
      insert into tiers (name, limits, fail_open, updated_at)
      values (${tier.name}, ${this.sql.json(tier.limits as never)}, ${tier.failOpen}, clock_timestamp())
      on conflict (name) do update set limits = excluded.limits, fail_open = excluded.fail_open, updated_at = excluded.updated_at
      returning updated_at`;
    return { ...tier, updatedAt: row!.updated_at };
  }

  async loadState(entityKey: string): Promise<unknown | null> {
    const [row] = await this.sql<{ state: unknown }[]>`select state from actor_state where entity_key = ${entityKey}`;
    return row === undefined ? null : row.state;
  }

  /** Takes shards over: bumps each one's epoch (creating it at 1) and returns shard → epoch. */
  async claimShards(shards: number[], owner: string): Promise<Map<number, number>> {
    const rows = await this.sql<{ shard: number; epoch: number }[]>`
      insert into shard_fence (shard, epoch, owner, updated_at)
      select s, 1, ${owner}, now() from unnest(${this.sql.array(shards)}::int[]) as s
      on conflict (shard) do update set epoch = shard_fence.epoch + 1, owner = excluded.owner, updated_at = now()
      returning shard, epoch`;
    return new Map(rows.map((row) => [row.shard, Number(row.epoch)]));
  }

  /**
   * Writes actor states in one statement. Rows whose epoch is no longer their shard's are
   * skipped and returned as `fenced`; the trigger on actor_state refuses any that slip past.
   */
  async writeStates(rows: PersistedState[]): Promise<{ written: number; fenced: string[] }> {
    if (rows.length === 0) return { written: 0, fenced: [] };
    const input = rows.map((row) => ({ entity_key: row.entityKey, shard: row.shard, epoch: row.epoch, state: row.state }));
    const result = await this.sql<{ entity_key: string; written: boolean }[]>`
      with input as (
        select * from jsonb_to_recordset(${this.sql.json(input as never)}) as r(entity_key text, shard int, epoch bigint, state jsonb)
      ), current as (
        select i.* from input i join shard_fence f on f.shard = i.shard and f.epoch = i.epoch
      ), written as (
        insert into actor_state (entity_key, shard, epoch, state, updated_at)
        select entity_key, shard, epoch, state, now() from current
        on conflict (entity_key) do update
          set shard = excluded.shard, epoch = excluded.epoch, state = excluded.state, updated_at = excluded.updated_at
        returning entity_key
      )
      select i.entity_key, (w.entity_key is not null) as written from input i left join written w using (entity_key)`;
    const fenced = result.filter((row) => !row.written).map((row) => row.entity_key);
    return { written: result.length - fenced.length, fenced };
  }

  /** Records when sessions and keys were last used; never moves a time backwards. */
  async touchActivity(sessions: { id: string; at: Date }[], keys: { id: string; at: Date }[]): Promise<void> {
    if (sessions.length > 0) {
      await this.sql`
        update sessions s set last_active_at = greatest(s.last_active_at, v.at)
        from jsonb_to_recordset(${this.sql.json(sessions.map((t) => ({ id: t.id, at: t.at.toISOString() })) as never)}) as v(id text, at timestamptz)
        where s.id = v.id`;
    }
    if (keys.length > 0) {
      await this.sql`
        update api_keys k set last_used_at = greatest(coalesce(k.last_used_at, v.at), v.at)
        from jsonb_to_recordset(${this.sql.json(keys.map((t) => ({ id: t.id, at: t.at.toISOString() })) as never)}) as v(id text, at timestamptz)
        where k.id = v.id`;
    }
  }
}
