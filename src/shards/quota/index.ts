/** The quota engine: pure functions of (limits, state, now, request). */
export { type Charge, chargeText, DEFAULT_RESOURCE, namedTwice } from './charge.js';
export {
  consume,
  type Decision,
  newQuotaState,
  type QuotaState,
  quietAt,
  release,
  reserve,
  settle,
  snapshot,
  TOO_MANY_HOLDS,
} from './engine.js';
export { MAX_HOLDS, type Settlement, settledCharge } from './holds.js';
export { findIdempotent, rememberIdempotent } from './idempotency.js';
export { compileLimits, type LimitSet } from './limitSet.js';
export type { Limit, LimitState } from './limits.js';
export { migrateQuotaState } from './migrate.js';
export { nextPeriodStart, periodStart } from './period.js';
export { type QuotaStateJSON, quotaStateFromJSON, quotaStateToJSON } from './serialize.js';
export { validateLimits } from './validate.js';
