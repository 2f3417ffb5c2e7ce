import { beforeAll, describe, expect, it } from 'vitest';
import { ActorRuntime, initHashing, type LimiterService, type QuotaDecision, type UserRequest, type UserService } from '../../shards/index.js';
import { ClusterRouter, type FailOpenPolicy } from './router.js';
import type { ForwardResult } from './wire.js';

beforeAll(() => initHashing());

const T0 = 1_700_000_000_000;
const ALLOWED: QuotaDecision = { allowed: true, limits: [], retryAfterMs: 0, exceedsCapacity: false };

/** A router whose user service accepts every request; `strict` names the users on a strict tier. */
function routerWith(strict: readonly string[]) {
  const runtime = new ActorRuntime({ maxActors: 10, idleMs: 60_000, negativeTtlMs: 1000, negativeMax: 10 });
  for (const shard of runtime.shards) shard.status = 'owned';
  /** The users whose answers were recorded for fail-open. */
  const recorded: string[] = [];
  const failOpen: FailOpenPolicy = {
    stamp: () => 0,
    verified: (request) => recorded.push(request.userId),
    consume: (error) => Promise.reject(error),
  };
  const users = {
    execute: async () => ALLOWED,
    mayFailOpen: (userId: string) => !strict.includes(userId),
  } as unknown as UserService;
  return { router: new ClusterRouter(runtime, users, {} as LimiterService, failOpen, () => T0), recorded };
}

const consume = (userId: string): UserRequest<'quota.consume'> => ({
  userId,
  credential: { kind: 'key', keyId: 'k1', hash: 'hash' },
  op: 'quota.consume',
  args: { cost: 1, resource: 'requests' },
});

describe('ClusterRouter and fail-open', () => {
  it('answers a forwarded item of a strict user with `strict`, and of any other without', async () => {
    const { router } = routerWith(['strict']);
    expect(await router.decide({ kind: 'user', request: consume('strict') })).toEqual({ ok: ALLOWED, strict: true });
    expect(await router.decide({ kind: 'user', request: consume('lenient') })).toEqual({ ok: ALLOWED });
  });

  it('records a forwarded answer unless its owner said `strict`, as an owner of an earlier build never does', async () => {
    const { router, recorded } = routerWith([]);
    let answer: ForwardResult = { ok: ALLOWED, strict: true };
    router.attach({ nodeId: 'here', owner: () => 'there', forward: async () => answer });
    expect(await router.user(consume('u1'))).toEqual(ALLOWED);
    expect(recorded).toEqual([]);
    answer = { ok: ALLOWED };
    expect(await router.user(consume('u1'))).toEqual(ALLOWED);
    expect(recorded).toEqual(['u1']);
  });

  it('records an answer decided here only where the user may fail open', async () => {
    const { router, recorded } = routerWith(['strict']);
    router.attach({ nodeId: 'here', owner: () => 'here', forward: async () => ({ moved: true }) });
    await router.user(consume('strict'));
    await router.user(consume('lenient'));
    expect(recorded).toEqual(['lenient']);
  });
});

describe('ClusterRouter while an owner moves or is gone', () => {
  it('asks again for 1.4 s after `moved`, and for 0.4 s when nobody listens on the owner’s subject', async () => {
    const { router } = routerWith([]);
    let asked = 0;
    let answer: ForwardResult = { moved: true };
    router.attach({
      nodeId: 'here',
      owner: () => 'there',
      forward: async () => {
        asked++;
        return answer;
      },
    });
    const started = performance.now();
    await expect(router.user(consume('u1'))).rejects.toThrow(/is moving/);
    expect(asked).toBe(10);
    expect(performance.now() - started).toBeGreaterThanOrEqual(1300); // 1,375 ms of pauses

    asked = 0;
    answer = { moved: true, unheard: true };
    await expect(router.user(consume('u1'))).rejects.toThrow(/not answering/);
    expect(asked).toBe(6); // 375 ms of pauses

    // A move that ends within the budget is never seen by the caller.
    asked = 0;
    answer = { moved: true };
    router.attach({ nodeId: 'here', owner: () => 'there', forward: async () => (++asked < 8 ? answer : { ok: ALLOWED }) });
    expect(await router.user(consume('u1'))).toEqual(ALLOWED);
  });
});
