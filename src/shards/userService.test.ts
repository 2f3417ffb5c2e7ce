import { beforeAll, describe, expect, it } from 'vitest';
import { ForbiddenError, OwnerUnavailableError, StaleEpochError, TallyError } from './errors.js';
import { initHashing } from './hash.js';
import { issueApiKey, newSessionId, newUserId } from './ids.js';
import type { LoadedUser, UserStore, WriteFence } from './ports.js';
import { ActorRuntime } from './runtime.js';
import { TierRegistry } from './tiers.js';
import type { Credential } from './userActor.js';
import { API_KEY_REFUSED, type UserOpName, type UserRequest, UserService } from './userService.js';

beforeAll(() => initHashing());

const t0 = Date.UTC(2026, 10, 22, 12, 0, 0);

/** A service over one user with a session, an unscoped key and a `quota:read` key; its store keeps preferences in memory. */
function serviceWithUser() {
  const userId = newUserId();
  const sessionId = newSessionId();
  const anyKey = issueApiKey(userId, new Uint8Array(32));
  const readKey = issueApiKey(userId, new Uint8Array(32));
  const keyRecord = (key: typeof anyKey, scopes: string[]) => ({
    id: key.keyId,
    userId,
    prefix: key.prefix,
    hash: key.hash,
    name: null,
    scopes,
    createdAt: new Date(t0),
    expiresAt: null,
    lastUsedAt: null,
  });
  const loaded: LoadedUser = {
    user: {
      id: userId,
      email: 'a@example.com',
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
        userId,
        deviceName: null,
        deviceType: null,
        ip: null,
        userAgent: null,
        createdAt: new Date(t0),
        expiresAt: new Date(t0 + 86_400_000),
        lastActiveAt: new Date(t0),
      },
    ],
    keys: [keyRecord(anyKey, []), keyRecord(readKey, ['quota:read'])],
    state: null,
  };
  const written: Record<string, unknown>[] = [];
  const fences: WriteFence[] = [];
  /** Set to make the next preference writes fail the way the store fails them. */
  const failure: { error: unknown } = { error: null };
  const unused = () => Promise.reject(new Error('not used by these tests'));
  const store: UserStore = {
    loadUser: async (_id, shard) => ({ found: loaded, fenceEpoch: runtime.shards[shard]!.epoch }),
    loadState: unused,
    async updatePreferences(_id, preferences, fence) {
      // A write that takes a while, so that a second edit arrives while the first is in flight.
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (failure.error !== null) throw failure.error;
      written.push(preferences);
      fences.push(fence);
    },
    updateProfile: unused,
    updateAdmin: unused,
    insertSession: unused,
    revokeSessions: unused,
    insertApiKey: unused,
    deleteApiKey: unused,
  };
  const tiers = new TierRegistry();
  tiers.put([{ name: 'free', limits: [{ name: 'per-minute', kind: 'window', limit: 10, window_ms: 60_000 }], failOpen: false, updatedAt: t0 }]);
  const runtime = new ActorRuntime({ maxActors: 10, idleMs: 3_600_000, negativeTtlMs: 1000, negativeMax: 10 });
  for (const shard of runtime.shards) shard.status = 'owned';
  const service = new UserService(runtime, store, tiers);
  const credentials: Record<'session' | 'anyKey' | 'readKey', Credential> = {
    session: { kind: 'session', sessionId },
    anyKey: { kind: 'key', keyId: anyKey.keyId, hash: anyKey.hash },
    readKey: { kind: 'key', keyId: readKey.keyId, hash: readKey.hash },
  };
  const request = <K extends UserOpName>(op: K, args: UserRequest<K>['args'], credential = credentials.session): UserRequest<K> => ({
    userId,
    credential,
    op,
    args,
  });
  return { service, request, credentials, written, fences, failure, runtime, tiers, userId };
}

describe('UserService dispatch', () => {
  it('answers in-memory operations synchronously once the actor is active, and no others', async () => {
    const { service, request } = serviceWithUser();
    expect(service.tryExecute(request('quota.consume', { cost: 1, resource: 'requests' }), t0)).toBeUndefined(); // not loaded yet
    await service.execute(request('profile.get', {}), t0);
    expect(service.tryExecute(request('quota.consume', { cost: 1, resource: 'requests' }), t0)).toMatchObject({ allowed: true });
    expect(service.tryExecute(request('auth.verify', {}), t0)).toMatchObject({ via: 'session' });
    expect(service.tryExecute(request('profile.get', {}), t0)).toBeUndefined();
    expect(service.tryExecute(request('preferences.put', { document: {} }), t0)).toBeUndefined();
  });

  it('lets API keys run only the operations their scope allows', async () => {
    const { service, request, credentials } = serviceWithUser();
    await expect(service.execute(request('quota.get', {}, credentials.readKey), t0)).resolves.toMatchObject({ tier: 'free' });
    await expect(service.execute(request('quota.consume', { cost: 1, resource: 'requests' }, credentials.anyKey), t0)).resolves.toMatchObject({
      allowed: true,
    });
    expect(() => service.tryExecute(request('quota.consume', { cost: 1, resource: 'requests' }, credentials.readKey), t0)).toThrow(
      'this API key lacks the "quota:consume" scope',
    );
    await expect(service.execute(request('profile.get', {}, credentials.anyKey), t0)).rejects.toThrow(new ForbiddenError(API_KEY_REFUSED));
  });

  it('writes one edit of a user through at a time, so that concurrent edits keep each other', async () => {
    const { service, request, written } = serviceWithUser();
    const [first, second] = await Promise.all([
      service.execute(request('preferences.merge', { patch: { a: 1 } }), t0),
      service.execute(request('preferences.merge', { patch: { b: 2 } }), t0),
    ]);
    expect(first).toEqual({ a: 1 });
    expect(second).toEqual({ a: 1, b: 2 });
    expect(written).toEqual([{ a: 1 }, { a: 1, b: 2 }]);
  });

  it('refuses a write-through whose turn comes after its shard moved away, and writes nothing for it', async () => {
    const { service, request, written, runtime, userId } = serviceWithUser();
    const first = service.execute(request('preferences.merge', { patch: { a: 1 } }), t0);
    const second = service.execute(request('preferences.merge', { patch: { b: 2 } }), t0);
    // While the first edit is being written, the shard is handed off: the queued second edit
    // must not be written by this node, which no longer owns the user.
    await new Promise((resolve) => setTimeout(resolve, 1));
    runtime.shardFor(userId).status = 'not_owned';
    await expect(first).resolves.toEqual({ a: 1 });
    await expect(second).rejects.toThrow(OwnerUnavailableError);
    expect(written).toEqual([{ a: 1 }]);
  });

  it('writes a change through under the epoch its shard is served under, and gives the shard up when the fence refuses it', async () => {
    const { service, request, written, fences, failure, runtime, userId } = serviceWithUser();
    const shard = runtime.shardFor(userId);
    shard.epoch = 7;
    await service.execute(request('preferences.put', { document: { a: 1 } }), t0);
    expect(fences).toEqual([{ shard: shard.index, epoch: 7 }]);
    // Another node has claimed the shard meanwhile (a lapsed lease): the store refuses the write.
    failure.error = new StaleEpochError(shard.index, 7, 8);
    const refused = await service.execute(request('preferences.put', { document: { b: 2 } }), t0).catch((error: unknown) => error);
    // Retryable, like any owner that is not there; the copy here is never served again.
    expect(refused).toBeInstanceOf(OwnerUnavailableError);
    expect(refused).toMatchObject({ code: 'owner_unavailable', retryAfterMs: 1000 });
    expect(written).toEqual([{ a: 1 }]);
    expect(shard.status).toBe('lost');
    expect(runtime.isActive(userId)).toBe(false);
  });

  it('says a user may fail open unless its actor is here on a strict tier, as the tier is now', async () => {
    const { service, request, tiers, userId } = serviceWithUser();
    // Not in memory: nothing is known, so the router records as before.
    expect(service.mayFailOpen(userId)).toBe(true);
    await service.execute(request('quota.get', {}), t0);
    expect(service.mayFailOpen(userId)).toBe(false);
    tiers.put([{ name: 'free', limits: [], failOpen: true, updatedAt: t0 + 1 }]);
    expect(service.mayFailOpen(userId)).toBe(true);
  });

  it('answers an operation name it does not know, such as a member of Object.prototype, with an internal error', async () => {
    const { service, request, credentials } = serviceWithUser();
    for (const op of ['users.delete', 'toString', '__proto__']) {
      const unknown = request(op as UserOpName, {});
      await expect(service.execute(unknown, t0)).rejects.toMatchObject({ code: 'internal' });
      expect(service.tryExecute(unknown, t0)).toBeUndefined();
      // Refused to an API key before anything else, as every operation without a key scope is.
      await expect(service.execute({ ...unknown, credential: credentials.anyKey }, t0)).rejects.toThrow(API_KEY_REFUSED);
    }
    await expect(service.execute(request('toString' as UserOpName, {}), t0)).rejects.toBeInstanceOf(TallyError);
  });
});
