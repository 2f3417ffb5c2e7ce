/**
 * What each user operation does: one table keyed by operation name, whose type is derived
 * from `UserOps`. An operation missing from the table, one `UserOps` does not name, or a
 * handler whose arguments or result differ from its operation's fails to compile.
 *
 * An entry also says how its operation runs (`kind`) and which API keys may run it
 * (`keyScope`); `UserService` finds the actor and checks the credential the same way for
 * every operation.
 */
import { ForbiddenError, InvalidRequestError, NotFoundError, UnknownTierError } from './errors.js';
import type { SessionRecord, UserStore, WriteFence } from './ports.js';
import { type JsonObject, mergePatch, serializePreferences } from './preferences.js';
import { validateLimits } from './quota/index.js';
import type { TierRegistry } from './tiers.js';
import { MAX_KEYS_PER_USER, MAX_SESSIONS_PER_USER, type Principal, toApiKey, toSession, type UserActor, usageKeyOf } from './userActor.js';
import type { KeyScope, NewKey, NewSession, UserOpName, UserOps } from './userService.js';
import { type KeyView, keyView, profileView, type SessionView, sessionView } from './views.js';

/** What handlers use besides the actor: the same for every request of one `UserService`. */
export interface UserDeps {
  readonly store: UserStore;
  readonly tiers: TierRegistry;
}

/**
 * What a written-through operation gets besides: the fence its writes carry, taken when the
 * service found the shard served (so every write of one operation carries the same epoch).
 */
interface WriteDeps extends UserDeps {
  readonly fence: WriteFence;
}

type Args<K extends UserOpName> = UserOps[K]['args'];
type Result<K extends UserOpName> = UserOps[K]['result'];

/**
 * Arguments by position rather than in a context object: the hot path (`quota.consume`
 * through `tryExecute`) then allocates nothing to call its handler.
 */
type Run<K extends UserOpName, R, D = UserDeps> = (user: UserActor, args: Args<K>, now: number, deps: D, principal: Principal) => R;

/**
 * How an operation runs on the owner, with `keyScope` the API key scope that may run it
 * (absent: API keys may not; sessions and platform callers may run every operation).
 * - `in-memory`: decided in the actor's memory alone, with nothing to await. `tryExecute`
 *   answers these synchronously when the actor is active here.
 * - `read`: answered from the actor's memory too, but through `execute` only.
 * - `write-through`: written to Postgres before the actor's memory changes. The service runs
 *   it under `Actor.exclusive`, so two concurrent edits of one user cannot lose each
 *   other's update, and its writes carry the shard's epoch (`WriteDeps.fence`).
 */
export type Handler<K extends UserOpName> =
  | { kind: 'in-memory'; keyScope?: KeyScope; run: Run<K, Result<K>> }
  | { kind: 'read'; keyScope?: KeyScope; run: Run<K, Result<K>> }
  | { kind: 'write-through'; keyScope?: KeyScope; run: Run<K, Promise<Result<K>>, WriteDeps> };

type Handlers = { readonly [K in UserOpName]: Handler<K> };

const HANDLERS: Handlers = {
  'auth.verify': {
    kind: 'in-memory',
    keyScope: 'quota:read',
    run(user, _args, _now, _deps, principal) {
      const verified: Result<'auth.verify'> = { userId: user.key, tier: user.tier, via: principal.via };
      if (principal.sessionId !== undefined) verified.sessionId = principal.sessionId;
      return verified;
    },
  },
  'quota.consume': {
    kind: 'in-memory',
    keyScope: 'quota:consume',
    run: (user, { cost, resource, amounts, idempotencyKey }, now, { tiers }, principal) =>
      user.consume(tiers, now, { cost, resource, amounts }, idempotencyKey, usageKeyOf(principal)),
  },
  'quota.get': {
    kind: 'in-memory',
    keyScope: 'quota:read',
    run: (user, _args, now, { tiers }) => ({ tier: user.tier, limits: user.quotaSnapshot(tiers, now) }),
  },
  'quota.reserve': {
    kind: 'in-memory',
    keyScope: 'quota:reserve',
    run: (user, request, now, { tiers }, principal) => user.reserve(tiers, now, request, usageKeyOf(principal)),
  },
  'quota.settle': {
    kind: 'in-memory',
    keyScope: 'quota:reserve',
    run: (user, { id, actual, amounts }, now, { tiers }, principal) => ({ limits: user.settle(tiers, now, id, { actual, amounts }, usageKeyOf(principal)) }),
  },
  'quota.release': {
    kind: 'in-memory',
    keyScope: 'quota:reserve',
    run(user, { id }, now, { tiers }) {
      user.release(tiers, now, id);
      return null;
    },
  },
  'profile.get': { kind: 'read', run: (user) => profileView(user) },
  'profile.update': { kind: 'write-through', run: updateProfile },
  'preferences.get': { kind: 'read', run: (user) => JSON.parse(user.preferencesJson) as JsonObject },
  'preferences.merge': {
    kind: 'write-through',
    run: (user, { patch }, _now, deps) => writePreferences(deps, user, mergePatch(JSON.parse(user.preferencesJson), patch)),
  },
  'preferences.put': { kind: 'write-through', run: (user, { document }, _now, deps) => writePreferences(deps, user, document) },
  'sessions.list': {
    kind: 'read',
    run: (user, _args, now, _deps, principal) => ({
      sessions: user.sessions.filter((s) => s.expiresAt > now).map(sessionView),
      current: principal.sessionId ?? null,
    }),
  },
  'sessions.create': { kind: 'write-through', run: createSession },
  'sessions.revoke': { kind: 'write-through', run: revokeSession },
  'sessions.revokeAll': { kind: 'write-through', run: revokeAll },
  'keys.list': { kind: 'read', run: (user) => ({ keys: user.keys.map((key) => keyView(user.key, key)) }) },
  'keys.create': { kind: 'write-through', run: createKey },
  'keys.delete': { kind: 'write-through', run: deleteKey },
  'admin.get': { kind: 'read', run: (user, _args, now, { tiers }) => adminView(user, tiers, now) },
  'admin.update': { kind: 'write-through', run: adminUpdate },
};

/**
 * A Map rather than the table itself, so that an operation name from the wire that is no
 * operation (`toString`, `__proto__`) finds nothing instead of a member of Object.prototype.
 */
const BY_NAME: ReadonlyMap<string, Handlers[UserOpName]> = new Map(Object.entries(HANDLERS));

/** The handler of `op`, or undefined when no operation has that name (a request from another build). */
export function handlerOf<K extends UserOpName>(op: K): Handler<K> | undefined {
  // The one cast of the dispatch: a Map cannot tie each key's type to its value's, and the
  // table it was built from holds `Handler<K>` under `K`.
  return BY_NAME.get(op) as Handler<K> | undefined;
}

async function updateProfile(user: UserActor, patch: Args<'profile.update'>, _now: number, { store, fence }: WriteDeps): Promise<Result<'profile.update'>> {
  await store.updateProfile(user.key, patch, fence);
  if (patch.name !== undefined) user.name = patch.name;
  if (patch.email !== undefined) user.email = patch.email;
  return profileView(user);
}

async function writePreferences({ store, fence }: WriteDeps, user: UserActor, document: unknown): Promise<JsonObject> {
  const text = serializePreferences(document);
  await store.updatePreferences(user.key, document as JsonObject, fence);
  user.preferencesJson = text;
  return JSON.parse(text) as JsonObject;
}

async function createSession(user: UserActor, session: NewSession, now: number, { store, fence }: WriteDeps): Promise<SessionView> {
  // Checked here, by the owner, so that a block set on any node is seen at once.
  if (user.blocked) throw new ForbiddenError('this user is blocked');
  // Past the cap, the sessions idle the longest are logged out to make room.
  const live = user.sessions.filter((s) => s.expiresAt > now);
  const excess = live.length + 1 - MAX_SESSIONS_PER_USER;
  const evicted =
    excess > 0
      ? [...live]
          .sort((a, b) => a.lastActiveAt - b.lastActiveAt)
          .slice(0, excess)
          .map((s) => s.id)
      : [];
  const expired = user.sessions.filter((s) => s.expiresAt <= now).map((s) => s.id);
  if (evicted.length > 0) await store.revokeSessions(user.key, evicted, fence);
  const record: SessionRecord = {
    ...session,
    userId: user.key,
    createdAt: new Date(now),
    expiresAt: new Date(session.expiresAt),
    lastActiveAt: new Date(now),
  };
  await store.insertSession(record, fence);
  const gone = new Set([...evicted, ...expired]);
  user.sessions = [...user.sessions.filter((s) => !gone.has(s.id)), toSession(record)];
  return sessionView(user.sessions[user.sessions.length - 1]!);
}

async function revokeSession(user: UserActor, { id }: Args<'sessions.revoke'>, _now: number, { store, fence }: WriteDeps): Promise<null> {
  if (user.findSession(id) === undefined) throw new NotFoundError('session');
  await store.revokeSessions(user.key, [id], fence);
  user.sessions = user.sessions.filter((s) => s.id !== id);
  return null;
}

async function revokeAll(
  user: UserActor,
  { keepCurrent }: Args<'sessions.revokeAll'>,
  _now: number,
  { store, fence }: WriteDeps,
  principal: Principal,
): Promise<Result<'sessions.revokeAll'>> {
  const keep = keepCurrent ? principal.sessionId : undefined;
  const ids = user.sessions.filter((s) => s.id !== keep).map((s) => s.id);
  if (ids.length > 0) await store.revokeSessions(user.key, ids, fence);
  user.sessions = user.sessions.filter((s) => s.id === keep);
  return { revoked: ids.length };
}

async function createKey(user: UserActor, key: NewKey, now: number, { store, fence }: WriteDeps): Promise<KeyView> {
  if (user.keys.length >= MAX_KEYS_PER_USER) {
    throw new InvalidRequestError(`a user may hold at most ${MAX_KEYS_PER_USER} API keys; delete one first`);
  }
  const record = {
    ...key,
    userId: user.key,
    createdAt: new Date(now),
    expiresAt: key.expiresAt === null ? null : new Date(key.expiresAt),
    lastUsedAt: null,
  };
  await store.insertApiKey(record, fence);
  const created = toApiKey(record);
  user.keys = [...user.keys, created];
  return keyView(user.key, created);
}

async function deleteKey(user: UserActor, { id }: Args<'keys.delete'>, _now: number, { store, fence }: WriteDeps): Promise<null> {
  if (!user.keys.some((k) => k.id === id)) throw new NotFoundError('API key');
  await store.deleteApiKey(user.key, id, fence);
  user.keys = user.keys.filter((k) => k.id !== id);
  return null;
}

function adminView(user: UserActor, tiers: TierRegistry, now: number): Result<'admin.get'> {
  return { ...profileView(user), blocked: user.blocked, overrides: user.overrides ?? [], limits: user.quotaSnapshot(tiers, now) };
}

async function adminUpdate(user: UserActor, patch: Args<'admin.update'>, now: number, { store, tiers, fence }: WriteDeps): Promise<Result<'admin.update'>> {
  if (patch.tier !== undefined && !tiers.has(patch.tier)) throw new UnknownTierError(patch.tier);
  if (patch.overrides !== undefined) {
    const problem = validateLimits(patch.overrides);
    if (problem !== null) throw new InvalidRequestError(`overrides: ${problem}`);
  }
  await store.updateAdmin(user.key, patch, fence);
  if (patch.tier !== undefined) user.tier = patch.tier;
  if (patch.blocked !== undefined) user.blocked = patch.blocked;
  if (patch.overrides !== undefined) user.overrides = patch.overrides.length > 0 ? patch.overrides : null;
  if (patch.tier !== undefined || patch.overrides !== undefined) user.relimit(tiers);
  return adminView(user, tiers, now);
}
