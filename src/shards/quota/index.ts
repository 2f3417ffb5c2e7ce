/** The quota engine: pure functions of (limits, state, now, request). */
export {
  consume,
  DEFAULT_RESOURCE,
  newQuotaState,
  release,
  reserve,
  settle,
  snapshot,
  TOO_MANY_HOLDS,
  type Decision,
  type QuotaRequest,
  type QuotaState,
  type Settled,
} from './engine.js';
export { MAX_HOLDS, type Hold } from './holds.js';
export { findIdempotent, IDEMPOTENCY_TTL_MS, MAX_IDEMPOTENCY_ENTRIES, rememberIdempotent, type IdempotencyEntry } from './idempotency.js';
export { applies, compileLimits, type LimitSet } from './limitSet.js';
export type { BudgetLimit, BudgetPeriod, Limit, LimitState, RateLimit, WindowLimit } from './limits.js';
export { migrateQuotaState } from './migrate.js';
export { nextPeriodStart, periodStart } from './period.js';
export { quotaStateFromJSON, quotaStateToJSON, type QuotaStateJSON } from './serialize.js';
export { validateLimits } from './validate.js';
