/** The quota engine: pure functions of (limits, state, now, request). */
export { amountFor, type Charge, chargeText, DEFAULT_RESOURCE, namedTwice } from './charge.js';
export {
  consume,
  type Decision,
  newQuotaState,
  type QuotaRequest,
  type QuotaState,
  quietAt,
  release,
  reserve,
  type Settled,
  settle,
  snapshot,
  TOO_MANY_HOLDS,
} from './engine.js';
export { type Hold, MAX_HOLDS, type Settlement } from './holds.js';
export { findIdempotent, IDEMPOTENCY_TTL_MS, type IdempotencyEntry, MAX_IDEMPOTENCY_ENTRIES, rememberIdempotent } from './idempotency.js';
export { compileLimits, type LimitSet } from './limitSet.js';
export type { BudgetLimit, BudgetPeriod, Limit, LimitState, RateLimit, WindowLimit } from './limits.js';
export { migrateQuotaState } from './migrate.js';
export { nextPeriodStart, periodStart } from './period.js';
export { type QuotaStateJSON, quotaStateFromJSON, quotaStateToJSON } from './serialize.js';
export { validateLimits } from './validate.js';
