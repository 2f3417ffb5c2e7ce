/**
 * The actor runtime and the domain: users, generic limiters, tiers and the quota engine.
 * Nothing here does I/O of its own: storage arrives through the `UserStore` port and time
 * through `now` arguments.
 */
export { type ActivityTouches, Actor, type PersistedState } from './actor.js';
export { coalesced } from './coalesced.js';
export * from './errors.js';
export { initHashing, placementWeight, SHARD_COUNT, shardOf } from './hash.js';
export {
  apiKeyMacMatches,
  hashApiKey,
  type IssuedApiKey,
  issueApiKey,
  looksLikeApiKey,
  newReservationId,
  newSessionId,
  newUserId,
  type ParsedApiKey,
  parseApiKey,
} from './ids.js';
export type { LimiterDecision } from './limiterActor.js';
export { type LimiterNamespace, type LimiterRequest, LimiterService, type LimiterSpec } from './limiterService.js';
export { LimitTexts } from './limitTexts.js';
export type { ApiKeyRecord, FencedLoad, LoadedUser, SessionRecord, UserRecord, UserStore, WriteFence } from './ports.js';
export type { JsonObject } from './preferences.js';
export * from './quota/index.js';
export type { Limit, LimitState } from './quota/limits.js';
export { ActorRuntime, ALL_WRITTEN, type DirtyCollection } from './runtime.js';
export { Shard } from './shard.js';
export { TierRegistry } from './tiers.js';
export type { LiveUsage, PendingUsage } from './usage.js';
export type { TopUser, UsageBucket, UsageCursor, UsageExportLine, UsageGroup, UsageQuery, UsageResult } from './usageQuery.js';
export { type Credential, type QuotaDecision, UserActor } from './userActor.js';
export { API_KEY_REFUSED, KEY_SCOPES, type UserOpName, type UserOps, type UserRequest, UserService } from './userService.js';
export * from './views.js';
