/**
 * The operations on one user, executed on the node that owns the user. A request names the
 * user, the credential it came with and one operation; the owner checks the credential
 * against its live sessions and keys and performs the operation in the same step, so a
 * request crosses the cluster at most once.
 *
 * Requests are plain data (`UserRequest`), so the router can run them here or send them to
 * the owner over NATS unchanged.
 */
import { ForbiddenError, INVALID_API_KEY, NotFoundError, OwnerUnavailableError, StaleEpochError, TallyError, UnauthenticatedError } from './errors.js';
import type { UserStore } from './ports.js';
import type { JsonObject } from './preferences.js';
import type { Settlement } from './quota/index.js';
import type { Limit, LimitState } from './quota/limits.js';
import type { ActorRuntime, Loaded } from './runtime.js';
import type { TierRegistry } from './tiers.js';
import { type Credential, type Principal, type QuotaDecision, type QuotaRequest, UserActor } from './userActor.js';
import { handlerOf, type UserDeps } from './userHandlers.js';
import type { KeyView, ProfileView, SessionView } from './views.js';

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

export type KeyScope = (typeof KEY_SCOPES)[number];

export class UserService {
  private readonly deps: UserDeps;

  constructor(
    private readonly runtime: ActorRuntime,
    private readonly store: UserStore,
    private readonly tiers: TierRegistry,
  ) {
    this.deps = { store, tiers };
  }

  /** The user's actor, loading it from Postgres on first use. */
  actor(userId: string, now: number): UserActor | Promise<UserActor> {
    return this.runtime.get(userId, now, this.loadUser, 'user');
  }

  private readonly loadUser = async (userId: string, shard: UserActor['shard']): Promise<Loaded<UserActor>> => {
    const { found, fenceEpoch, seq, unwritten } = await this.store.loadUser(userId, shard.index);
    return { actor: found === null ? null : new UserActor(found, shard, this.tiers), fenceEpoch, seq, unwritten };
  };

  /**
   * Whether a consume of the user's could ever be answered fail-open (failOpen.ts): false
   * only when its actor is in memory here and its tier, as it is now, is strict. A router
   * records the credential of an answered request for fail-open only when this is true: a
   * node holding 300,000 users on a strict tier keeps no record for any of them.
   */
  mayFailOpen(userId: string): boolean {
    const actor = this.runtime.find(userId);
    return !(actor instanceof UserActor) || this.tiers.get(actor.tier)?.failOpen !== false;
  }

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
        );
      }
      return Promise.resolve(this.perform(found, request, now));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Runs an `in-memory` operation (quota operations, `auth.verify`) synchronously when the
   * user's actor is already active here; undefined when it is not, or for any other
   * operation (the caller then uses `execute`). Errors are thrown.
   */
  tryExecute<K extends UserOpName>(request: UserRequest<K>, now: number): UserOps[K]['result'] | undefined {
    const handler = handlerOf(request.op);
    if (handler?.kind !== 'in-memory') return undefined;
    const actor = this.runtime.peek(request.userId, now);
    if (!(actor instanceof UserActor)) return undefined;
    const principal = actor.authenticate(request.credential, now);
    checkAccess(principal, handler.keyScope);
    return handler.run(actor, request.args, now, this.deps, principal);
  }

  /** The operation's result, or a promise of it for operations written through to Postgres. */
  private perform<K extends UserOpName>(user: UserActor, request: UserRequest<K>, now: number): UserOps[K]['result'] | Promise<UserOps[K]['result']> {
    const principal = user.authenticate(request.credential, now);
    const handler = handlerOf(request.op);
    // An operation this build does not know is refused to API keys like any without a scope.
    checkAccess(principal, handler?.keyScope);
    if (handler === undefined) throw new TallyError('internal', `unknown operation ${String(request.op)}`);
    const { args } = request;
    if (handler.kind !== 'write-through') return handler.run(user, args, now, this.deps, principal);
    return user.exclusive(async () => {
      // Its turn may come long after the request arrived: the shard may have moved, or the
      // lease lapsed, meanwhile. Refused then; the caller asks the owner of the moment.
      const { shard } = user;
      if (!shard.serving || !this.runtime.mayDecide()) throw new OwnerUnavailableError(`shard ${shard.index} is not served by this node`);
      // Every write of the change carries the epoch the shard is served under now: once another
      // node has claimed the shard (a move, or a takeover after this node's lease lapsed), the
      // store refuses them, and the next owner never misses a change it was told succeeded.
      const fence = { shard: shard.index, epoch: shard.epoch };
      try {
        return await handler.run(user, args, now, { ...this.deps, fence }, principal);
      } catch (error) {
        // Refused by the fence while still served under that epoch: another node has the shard.
        if (error instanceof StaleEpochError && shard.serving && shard.epoch === fence.epoch) this.runtime.loseShard(shard, error.fenceEpoch);
        throw error;
      }
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

function checkAccess(principal: Principal, needed: KeyScope | undefined): void {
  if (principal.via !== 'key') return;
  if (needed === undefined) throw new ForbiddenError(API_KEY_REFUSED);
  const scopes = principal.scopes ?? [];
  if (scopes.length === 0 || scopes.includes('quota') || scopes.includes(needed)) return;
  throw new ForbiddenError(`this API key lacks the "${needed}" scope`);
}
