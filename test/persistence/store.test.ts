/**
 * Every Store query, on a real Postgres and on embedded PGlite: the same SQL must behave
 * the same on both. Written-through changes carry a shard epoch, and are refused once the
 * fence has moved past it.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeStateRow } from '../../src/persistence/actorState.js';
import type { ActorStateRow } from '../../src/persistence/index.js';
import { type ApiKeyRow, EmailTakenError, type SessionRow, Store, UnknownTierError, type UserRow } from '../../src/persistence/index.js';
import { OwnerUnavailableError, StaleEpochError, type WriteFence } from '../../src/shards/index.js';
import { DATABASE_KINDS, openTestDatabase, type TestDatabase } from '../support/database.js';

const encode = (rows: ActorStateRow[]) => rows.map(encodeStateRow);
const foundState = async (store: Store, key: string) => (await store.loadState(key, 0)).found;
const foundUser = async (store: Store, id: string) => (await store.loadUser(id, 0)).found;

const HOUR = 3_600_000;
const unique = () => randomBytes(6).toString('hex');

function newUser(overrides: Partial<UserRow> = {}): Omit<UserRow, 'createdAt'> {
  const id = `usr_${unique()}`;
  return {
    id,
    email: `${id}@Example.com`,
    name: 'Ada',
    tier: 'free',
    passwordHash: 'hash',
    preferences: { theme: 'dark', nested: { a: [1, 2] } },
    blocked: false,
    overrides: [],
    ...overrides,
  };
}

function newSession(userId: string, overrides: Partial<SessionRow> = {}): SessionRow {
  const now = Date.now();
  return {
    id: `ses_${unique()}`,
    userId,
    deviceName: 'laptop',
    deviceType: 'desktop',
    ip: '192.0.2.1',
    userAgent: 'test',
    createdAt: new Date(now),
    expiresAt: new Date(now + HOUR),
    lastActiveAt: new Date(now),
    ...overrides,
  };
}

function newKey(userId: string, overrides: Partial<ApiKeyRow> = {}): ApiKeyRow {
  return {
    id: `key_${unique()}`,
    userId,
    prefix: 'tk_abc',
    hash: `hash_${unique()}`,
    name: 'ci',
    scopes: ['quota', 'profile:read'],
    createdAt: new Date(Date.now() - 1000),
    expiresAt: null,
    lastUsedAt: null,
    ...overrides,
  };
}

describe.each(DATABASE_KINDS)('Store on %s', (kind) => {
  let db: TestDatabase;
  let store: Store;
  /** The shard and epoch the written-through changes of these tests are made under. */
  let fence: WriteFence;

  beforeAll(async () => {
    db = await openTestDatabase(kind);
    store = new Store(db.database.sql);
    const [epoch] = (await store.claimShards([510], 'node-writes')).values();
    fence = { shard: 510, epoch: epoch! };
  });
  afterAll(() => db?.cleanup());

  describe('users', () => {
    it('inserts a user and returns it with its creation time', async () => {
      const input = newUser();
      const before = Date.now();
      const user = await store.insertUser(input);
      expect(user).toEqual({ ...input, createdAt: expect.any(Date) });
      expect(user.createdAt.getTime()).toBeGreaterThanOrEqual(before - 5_000);
    });

    it('refuses an email that differs only in letter case', async () => {
      const first = await store.insertUser(newUser());
      const error = await store.insertUser(newUser({ email: first.email.toUpperCase() })).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EmailTakenError);
      expect((error as EmailTakenError).cause).toMatchObject({ code: '23505' });
    });

    it('refuses an unknown tier', async () => {
      await expect(store.insertUser(newUser({ tier: 'platinum' }))).rejects.toBeInstanceOf(UnknownTierError);
    });

    it('does not mistake a duplicate id for a taken email', async () => {
      const first = await store.insertUser(newUser());
      const error = await store.insertUser(newUser({ id: first.id })).catch((e: unknown) => e);
      expect(error).not.toBeInstanceOf(EmailTakenError);
      expect(error).toMatchObject({ code: '23505' });
    });

    it('finds a login by email in any letter case', async () => {
      const user = await store.insertUser(newUser());
      expect(await store.findLogin(user.email.toLowerCase())).toEqual({ id: user.id, email: user.email, passwordHash: 'hash' });
      expect(await store.findLogin(user.email.toUpperCase())).toEqual({ id: user.id, email: user.email, passwordHash: 'hash' });
      expect(await store.findLogin(`nobody-${unique()}@example.com`)).toBeNull();
    });

    it('updates the profile field by field', async () => {
      const user = await store.insertUser(newUser());
      await store.updateProfile(user.id, { name: 'Grace' }, fence);
      expect((await foundUser(store, user.id))!.user).toMatchObject({ name: 'Grace', email: user.email });
      const email = `moved-${unique()}@example.com`;
      await store.updateProfile(user.id, { email }, fence);
      expect((await foundUser(store, user.id))!.user).toMatchObject({ name: 'Grace', email });
      await store.updateProfile(user.id, { name: null }, fence);
      expect((await foundUser(store, user.id))!.user).toMatchObject({ name: null, email });
      await store.updateProfile(user.id, {}, fence);
      expect(await store.findLogin(email)).toMatchObject({ id: user.id });
    });

    it('refuses a profile email another user has, in any letter case', async () => {
      const a = await store.insertUser(newUser());
      const b = await store.insertUser(newUser());
      await expect(store.updateProfile(b.id, { email: a.email.toUpperCase() }, fence)).rejects.toBeInstanceOf(EmailTakenError);
      // Changing the case of one's own email is fine.
      await store.updateProfile(a.id, { email: a.email.toUpperCase() }, fence);
    });

    it('replaces preferences', async () => {
      const user = await store.insertUser(newUser());
      await store.updatePreferences(user.id, { language: 'fr', list: [1, 'two', null], deep: { x: { y: true } } }, fence);
      expect((await foundUser(store, user.id))!.user.preferences).toEqual({ language: 'fr', list: [1, 'two', null], deep: { x: { y: true } } });
    });

    it('applies admin changes field by field and refuses an unknown tier', async () => {
      const user = await store.insertUser(newUser());
      await store.updateAdmin(user.id, { tier: 'pro' }, fence);
      await store.updateAdmin(user.id, { blocked: true }, fence);
      const overrides = [{ name: 'tokens', kind: 'budget', limit: 5, period: 'day' }];
      await store.updateAdmin(user.id, { overrides }, fence);
      expect((await foundUser(store, user.id))!.user).toMatchObject({ tier: 'pro', blocked: true, overrides });
      await store.updateAdmin(user.id, { blocked: false, overrides: [] }, fence);
      expect((await foundUser(store, user.id))!.user).toMatchObject({ tier: 'pro', blocked: false, overrides: [] });
      await expect(store.updateAdmin(user.id, { tier: 'platinum' }, fence)).rejects.toBeInstanceOf(UnknownTierError);
    });

    it('returns null for an unknown user', async () => {
      expect(await foundUser(store, `usr_${unique()}`)).toBeNull();
    });
  });

  describe('loading a user', () => {
    it('returns live sessions, undeleted keys and the written-behind state', async () => {
      const user = await store.insertUser(newUser());
      const live = newSession(user.id, { createdAt: new Date(Date.now() - 2000) });
      const anonymous = newSession(user.id, { deviceName: null, deviceType: null, ip: null, userAgent: null });
      const expired = newSession(user.id, { expiresAt: new Date(Date.now() - 1000) });
      const revoked = newSession(user.id);
      for (const session of [live, anonymous, expired, revoked]) await store.insertSession(session, fence);
      expect(await store.revokeSessions(user.id, [revoked.id], fence)).toBe(1);

      const key = newKey(user.id, { expiresAt: new Date(Date.now() + HOUR) });
      const bare = newKey(user.id, { name: null, scopes: [], createdAt: new Date() });
      const deleted = newKey(user.id);
      for (const k of [key, bare, deleted]) await store.insertApiKey(k, fence);
      expect(await store.deleteApiKey(user.id, deleted.id, fence)).toBe(true);

      const [epoch] = (await store.claimShards([500], 'node-load')).values();
      await store.writeStates(encode([{ entityKey: user.id, shard: 500, epoch: epoch!, state: { limits: { requests: { tat: 12.5 } } } }]));

      const loaded = await foundUser(store, user.id);
      expect(loaded).not.toBeNull();
      expect(loaded!.sessions).toEqual([live, anonymous]);
      expect(loaded!.keys).toEqual([key, bare]);
      expect(loaded!.state).toEqual({ limits: { requests: { tat: 12.5 } } });
      expect(loaded!.sessions[0]!.createdAt).toBeInstanceOf(Date);
    });

    it('reads a row written before states were stored as MessagePack, and moves it to `body` at its next write', async () => {
      const user = await store.insertUser(newUser());
      const [epoch] = (await store.claimShards([501], 'node-legacy')).values();
      // As a node before migration 010 wrote it: JSON in `state`, no `body`.
      await db.database
        .sql`insert into actor_state (entity_key, shard, epoch, seq, state) values (${user.id}, 501, ${epoch!}, 3, ${db.database.sql.json({ v: 1, limits: { tokens: { used: 7 } } })})`;
      expect((await foundUser(store, user.id))!.state).toEqual({ v: 1, limits: { tokens: { used: 7 } } });
      expect((await store.loadState(user.id, 501)).found).toEqual({ v: 1, limits: { tokens: { used: 7 } } });

      await store.writeStates(encode([{ entityKey: user.id, shard: 501, epoch: epoch!, seq: 4, state: { v: 1, limits: { tokens: { used: 8 } } } }]));
      const [row] = await db.database.sql<{ body: Uint8Array | null; state: unknown }[]>`select body, state from actor_state where entity_key = ${user.id}`;
      expect(row!.state).toBeNull();
      expect(row!.body).not.toBeNull();
      expect((await foundUser(store, user.id))!.state).toEqual({ v: 1, limits: { tokens: { used: 8 } } });
    });

    it('has empty lists and null state for a new user', async () => {
      const user = await store.insertUser(newUser());
      expect(await foundUser(store, user.id)).toEqual({ user, sessions: [], keys: [], state: null });
    });
  });

  describe('sessions and keys', () => {
    it('revokes only the user’s own live sessions', async () => {
      const a = await store.insertUser(newUser());
      const b = await store.insertUser(newUser());
      const mine = newSession(a.id);
      const theirs = newSession(b.id);
      await store.insertSession(mine, fence);
      await store.insertSession(theirs, fence);
      expect(await store.revokeSessions(a.id, [mine.id, theirs.id], fence)).toBe(1);
      expect(await store.revokeSessions(a.id, [mine.id], fence)).toBe(0);
      expect(await store.revokeSessions(a.id, [], fence)).toBe(0);
      expect((await foundUser(store, b.id))!.sessions.map((s) => s.id)).toEqual([theirs.id]);
    });

    it('soft-deletes only the user’s own key, once', async () => {
      const a = await store.insertUser(newUser());
      const b = await store.insertUser(newUser());
      const key = newKey(a.id);
      await store.insertApiKey(key, fence);
      expect(await store.deleteApiKey(b.id, key.id, fence)).toBe(false);
      expect(await store.deleteApiKey(a.id, key.id, fence)).toBe(true);
      expect(await store.deleteApiKey(a.id, key.id, fence)).toBe(false);
      const [row] = await db.database.sql<{ deleted_at: Date | null }[]>`select deleted_at from api_keys where id = ${key.id}`;
      expect(row!.deleted_at).toBeInstanceOf(Date);
    });

    it('moves activity times forward only, in one batch', async () => {
      const user = await store.insertUser(newUser());
      const t0 = new Date(Date.now() - 60_000);
      const session = newSession(user.id, { lastActiveAt: t0 });
      const key = newKey(user.id);
      await store.insertSession(session, fence);
      await store.insertApiKey(key, fence);
      const later = new Date(t0.getTime() + 30_000);
      const latest = new Date(t0.getTime() + 40_000);
      await store.touchActivity(
        [
          { id: session.id, at: latest },
          { id: session.id, at: later },
          { id: `ses_${unique()}`, at: later },
        ],
        [{ id: key.id, at: later }],
      );
      let loaded = await foundUser(store, user.id);
      expect(loaded!.sessions[0]!.lastActiveAt).toEqual(latest);
      expect(loaded!.keys[0]!.lastUsedAt).toEqual(later);
      await store.touchActivity([{ id: session.id, at: t0 }], [{ id: key.id, at: t0 }]);
      loaded = await foundUser(store, user.id);
      expect(loaded!.sessions[0]!.lastActiveAt).toEqual(latest);
      expect(loaded!.keys[0]!.lastUsedAt).toEqual(later);
      await store.touchActivity([], []);
    });

    it('writes a key’s or a session’s last use on its own page, touching no index, on pages written full', async () => {
      const user = await store.insertUser(newUser());
      // Enough of each for several pages; the first of them sits on a page others were written after.
      for (let i = 0; i < 120; i++) {
        await store.insertApiKey(newKey(user.id), fence);
        await store.insertSession(newSession(user.id), fence);
      }
      const sql = db.database.sql;
      const firstOf = async (table: 'api_keys' | 'sessions') =>
        (
          await sql<{ id: string }[]>`
          select id from ${sql(table)} where user_id = ${user.id} order by (ctid::text::point)[0], (ctid::text::point)[1] limit 1`
        )[0]!.id;
      const key = await firstOf('api_keys');
      const session = await firstOf('sessions');
      // Postgres counts heap-only updates as it makes them (with those of earlier
      // transactions of the connection whose counts it has not yet reported: hence the difference).
      const hot = await sql.begin(async (tx) => {
        const counts = async () => {
          const [row] = await tx<{ keys: string; sessions: string }[]>`
            select pg_stat_get_xact_tuples_hot_updated('api_keys'::regclass) as keys,
              pg_stat_get_xact_tuples_hot_updated('sessions'::regclass) as sessions`;
          return [Number(row!.keys), Number(row!.sessions)];
        };
        const before = await counts();
        await tx`update api_keys set last_used_at = now() where id = ${key}`;
        await tx`update sessions set last_active_at = now() where id = ${session}`;
        const after = await counts();
        return after.map((count, i) => count - before[i]!);
      });
      expect(hot).toEqual([1, 1]);
    });
  });

  describe('written-through changes under the fence', () => {
    it('refuses every change made under an epoch the fence has moved past, and changes nothing', async () => {
      const [epoch] = (await store.claimShards([511], 'node-a')).values();
      const before: WriteFence = { shard: 511, epoch: epoch! };
      const user = await store.insertUser(newUser());
      const session = newSession(user.id);
      const key = newKey(user.id);
      await store.insertSession(session, before);
      await store.insertApiKey(key, before);
      // Another node claims the shard: whatever this one still tries under the old epoch is refused.
      const [next] = (await store.claimShards([511], 'node-b')).values();
      const attempts: [string, () => Promise<unknown>][] = [
        ['revokeSessions', () => store.revokeSessions(user.id, [session.id], before)],
        ['deleteApiKey', () => store.deleteApiKey(user.id, key.id, before)],
        ['updateAdmin', () => store.updateAdmin(user.id, { blocked: true, tier: 'pro' }, before)],
        ['updateProfile', () => store.updateProfile(user.id, { name: 'Mallory' }, before)],
        ['updatePreferences', () => store.updatePreferences(user.id, { theme: 'light' }, before)],
        ['insertSession', () => store.insertSession(newSession(user.id), before)],
        ['insertApiKey', () => store.insertApiKey(newKey(user.id), before)],
      ];
      for (const [name, attempt] of attempts) {
        const error = await attempt().then(
          () => null,
          (e: unknown) => e,
        );
        expect(error, name).toBeInstanceOf(StaleEpochError);
        // A retryable 503 for the caller, like any owner that is not there.
        expect(error, name).toBeInstanceOf(OwnerUnavailableError);
        expect(error, name).toMatchObject({ shard: 511, epoch: before.epoch, fenceEpoch: next, retryAfterMs: 1000 });
      }
      const loaded = (await foundUser(store, user.id))!;
      expect(loaded.user).toMatchObject({ name: 'Ada', tier: 'free', blocked: false, preferences: user.preferences });
      expect(loaded.sessions.map((s) => s.id)).toEqual([session.id]);
      expect(loaded.keys.map((k) => k.id)).toEqual([key.id]);
      // Under the new epoch the same change is made.
      expect(await store.revokeSessions(user.id, [session.id], { shard: 511, epoch: next! })).toBe(1);
      // A shard nobody ever claimed has no epoch to write under.
      await expect(store.revokeSessions(user.id, [session.id], { shard: 1023, epoch: 1 })).rejects.toMatchObject({ fenceEpoch: null });
    });

    it('makes a claim that comes during a change wait for it: the claimer then reads the change', async () => {
      const [epoch] = (await store.claimShards([512], 'node-a')).values();
      const user = await store.insertUser(newUser());
      const session = newSession(user.id, { deviceName: `slow-${kind}` });
      await store.insertSession(session, { shard: 512, epoch: epoch! });
      // The revocation takes 300 ms inside its transaction.
      await db.database.sql.unsafe(`
        create or replace function slow_revocation() returns trigger language plpgsql as $$
        begin
          if new.revoked_at is not null and old.device_name like 'slow-%' then perform pg_sleep(0.3); end if;
          return new;
        end $$`);
      await db.database.sql.unsafe('create or replace trigger slow_revocation before update on sessions for each row execute function slow_revocation()');
      try {
        const events: string[] = [];
        const revoked = store.revokeSessions(user.id, [session.id], { shard: 512, epoch: epoch! }).then((count) => {
          events.push('revoked');
          return count;
        });
        await new Promise((resolve) => setTimeout(resolve, 100));
        const claimed = store.claimShards([512], 'node-b').then(() => events.push('claimed'));
        expect(await revoked).toBe(1);
        await claimed;
        expect(events).toEqual(['revoked', 'claimed']);
        expect((await foundUser(store, user.id))!.sessions).toEqual([]);
      } finally {
        await db.database.sql.unsafe('drop trigger slow_revocation on sessions');
      }
    });
  });

  describe('tiers', () => {
    it('lists the seeded tiers', async () => {
      const tiers = await store.listTiers();
      const byName = new Map(tiers.map((tier) => [tier.name, tier]));
      expect([...byName.keys()]).toEqual(expect.arrayContaining(['anonymous', 'enterprise', 'free', 'pro']));
      expect(byName.get('free')).toMatchObject({
        failOpen: true,
        limits: [
          { name: 'requests', kind: 'rate', limit: 60, period_ms: 60000, burst: 20 },
          { name: 'tokens', kind: 'budget', limit: 100000, period: 'month', resource: 'tokens' },
        ],
      });
      expect(byName.get('anonymous')).toMatchObject({ failOpen: false, limits: [{ name: 'requests', kind: 'rate', limit: 60, period_ms: 60000, burst: 20 }] });
      expect(byName.get('pro')!.limits).toEqual([
        { name: 'requests', kind: 'rate', limit: 600, period_ms: 60000, burst: 50 },
        { name: 'tokens', kind: 'budget', limit: 2000000, period: 'month', resource: 'tokens' },
      ]);
      expect(byName.get('enterprise')!.limits).toEqual([
        { name: 'requests', kind: 'rate', limit: 6000, period_ms: 60000, burst: 500 },
        { name: 'tokens', kind: 'budget', limit: 50000000, period: 'month', resource: 'tokens' },
      ]);
      expect(byName.get('pro')!.updatedAt).toBeInstanceOf(Date);
    });

    it('creates and replaces a tier, advancing its time', async () => {
      const name = `team-${unique()}`;
      const created = await store.upsertTier({ name, limits: [{ name: 'requests', kind: 'rate', limit: 1, period_ms: 1000 }], failOpen: false });
      const replaced = await store.upsertTier({ name, limits: [], failOpen: true });
      expect(replaced).toMatchObject({ name, limits: [], failOpen: true });
      expect(replaced.updatedAt.getTime()).toBeGreaterThanOrEqual(created.updatedAt.getTime());
      expect((await store.listTiers()).find((tier) => tier.name === name)).toEqual(replaced);
      // A user may now be moved onto it.
      const user = await store.insertUser(newUser());
      await store.updateAdmin(user.id, { tier: name }, fence);
    });
  });

  describe('actor state', () => {
    it('loads what was written, and null for an unknown key', async () => {
      const [epoch] = (await store.claimShards([501], 'node-state')).values();
      await store.writeStates(encode([{ entityKey: 'limiter:login-ip:192.0.2.9', shard: 501, epoch: epoch!, state: { hits: [1, 2, 3] } }]));
      expect(await foundState(store, 'limiter:login-ip:192.0.2.9')).toEqual({ hits: [1, 2, 3] });
      expect(await foundState(store, `limiter:${unique()}`)).toBeNull();
    });

    it('writes many rows of one statement each whole: keys and live usage in any script, expiries to the millisecond', async () => {
      const [epoch] = (await store.claimShards([503], 'node-state')).values();
      const expiry = Date.UTC(2031, 4, 6, 7, 8, 9, 123);
      const rows: ActorStateRow[] = Array.from({ length: 300 }, (_, i) => ({
        entityKey: i % 3 === 0 ? `limiter:ключ:😀:${i}` : `usr_${i}`,
        shard: 503,
        epoch: epoch!,
        seq: i + 1,
        // Row 1's state holds every byte value, as MessagePack binary: each goes through the statement's hex.
        state:
          i === 1
            ? { i, bytes: Uint8Array.from({ length: 256 }, (_, b) => b) }
            : { i, name: 'naïve 😀', list: Array.from({ length: i % 7 }, (_, j) => j * 1.5) },
        // The first and last milliseconds timestamptz holds in ISO form too: exact there as well.
        expiresAt: i === 0 ? Date.parse('9999-12-31T23:59:59.999Z') : i === 2 ? Date.parse('0001-01-01T00:00:00.001Z') : i % 2 === 0 ? expiry + i : null,
        liveUsage: i % 5 === 0 ? null : { hour: 1, cells: ['tökens 😀', `key_${i}`, i, 1, 0] },
      }));
      const encoded = encode(rows);
      expect(await store.writeStates(encoded)).toEqual({ written: 300, fenced: [] });
      // Expiries read as text to the microsecond: the driver's Date parsing reads year 1 as 2001.
      const stored = await db.database.sql<{ entity_key: string; seq: number; usage_live: string | null; expires: string | null }[]>`
        select entity_key, seq, usage_live, to_char(expires_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as expires
        from actor_state where shard = 503 order by seq`;
      expect(stored.map((row) => row.entity_key)).toEqual(rows.map((row) => row.entityKey));
      const bodies = await db.database.sql<{ body: Uint8Array }[]>`select body from actor_state where shard = 503 order by seq`;
      bodies.forEach((row, i) => {
        expect(Buffer.from(row.body).equals(Buffer.from(encoded[i]!.body)), rows[i]!.entityKey).toBe(true);
      });
      rows.forEach((row, i) => {
        expect(stored[i]!.usage_live === null ? null : JSON.parse(stored[i]!.usage_live!), row.entityKey).toEqual(row.liveUsage);
        const expires = row.expiresAt == null ? null : new Date(row.expiresAt).toISOString().replace('Z', '000');
        expect(stored[i]!.expires, row.entityKey).toBe(expires);
      });
      for (const row of [rows[0]!, rows[3]!, rows[299]!]) expect(await foundState(store, row.entityKey)).toEqual(row.state);
      expect(Buffer.from(((await foundState(store, rows[1]!.entityKey)) as { bytes: Uint8Array }).bytes)).toEqual(
        Buffer.from((rows[1]!.state as { bytes: Uint8Array }).bytes),
      );
      // The year-1 row is long expired: not left for the expiry test below to find.
      await db.database.sql`delete from actor_state where shard = 503`;
    });

    it('reads the fence epoch of the shard with the state, for known and unknown keys', async () => {
      const [epoch] = (await store.claimShards([502], 'node-state')).values();
      await store.writeStates(encode([{ entityKey: 'fenced-read', shard: 502, epoch: epoch!, seq: 4, state: { v: 1 } }]));
      expect(await store.loadState('fenced-read', 502)).toEqual({ found: { v: 1 }, fenceEpoch: epoch, seq: 4, unwritten: false });
      expect(await store.loadState(`nothing-${unique()}`, 502)).toEqual({ found: null, fenceEpoch: epoch, seq: 0, unwritten: false });
      const [next] = (await store.claimShards([502], 'another-node')).values();
      expect(await store.loadState('fenced-read', 502)).toEqual({ found: { v: 1 }, fenceEpoch: next, seq: 4, unwritten: false });
      expect((await store.loadUser(`u${unique()}`, 502)).fenceEpoch).toBe(next);
    });

    it('loads the users asked for in one turn with one statement, each caller its own, with its shard’s epoch', async () => {
      const users = await Promise.all(Array.from({ length: 1200 }, () => store.insertUser(newUser())));
      await store.insertSession(newSession(users[7]!.id), fence);
      await store.insertApiKey(newKey(users[9]!.id), fence);
      const [epochA] = (await store.claimShards([504], 'node-batch')).values();
      const [epochB] = (await store.claimShards([505], 'node-batch')).values();
      const missing = `u${unique()}`;
      const statements = store.batches.user;
      const loads = await Promise.all([
        ...users.map((user, i) => store.loadUser(user.id, i % 2 === 0 ? 504 : 505)),
        store.loadUser(missing, 505),
        store.loadUser(users[3]!.id, 504), // the same user twice in one batch
      ]);
      expect(store.batches.user - statements).toBe(3); // 1,202 loads, 500 per statement
      users.forEach((user, i) => {
        expect(loads[i]!.found?.user.id, `load ${i}`).toBe(user.id);
        expect(loads[i]!.fenceEpoch, `load ${i}`).toBe(i % 2 === 0 ? epochA : epochB);
      });
      expect(loads[7]!.found!.sessions).toHaveLength(1);
      expect(loads[9]!.found!.keys).toHaveLength(1);
      expect(loads[8]!.found!.sessions).toEqual([]);
      expect(loads[1200]).toEqual({ found: null, fenceEpoch: epochB });
      expect(loads[1201]!.found?.user.id).toBe(users[3]!.id);
      // Loads in different turns go separately.
      await store.loadUser(users[0]!.id, 504);
      await store.loadUser(users[1]!.id, 505);
      expect(store.batches.user - statements).toBe(5);
    });

    it('fails every load of a batch alike when the statement fails', async () => {
      const broken = new Store(db.database.sql);
      // A shard outside int range makes the statement itself fail.
      const loads = [broken.loadUser(`u${unique()}`, 1), broken.loadUser(`u${unique()}`, 2 ** 40)];
      const results = await Promise.allSettled(loads);
      expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected']);
    });

    it('deletes rows past their expiry, and only those', async () => {
      const [epoch] = (await store.claimShards([503], 'node-state')).values();
      const now = Date.now();
      const row = (entityKey: string, expiresAt: number | null) => ({ entityKey, shard: 503, epoch: epoch!, state: { v: entityKey }, expiresAt });
      await store.writeStates(
        encode([row('limiter:gone-1', now - 60_000), row('limiter:gone-2', now - 1), row('limiter:kept', now + 60_000), row('user-kept', null)]),
      );
      expect(await store.deleteExpiredStates(1)).toBe(1);
      expect(await store.deleteExpiredStates(100)).toBe(1);
      expect(await store.deleteExpiredStates(100)).toBe(0);
      expect(await foundState(store, 'limiter:gone-1')).toBeNull();
      expect(await foundState(store, 'limiter:gone-2')).toBeNull();
      expect(await foundState(store, 'limiter:kept')).toEqual({ v: 'limiter:kept' });
      expect(await foundState(store, 'user-kept')).toEqual({ v: 'user-kept' });
    });
  });
});

/**
 * Postgres only: holding a lock that load statements wait for takes a second connection,
 * and the embedded database has one.
 */
describe('Store loads on postgres while statements are out', () => {
  let db: TestDatabase;
  let store: Store;

  beforeAll(async () => {
    db = await openTestDatabase('postgres');
    store = new Store(db.database.sql);
  });
  afterAll(() => db?.cleanup());

  it('sends two load statements at a time; loads asked for meanwhile wait and go together in one', async () => {
    const users = await Promise.all(Array.from({ length: 52 }, () => store.insertUser(newUser())));
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    // Load statements read `users`: they wait while another connection holds it locked.
    const holder = await db.database.sql.reserve();
    await holder`begin`;
    await holder`lock table users in access exclusive mode`;
    const statements = store.batches.user;
    let loads: Promise<Awaited<ReturnType<Store['loadUser']>>>[] = [];
    try {
      loads.push(store.loadUser(users[0]!.id, 0));
      await turn();
      loads.push(store.loadUser(users[1]!.id, 0));
      await turn();
      // Two statements are out and waiting: these fifty wait for one of them.
      loads = loads.concat(users.slice(2).map((user) => store.loadUser(user.id, 0)));
      await turn();
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(store.batches.user - statements).toBe(2);
    } finally {
      await holder`commit`;
      holder.release();
    }
    const found = await Promise.all(loads);
    expect(found.map((load) => load.found?.user.id)).toEqual(users.map((user) => user.id));
    expect(store.batches.user - statements).toBe(3);
  });
});
