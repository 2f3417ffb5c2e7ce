/**
 * The operations on one user, executed on the node that owns the user. A request names the
 * user, the credential it came with and one operation; the owner checks the credential
 * against its live sessions and keys and performs the operation in the same step, so a
 * request crosses the cluster at most once.
 *
 * Requests are plain data (`UserRequest`), so the router can run them here or send them to
 * the owner over NATS unchanged.
 */
import { ForbiddenError, INVALID_API_KEY, InvalidRequestError, NotFoundError, TallyError, UnauthenticatedError, UnknownTierError } from './errors.js';
import type { SessionRecord, UserStore } from './ports.js';
import { type JsonObject, mergePatch, serializePreferences } from './preferences.js';
import { type Settlement, validateLimits } from './quota/index.js';
import type { Limit, LimitState } from './quota/limits.js';
import type { ActorRuntime, Loaded } from './runtime.js';
import type { TierRegistry } from './tiers.js';
import {
  type Credential,
  MAX_KEYS_PER_USER,
  MAX_SESSIONS_PER_USER,
  type Principal,
  type QuotaDecision,
  type QuotaRequest,
  toApiKey,
  toSession,
  UserActor,
} from './userActor.js';
import { type KeyView, keyView, type ProfileView, profileView, type SessionView, sessionView } from './views.js';

export interface NewSession {
  id: string;
  deviceName: string | null;
  deviceType: string | null;
  ip: string | null;
  userAgent: string | null;
  expiresAt: number;
}

export interface NewKey {
  id: string;
  prefix: string;
  hash: string;
  name: string | null;
  scopes: string[];
  expiresAt: number | null;
}

/** Each operation's arguments and result. */
export interface UserOps {
  'auth.verify': { args: Record<string, never>; result: { userId: string; tier: string; via: Principal['via']; sessionId?: string } };
  'quota.consume': { args: QuotaRequest & { idempotencyKey?: string }; result: QuotaDecision };
  'quota.get': { args: Record<string, never>; result: { tier: string; limits: LimitState[] } };
  'quota.reserve': { args: QuotaRequest & { id: string; ttlMs: number }; result: QuotaDecision & { expiresAt: number } };
  'quota.settle': { args: Settlement & { id: string }; result: { limits: LimitState[] } };
  'quota.release': { args: { id: string }; result: null };
  'profile.get': { args: Record<string, never>; result: ProfileView };
  'profile.update': { args: { name?: string | null; email?: string }; result: ProfileView };
  'preferences.get': { args: Record<string, never>; result: JsonObject };
  'preferences.merge': { args: { patch: unknown }; result: JsonObject };
  'preferences.put': { args: { document: JsonObject }; result: JsonObject };
  'sessions.list': { args: Record<string, never>; result: { sessions: SessionView[]; current: string | null } };
  'sessions.create': { args: NewSession; result: SessionView };
  'sessions.revoke': { args: { id: string }; result: null };
  'sessions.revokeAll': { args: { keepCurrent: boolean }; result: { revoked: number } };
  'keys.list': { args: Record<string, never>; result: { keys: KeyView[] } };
  'keys.create': { args: NewKey; result: KeyView };
  'keys.delete': { args: { id: string }; result: null };
  'admin.get': { args: Record<string, never>; result: ProfileView & { blocked: boolean; overrides: readonly Limit[]; limits: LimitState[] } };
  'admin.update': {
    args: { tier?: string; blocked?: boolean; overrides?: Limit[] };
    result: ProfileView & { blocked: boolean; overrides: readonly Limit[]; limits: LimitState[] };
  };
}

export type UserOpName = keyof UserOps;

export interface UserRequest<K extends UserOpName = UserOpName> {
  userId: string;
  credential: Credential;
  op: K;
  args: UserOps[K]['args'];
}

/** Scopes an API key may carry; a key with `quota` may do every quota operation. */
export const KEY_SCOPES = ['quota', 'quota:read', 'quota:consume', 'quota:reserve'] as const;

const SCOPE_OF: Partial<Record<UserOpName, string>> = {
  'auth.verify': 'quota:read',
  'quota.get': 'quota:read',
  'quota.consume': 'quota:consume',
  'quota.reserve': 'quota:reserve',
  'quota.settle': 'quota:reserve',
  'quota.release': 'quota:reserve',
};

/** Operations decided in the actor's memory alone, with nothing to await. */
const IN_MEMORY_OPS: ReadonlySet<UserOpName> = new Set<UserOpName>([
  'auth.verify',
  'quota.consume',
  'quota.get',
  'quota.reserve',
  'quota.settle',
  'quota.release',
]);

export class UserService {
  constructor(
    private readonly runtime: ActorRuntime,
    private readonly store: UserStore,
    private readonly tiers: TierRegistry,
  ) {}

  /** The user's actor, loading it from Postgres on first use. */
  actor(userId: string, now: number): UserActor | Promise<UserActor> {
    return this.runtime.get(userId, now, this.loadUser, 'user');
  }

  private readonly loadUser = async (userId: string, shard: UserActor['shard']): Promise<Loaded<UserActor>> => {
    const { found, fenceEpoch, seq, unwritten } = await this.store.loadUser(userId, shard.index);
    return { actor: found === null ? null : new UserActor(found, shard, this.tiers), fenceEpoch, seq, unwritten };
  };

  /**
   * Runs one request on its user. Quota operations on an active actor complete
   * synchronously inside one promise: no await between the credential check and the
   * decision, which is what keeps a decision atomic and cheap.
   */
  execute<K extends UserOpName>(request: UserRequest<K>, now: number): Promise<UserOps[K]['result']> {
    try {
      const found = this.actor(request.userId, now);
      if (found instanceof Promise) {
        return found.then(
          (user) => this.perform(user, request, now),
          (error: unknown) => Promise.reject(missingUserAsBadCredential(error, request.credential)),
        ) as Promise<UserOps[K]['result']>;
      }
      return Promise.resolve(this.perform(found, request, now)) as Promise<UserOps[K]['result']>;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Runs a quota operation synchronously when the user's actor is already active here;
   * undefined when it is not (the caller then uses `execute`). Errors are thrown.
   */
  tryExecute<K extends UserOpName>(request: UserRequest<K>, now: number): UserOps[K]['result'] | undefined {
    if (!IN_MEMORY_OPS.has(request.op)) return undefined;
    const actor = this.runtime.peek(request.userId, now);
    if (!(actor instanceof UserActor)) return undefined;
    return this.perform(actor, request, now) as UserOps[K]['result'];
  }

  /** The operation's result, or a promise of it for operations written through to Postgres. */
  private perform(user: UserActor, request: UserRequest, now: number): unknown {
    const principal = user.authenticate(request.credential, now);
    checkAccess(principal, request.op);
    const { op, args } = request;
    const tiers = this.tiers;
    switch (op) {
      case 'auth.verify': {
        const verified: UserOps['auth.verify']['result'] = { userId: user.key, tier: user.tier, via: principal.via };
        if (principal.sessionId !== undefined) verified.sessionId = principal.sessionId;
        return verified;
      }
      case 'quota.consume': {
        const { cost, resource, amounts, idempotencyKey } = args as UserOps['quota.consume']['args'];
        return user.consume(tiers, now, { cost, resource, amounts }, idempotencyKey);
      }
      case 'quota.get':
        return { tier: user.tier, limits: user.quotaSnapshot(tiers, now) };
      case 'quota.reserve':
        return user.reserve(tiers, now, args as UserOps['quota.reserve']['args']);
      case 'quota.settle': {
        const { id, actual, amounts } = args as UserOps['quota.settle']['args'];
        return { limits: user.settle(tiers, now, id, { actual, amounts }) };
      }
      case 'quota.release':
        user.release(tiers, now, (args as UserOps['quota.release']['args']).id);
        return null;
      case 'profile.get':
        return profileView(user);
      case 'profile.update':
        return this.updateProfile(user, args as UserOps['profile.update']['args']);
      case 'preferences.get':
        return JSON.parse(user.preferencesJson) as JsonObject;
      case 'preferences.merge':
        return user.exclusive(() =>
          this.writePreferences(user, mergePatch(JSON.parse(user.preferencesJson), (args as UserOps['preferences.merge']['args']).patch)),
        );
      case 'preferences.put':
        return user.exclusive(() => this.writePreferences(user, (args as UserOps['preferences.put']['args']).document));
      case 'sessions.list':
        return {
          sessions: user.sessions.filter((s) => s.expiresAt > now).map(sessionView),
          current: principal.sessionId ?? null,
        };
      case 'sessions.create':
        return this.createSession(user, args as NewSession, now);
      case 'sessions.revoke':
        return this.revokeSession(user, (args as UserOps['sessions.revoke']['args']).id);
      case 'sessions.revokeAll':
        return this.revokeAll(user, principal, (args as UserOps['sessions.revokeAll']['args']).keepCurrent);
      case 'keys.list':
        return { keys: user.keys.map((key) => keyView(user.key, key)) };
      case 'keys.create':
        return this.createKey(user, args as NewKey, now);
      case 'keys.delete':
        return this.deleteKey(user, (args as UserOps['keys.delete']['args']).id);
      case 'admin.get':
        return this.adminView(user, now);
      case 'admin.update':
        return this.adminUpdate(user, args as UserOps['admin.update']['args'], now);
      default:
        return assertNever(op);
    }
  }

  private updateProfile(user: UserActor, patch: UserOps['profile.update']['args']): Promise<ProfileView> {
    return user.exclusive(async () => {
      await this.store.updateProfile(user.key, patch);
      if (patch.name !== undefined) user.name = patch.name;
      if (patch.email !== undefined) user.email = patch.email;
      return profileView(user);
    });
  }

  private async writePreferences(user: UserActor, document: unknown): Promise<JsonObject> {
    const text = serializePreferences(document);
    await this.store.updatePreferences(user.key, document as JsonObject);
    user.preferencesJson = text;
    return JSON.parse(text) as JsonObject;
  }

  private createSession(user: UserActor, session: NewSession, now: number): Promise<SessionView> {
    return user.exclusive(async () => {
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
      if (evicted.length > 0) await this.store.revokeSessions(user.key, evicted);
      const record: SessionRecord = {
        ...session,
        userId: user.key,
        createdAt: new Date(now),
        expiresAt: new Date(session.expiresAt),
        lastActiveAt: new Date(now),
      };
      await this.store.insertSession(record);
      const gone = new Set([...evicted, ...expired]);
      user.sessions = [...user.sessions.filter((s) => !gone.has(s.id)), toSession(record)];
      return sessionView(user.sessions[user.sessions.length - 1]!);
    });
  }

  private revokeSession(user: UserActor, id: string): Promise<null> {
    return user.exclusive(async () => {
      if (user.findSession(id) === undefined) throw new NotFoundError('session');
      await this.store.revokeSessions(user.key, [id]);
      user.sessions = user.sessions.filter((s) => s.id !== id);
      return null;
    });
  }

  private revokeAll(user: UserActor, principal: Principal, keepCurrent: boolean): Promise<{ revoked: number }> {
    return user.exclusive(async () => {
      const keep = keepCurrent ? principal.sessionId : undefined;
      const ids = user.sessions.filter((s) => s.id !== keep).map((s) => s.id);
      if (ids.length > 0) await this.store.revokeSessions(user.key, ids);
      user.sessions = user.sessions.filter((s) => s.id === keep);
      return { revoked: ids.length };
    });
  }

  private createKey(user: UserActor, key: NewKey, now: number): Promise<KeyView> {
    return user.exclusive(async () => {
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
      await this.store.insertApiKey(record);
      const created = toApiKey(record);
      user.keys = [...user.keys, created];
      return keyView(user.key, created);
    });
  }

  private deleteKey(user: UserActor, id: string): Promise<null> {
    return user.exclusive(async () => {
      if (!user.keys.some((k) => k.id === id)) throw new NotFoundError('API key');
      await this.store.deleteApiKey(user.key, id);
      user.keys = user.keys.filter((k) => k.id !== id);
      return null;
    });
  }

  private adminView(user: UserActor, now: number): UserOps['admin.get']['result'] {
    return { ...profileView(user), blocked: user.blocked, overrides: user.overrides ?? [], limits: user.quotaSnapshot(this.tiers, now) };
  }

  private adminUpdate(user: UserActor, patch: UserOps['admin.update']['args'], now: number): Promise<UserOps['admin.update']['result']> {
    return user.exclusive(async () => {
      if (patch.tier !== undefined && !this.tiers.has(patch.tier)) throw new UnknownTierError(patch.tier);
      if (patch.overrides !== undefined) {
        const problem = validateLimits(patch.overrides);
        if (problem !== null) throw new InvalidRequestError(`overrides: ${problem}`);
      }
      await this.store.updateAdmin(user.key, patch);
      if (patch.tier !== undefined) user.tier = patch.tier;
      if (patch.blocked !== undefined) user.blocked = patch.blocked;
      if (patch.overrides !== undefined) user.overrides = patch.overrides.length > 0 ? patch.overrides : null;
      if (patch.tier !== undefined || patch.overrides !== undefined) user.relimit(this.tiers);
      return this.adminView(user, now);
    });
  }
}

/**
 * A credential naming a user that does not exist gets the answer a wrong secret gets: a
 * prober cannot tell made-up user ids from real ones. Admin routes and platform services
 * (the NATS API), which name the user themselves, are told "not found".
 */
function missingUserAsBadCredential(error: unknown, credential: Credential): unknown {
  if (!(error instanceof NotFoundError) || credential.kind === 'trusted' || credential.kind === 'service') return error;
  return new UnauthenticatedError(credential.kind === 'key' ? INVALID_API_KEY : 'the session has ended');
}

/** The refusal of an API key where only a session token is accepted. */
export const API_KEY_REFUSED = 'API keys may only be used for quota operations; use a session token';

function checkAccess(principal: Principal, op: UserOpName): void {
  if (principal.via !== 'key') return;
  const needed = SCOPE_OF[op];
  if (needed === undefined) throw new ForbiddenError(API_KEY_REFUSED);
  const scopes = principal.scopes ?? [];
  if (scopes.length === 0 || scopes.includes('quota') || scopes.includes(needed)) return;
  throw new ForbiddenError(`this API key lacks the "${needed}" scope`);
}

function assertNever(value: never): never {
  throw new TallyError('internal', `unknown operation ${String(value)}`);
}
