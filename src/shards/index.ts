/**
 * The actor runtime and the domain: users, generic limiters, tiers and the quota engine.
 * Nothing here does I/O of its own: storage arrives through the `UserStore` port and time
 * through `now` arguments.
 */
export { Actor, type ActivityTouches, type PersistedState } from './actor.js';
export * from './errors.js';
export { initHashing, shardOf, SHARD_COUNT } from './hash.js';
export {
  hashApiKey,
  isUserId,
  issueApiKey,
  looksLikeApiKey,
  newReservationId,
  newSessionId,
  newUserId,
  parseApiKey,
  type IssuedApiKey,
  type ParsedApiKey,
} from './ids.js';
export type { LimiterDecision } from './limiterActor.js';
export { LimiterService, type LimiterRequest, type LimiterSpec } from './limiterService.js';
export { isJsonObject, mergePatch, MAX_PREFERENCES_BYTES, type JsonObject } from './preferences.js';
export type { ApiKeyRecord, LoadedUser, SessionRecord, UserRecord, UserStore } from './ports.js';
export * from './quota/index.js';
export type { BudgetLimit, BudgetPeriod, Limit, LimitState, RateLimit, WindowLimit } from './quota/limits.js';
export { ActorRuntime, type DirtyCollection, type RuntimeOptions } from './runtime.js';
export { Shard, type ShardStatus } from './shard.js';
export { effectiveLimits, TierRegistry, type Tier, type TierDefinition } from './tiers.js';
export { UserActor, type Credential, type Principal, type QuotaDecision } from './userActor.js';
export { KEY_SCOPES, UserService, type NewKey, type NewSession, type UserOpName, type UserOps, type UserRequest } from './userService.js';
export * from './views.js';
export { LimitTexts } from './limitTexts.js';
