/**
 * What every transport shares: the request and reply schemas, the validator, the text checks,
 * the quota commands, the router interface and the problem mapper. HTTP (`src/http`) and NATS
 * (`src/nats`) both call this folder; neither imports the other.
 */
export type { ClusterView } from './clusterView.js';
export { HttpError, type Problem, problem, problemFromError, STATUS_TEXT, statusOf } from './problem.js';
export {
  chargeOf,
  checkServiceLimiter,
  consumeRequest,
  DEFAULT_RESERVATION_TTL_MS,
  limitViews,
  type Refusal,
  refusalOf,
  releaseRequest,
  reserveRequest,
  settleRequest,
} from './quota.js';
export type { Caller, Router } from './router.js';
export type { Body } from './schemas.js';
export * as schemas from './schemas.js';
export { checkJsonText, checkText, textProblem, truncate } from './text.js';
export { TierAdmin, type TierRow, type TierStore, type TierView } from './tiers.js';
export { compile, type Validator } from './validate.js';
