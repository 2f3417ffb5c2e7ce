/** The quota engine: pure functions of (limits, state, now, request). */
export { consume, MAX_HOLDS, newQuotaState, release, reserve, settle, snapshot, type Decision, type Hold, type QuotaRequest, type QuotaState } from './engine.js';
export { findIdempotent, IDEMPOTENCY_TTL_MS, MAX_IDEMPOTENCY_ENTRIES, rememberIdempotent, type IdempotencyEntry } from './idempotency.js';
export { applies, compileLimits, validateLimits, type LimitSet } from './limitSet.js';
export { nextPeriodStart, periodStart } from './period.js';
export { migrateQuotaState, quotaStateFromJSON, quotaStateToJSON } from './serialize.js';
