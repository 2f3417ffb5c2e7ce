import { describe, expect, it } from 'vitest';
import { type LimiterService, TierRegistry, type UserRequest, type UserService } from '../shards/index.js';
import { FailOpen } from './failOpen.js';
import { LocalRouter } from './router.js';

const T0 = 1_700_000_000_000;

/** A router over a user service that accepts every request; `tiers` says, by user, whether the user's tier fails open. */
function routerFor(tiers: Record<string, boolean>) {
  const registry = new TierRegistry();
  registry.put(Object.entries(tiers).map(([name, failOpen]) => ({ name, limits: [], failOpen, updatedAt: T0 })));
  const failOpen = new FailOpen(registry, async () => null, { degraded: { inc: () => {} } }, { clock: () => T0 });
  const users = {
    execute: async () => ({ allowed: true, limits: [], retryAfterMs: 0, exceedsCapacity: false }),
    mayFailOpen: (userId: string) => tiers[userId] !== false,
  } as unknown as UserService;
  return { router: new LocalRouter(users, {} as LimiterService, failOpen, () => T0), failOpen };
}

const consume = (userId: string): UserRequest<'quota.consume'> => ({
  userId,
  credential: { kind: 'key', keyId: 'k1', hash: 'hash' },
  op: 'quota.consume',
  args: { cost: 1, resource: 'requests' },
});

describe('LocalRouter', () => {
  it('records an answered credential for fail-open only where the user may fail open', async () => {
    const { router, failOpen } = routerFor({ strict: false, lenient: true });
    await router.user(consume('strict'));
    expect(failOpen.size).toBe(0);
    await router.user(consume('lenient'));
    expect(failOpen.size).toBe(1);
  });
});
