import { describe, expect, it } from 'vitest';
import { type Credential, OwnerUnavailableError, TierRegistry, type UserOpName, type UserRequest } from '../shards/index.js';
import { FailOpen, VERIFIED_TTL_MS } from './failOpen.js';

const T0 = 1_700_000_000_000;

function setup(options: { maxUsers?: number; tier?: string } = {}) {
  const tiers = new TierRegistry();
  tiers.put([
    { name: 'free', limits: [], failOpen: true, updatedAt: T0 },
    { name: 'pro', limits: [], failOpen: false, updatedAt: T0 },
  ]);
  const clock = { now: T0 };
  const tierReads: string[] = [];
  let degraded = 0;
  const failOpen = new FailOpen(
    tiers,
    async (userId) => {
      tierReads.push(userId);
      return options.tier ?? 'free';
    },
    { degraded: { inc: () => degraded++ } },
    { clock: () => clock.now, ...(options.maxUsers === undefined ? {} : { maxUsers: options.maxUsers }) },
  );
  return { failOpen, clock, tierReads, degraded: () => degraded };
}

const SESSION: Credential = { kind: 'session', sessionId: 's1' };
const KEY: Credential = { kind: 'key', keyId: 'k1', hash: 'hash-of-the-real-secret' };

const request = <K extends UserOpName = 'quota.consume'>(userId: string, credential: Credential, op: K = 'quota.consume' as K): UserRequest<K> =>
  ({ userId, credential, op, args: { cost: 1, resource: 'requests' } }) as unknown as UserRequest<K>;

const unavailable = () => new OwnerUnavailableError('the owner does not answer');

/** The fail-open answer for a consume by `credential` whose owner is unreachable: 'allowed' or 'refused'. */
async function answer(failOpen: FailOpen, userId: string, credential: Credential): Promise<'allowed' | 'refused'> {
  const error = unavailable();
  try {
    const decision = await failOpen.consume(error, request(userId, credential));
    expect(decision).toEqual({ allowed: true, limits: [], retryAfterMs: 0, exceedsCapacity: false, degraded: true });
    return 'allowed';
  } catch (thrown) {
    // The strict answer is the owner's own error, untouched (503 with Retry-After).
    expect(thrown).toBe(error);
    return 'refused';
  }
}

describe('FailOpen', () => {
  it('refuses credentials it has never seen verified, whatever their kind, without reading the tier', async () => {
    const { failOpen, tierReads, degraded } = setup();
    expect(await answer(failOpen, 'u1', SESSION)).toBe('refused');
    expect(await answer(failOpen, 'u1', KEY)).toBe('refused');
    expect(await answer(failOpen, 'u1', { kind: 'service' })).toBe('refused');
    expect(await answer(failOpen, 'u1', { kind: 'trusted' })).toBe('refused');
    expect(tierReads).toEqual([]);
    expect(degraded()).toBe(0);
  });

  it('allows a credential its owner accepted within the last minute, and refuses it after', async () => {
    const { failOpen, clock, degraded } = setup();
    failOpen.verified(request('u1', SESSION), failOpen.stamp());
    clock.now += VERIFIED_TTL_MS - 1;
    expect(await answer(failOpen, 'u1', SESSION)).toBe('allowed');
    expect(degraded()).toBe(1);
    clock.now += 1;
    expect(await answer(failOpen, 'u1', SESSION)).toBe('refused');
    // A new verification starts a new minute.
    failOpen.verified(request('u1', SESSION), failOpen.stamp());
    expect(await answer(failOpen, 'u1', SESSION)).toBe('allowed');
  });

  it('knows a credential by kind: a session by id, a key by id and secret, a service by user', async () => {
    const { failOpen } = setup();
    failOpen.verified(request('u1', SESSION), failOpen.stamp());
    failOpen.verified(request('u1', KEY), failOpen.stamp());
    failOpen.verified(request('u2', { kind: 'service' }), failOpen.stamp());
    expect(await answer(failOpen, 'u1', SESSION)).toBe('allowed');
    expect(await answer(failOpen, 'u1', KEY)).toBe('allowed');
    expect(await answer(failOpen, 'u2', { kind: 'service' })).toBe('allowed');
    // Another session, the same key id with a made-up secret (its MAC still checks), another user.
    expect(await answer(failOpen, 'u1', { kind: 'session', sessionId: 's2' })).toBe('refused');
    expect(await answer(failOpen, 'u1', { ...KEY, hash: 'hash-of-a-made-up-secret' })).toBe('refused');
    expect(await answer(failOpen, 'u2', SESSION)).toBe('refused');
    expect(await answer(failOpen, 'u1', { kind: 'service' })).toBe('refused');
  });

  it('keeps every session and key of a user it saw verified, each for its own minute', async () => {
    const { failOpen, clock } = setup();
    const session = (id: string): Credential => ({ kind: 'session', sessionId: id });
    const key = (hash: string): Credential => ({ kind: 'key', keyId: 'k1', hash });
    failOpen.verified(request('u1', session('s1')), failOpen.stamp());
    failOpen.verified(request('u1', key('h1')), failOpen.stamp());
    clock.now += 10_000;
    failOpen.verified(request('u1', session('s2')), failOpen.stamp());
    failOpen.verified(request('u1', key('h2')), failOpen.stamp());
    for (const credential of [session('s1'), session('s2'), key('h1'), key('h2')]) expect(await answer(failOpen, 'u1', credential)).toBe('allowed');
    // The first ones' minute ends; the later ones' goes on.
    clock.now += VERIFIED_TTL_MS - 5_000;
    expect(await answer(failOpen, 'u1', session('s1'))).toBe('refused');
    expect(await answer(failOpen, 'u1', key('h1'))).toBe('refused');
    expect(await answer(failOpen, 'u1', session('s2'))).toBe('allowed');
    expect(await answer(failOpen, 'u1', key('h2'))).toBe('allowed');
    // A user's one session, stale, is replaced by the next: the old one never comes back.
    failOpen.verified(request('u2', session('s1')), failOpen.stamp());
    clock.now += VERIFIED_TTL_MS;
    failOpen.verified(request('u2', session('s3')), failOpen.stamp());
    expect(await answer(failOpen, 'u2', session('s3'))).toBe('allowed');
    expect(await answer(failOpen, 'u2', session('s1'))).toBe('refused');
  });

  it('records a key only from a consume: a key accepted for reading may lack the consume scope', async () => {
    const { failOpen } = setup();
    failOpen.verified(request('u1', KEY, 'quota.get'), failOpen.stamp());
    expect(await answer(failOpen, 'u1', KEY)).toBe('refused');
    // A session may do everything: any operation its owner answered records it.
    failOpen.verified(request('u1', SESSION, 'profile.get'), failOpen.stamp());
    expect(await answer(failOpen, 'u1', SESSION)).toBe('allowed');
  });

  it('refuses strict tiers and passes other errors through, verified or not', async () => {
    const strict = setup({ tier: 'pro' });
    strict.failOpen.verified(request('u1', SESSION), strict.failOpen.stamp());
    expect(await answer(strict.failOpen, 'u1', SESSION)).toBe('refused');
    const { failOpen } = setup();
    failOpen.verified(request('u1', SESSION), failOpen.stamp());
    const other = new Error('not an unavailable owner');
    await expect(failOpen.consume(other, request('u1', SESSION))).rejects.toBe(other);
  });

  it('forgets a user at once when a revocation is announced', async () => {
    const { failOpen } = setup();
    failOpen.verified(request('u1', SESSION), failOpen.stamp());
    failOpen.verified(request('u1', KEY), failOpen.stamp());
    failOpen.verified(request('u2', SESSION), failOpen.stamp());
    failOpen.forget('u1');
    expect(await answer(failOpen, 'u1', SESSION)).toBe('refused');
    expect(await answer(failOpen, 'u1', KEY)).toBe('refused');
    expect(await answer(failOpen, 'u2', SESSION)).toBe('allowed');
    failOpen.forgetAll();
    expect(await answer(failOpen, 'u2', SESSION)).toBe('refused');
  });

  it('does not record an answer begun before the announcement: it may predate the change', async () => {
    const { failOpen } = setup();
    const before = failOpen.stamp();
    const otherUser = failOpen.stamp();
    failOpen.forget('u1');
    failOpen.verified(request('u1', SESSION), before);
    expect(await answer(failOpen, 'u1', SESSION)).toBe('refused');
    // Another user's answer under way meanwhile is recorded; so is one begun after the announcement.
    failOpen.verified(request('u2', SESSION), otherUser);
    expect(await answer(failOpen, 'u2', SESSION)).toBe('allowed');
    failOpen.verified(request('u1', SESSION), failOpen.stamp());
    expect(await answer(failOpen, 'u1', SESSION)).toBe('allowed');
    // After a reconnect (announcements may have been missed), nothing under way is recorded.
    const beforeReconnect = failOpen.stamp();
    failOpen.forgetAll();
    failOpen.verified(request('u3', SESSION), beforeReconnect);
    expect(await answer(failOpen, 'u3', SESSION)).toBe('refused');
  });

  it('keeps at most maxUsers users, the least recently verified going first', async () => {
    const { failOpen, clock } = setup({ maxUsers: 3 });
    for (const userId of ['u1', 'u2', 'u3']) {
      failOpen.verified(request(userId, SESSION), failOpen.stamp());
      clock.now += 1_000;
    }
    // u1 verified again (the order is kept to the second): now u2 is the least recently verified.
    failOpen.verified(request('u1', SESSION), failOpen.stamp());
    failOpen.verified(request('u4', SESSION), failOpen.stamp());
    expect(failOpen.size).toBe(3);
    expect(await answer(failOpen, 'u2', SESSION)).toBe('refused');
    for (const userId of ['u1', 'u3', 'u4']) expect(await answer(failOpen, userId, SESSION)).toBe('allowed');
    // Users verified more than a minute ago make room before any fresh one does.
    clock.now += VERIFIED_TTL_MS;
    failOpen.verified(request('u5', SESSION), failOpen.stamp());
    expect(failOpen.size).toBe(1);
  });

  it('stays bounded under many users at the default size', () => {
    const { failOpen } = setup();
    for (let i = 0; i < 100_010; i++) failOpen.verified(request(`u${i}`, SESSION), failOpen.stamp());
    expect(failOpen.size).toBe(100_000);
  });
});
