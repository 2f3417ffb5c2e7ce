import { beforeAll, describe, expect, it } from 'vitest';
import { initHashing } from './hash.js';
import { issueApiKey, newSessionId, newUserId } from './ids.js';
import type { LoadedUser } from './ports.js';
import type { Limit } from './quota/limits.js';
import { ActorRuntime, ALL_WRITTEN } from './runtime.js';
import { TierRegistry } from './tiers.js';
import { ACTIVITY_WRITE_MS, UserActor } from './userActor.js';

beforeAll(() => initHashing());

const t0 = Date.UTC(2026, 10, 22, 12, 0, 0);

async function activeUser(tiers = freeTier()) {
  const id = newUserId();
  const key = issueApiKey(id, new Uint8Array(32));
  const sessionId = newSessionId();
  const loaded: LoadedUser = {
    user: {
      id,
      email: `${id}@example.com`,
      name: null,
      tier: 'free',
      passwordHash: 'x',
      preferences: {},
      blocked: false,
      overrides: [],
      createdAt: new Date(t0),
    },
    sessions: [
      {
        id: sessionId,
        userId: id,
        deviceName: null,
        deviceType: null,
        ip: null,
        userAgent: null,
        createdAt: new Date(t0),
        expiresAt: new Date(t0 + 86_400_000),
        lastActiveAt: new Date(t0),
      },
    ],
    keys: [
      { id: key.keyId, userId: id, prefix: key.prefix, hash: key.hash, name: null, scopes: [], createdAt: new Date(t0), expiresAt: null, lastUsedAt: null },
    ],
    state: null,
  };
  const runtime = new ActorRuntime({ maxActors: 10, idleMs: 3_600_000, negativeTtlMs: 1000, negativeMax: 10 });
  for (const shard of runtime.shards) shard.status = 'owned';
  const actor = await runtime.get(id, t0, async (_key, shard) => ({ actor: new UserActor(loaded, shard, tiers), fenceEpoch: shard.epoch }), 'user');
  const useKey = (now: number) => actor.authenticate({ kind: 'key', keyId: key.keyId, hash: key.hash }, now);
  const useSession = (now: number) => actor.authenticate({ kind: 'session', sessionId }, now);
  const flush = () => {
    const collected = runtime.collectDirty(t0);
    collected.finish(ALL_WRITTEN);
    return collected.activity;
  };
  return { actor, runtime, useKey, useSession, flush, keyId: key.keyId, sessionId };
}

function freeTier(limits: Limit[] = []): TierRegistry {
  const tiers = new TierRegistry();
  tiers.put([{ name: 'free', limits, failOpen: false, updatedAt: t0 }]);
  return tiers;
}

describe('UserActor last-use times', () => {
  it('writes a key’s first use at once, then at most once a minute, while memory stays exact', async () => {
    const user = await activeUser();
    user.useKey(t0 + 1_000);
    expect(user.flush().keys).toEqual([{ id: user.keyId, at: new Date(t0 + 1_000) }]);

    user.useKey(t0 + 2_000);
    user.useKey(t0 + 30_000);
    expect(user.flush().keys).toEqual([]);
    expect(user.actor.findKey(user.keyId)?.lastUsedAt).toBe(t0 + 30_000);

    user.useKey(t0 + 1_000 + ACTIVITY_WRITE_MS);
    user.useKey(t0 + 2_000 + ACTIVITY_WRITE_MS);
    expect(user.flush().keys).toEqual([{ id: user.keyId, at: new Date(t0 + 2_000 + ACTIVITY_WRITE_MS) }]);
  });

  it('writes a session’s use once its stored time is a minute old', async () => {
    const user = await activeUser();
    user.useSession(t0 + 10_000); // the stored time is the login at t0
    expect(user.flush().sessions).toEqual([]);
    user.useSession(t0 + ACTIVITY_WRITE_MS);
    expect(user.flush().sessions).toEqual([{ id: user.sessionId, at: new Date(t0 + ACTIVITY_WRITE_MS) }]);
    expect(user.actor.findSession(user.sessionId)?.lastActiveAt).toBe(t0 + ACTIVITY_WRITE_MS);
  });

  it('writes every unwritten use, exactly, before the node stops', async () => {
    const user = await activeUser();
    user.useKey(t0 + 1_000);
    user.flush();
    user.useKey(t0 + 5_000);
    user.useSession(t0 + 6_000);
    expect(user.flush()).toEqual({ sessions: [], keys: [] });
    user.runtime.activityDueNow();
    expect(user.flush()).toEqual({ sessions: [{ id: user.sessionId, at: new Date(t0 + 6_000) }], keys: [{ id: user.keyId, at: new Date(t0 + 5_000) }] });
    user.runtime.activityDueNow();
    expect(user.flush()).toEqual({ sessions: [], keys: [] });
  });

  it('keeps an idle actor with unwritten uses until a flush has written them', async () => {
    const user = await activeUser();
    user.useKey(t0 + 1_000);
    user.flush();
    user.useKey(t0 + 5_000);
    const idle = t0 + 3_600_000 + 10_000;
    expect(user.runtime.sweep(idle)).toBe(0);
    expect(user.flush().keys).toEqual([{ id: user.keyId, at: new Date(t0 + 5_000) }]);
    expect(user.runtime.sweep(idle)).toBe(1);
  });
});

describe('UserActor after a tier edit', () => {
  it('reserves and settles on the state migrated to the edited limits, as a consume does', async () => {
    const a: Limit = { name: 'a', kind: 'budget', limit: 100, period: 'month' };
    const b: Limit = { name: 'b', kind: 'budget', limit: 1000, period: 'month', resource: 'x' };
    const tiers = freeTier([a, b]);
    const consumer = await activeUser(tiers);
    const reserver = await activeUser(tiers);
    for (const user of [consumer, reserver]) {
      user.actor.consume(tiers, t0, { cost: 10, resource: 'default' });
      user.actor.consume(tiers, t0, { cost: 3, resource: 'x' });
    }
    // The same limits in the other order: each limit's counters move with its name.
    tiers.put([{ name: 'free', limits: [b, a], failOpen: false, updatedAt: t0 + 1 }]);
    consumer.actor.consume(tiers, t0 + 2, { cost: 5, resource: 'default' });
    reserver.actor.reserve(tiers, t0 + 2, { cost: 5, resource: 'default', id: 'r1', ttlMs: 60_000 });
    const remaining = (user: typeof consumer) => Object.fromEntries(user.actor.quotaSnapshot(tiers, t0 + 3).map((limit) => [limit.name, limit.remaining]));
    expect(remaining(consumer)).toEqual({ a: 82, b: 997 });
    expect(remaining(reserver)).toEqual({ a: 82, b: 997 });

    tiers.put([{ name: 'free', limits: [a, b], failOpen: false, updatedAt: t0 + 4 }]);
    // Settled at 2 of the 5 held: 3 go back to `a`.
    reserver.actor.settle(tiers, t0 + 5, 'r1', { actual: 2 });
    expect(remaining(reserver)).toEqual({ a: 85, b: 997 });
  });
});

describe('UserActor write-behind', () => {
  it('writes no row for a user only loaded and read, nor for limits that only refilled with time', async () => {
    const rate: Limit = { name: 'rpm', kind: 'rate', limit: 10, period_ms: 60_000 };
    const window: Limit = { name: 'window', kind: 'window', limit: 10, window_ms: 60_000 };
    const budget: Limit = { name: 'day', kind: 'budget', limit: 100, period: 'day' };
    const tiers = freeTier([rate, window, budget]);
    const user = await activeUser(tiers);
    const rows = (now: number) => {
      const collected = user.runtime.collectDirty(now);
      collected.finish(ALL_WRITTEN);
      return collected.rows.length;
    };
    // Loaded and read: nothing to write.
    user.actor.quotaSnapshot(tiers, t0);
    expect(user.actor.dirty).toBe(false);
    expect(rows(t0)).toBe(0);
    // A charge is a change: one row.
    expect(user.actor.consume(tiers, t0, { cost: 4, resource: 'default' }).allowed).toBe(true);
    expect(rows(t0)).toBe(1);
    // Every limit refills by the next day; reading them then changes nothing to write.
    const remaining = user.actor.quotaSnapshot(tiers, t0 + 86_400_000).map((limit) => limit.remaining);
    expect(remaining).toEqual([10, 10, 100]);
    expect(user.actor.dirty).toBe(false);
    expect(rows(t0 + 86_400_000)).toBe(0);
  });
});
