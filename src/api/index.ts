/**
 * What every transport shares: the request and reply schemas, the validator, the text checks,
 * the quota commands, the service API's operations, the router interface and the problem
 * mapper. HTTP (`src/http`) and NATS (`src/nats`) both call this folder; neither imports the
 * other.
 */

export { itemError } from './batch.js';
export type { ClusterRates, ClusterView } from './clusterView.js';
export { HttpError, type Problem, problem, problemFromError, STATUS_TEXT, serviceProblem } from './problem.js';
export {
  checkServiceLimiter,
  consumeRequest,
  DEGRADED_ANSWER,
  limitViews,
  refusalOf,
  releaseRequest,
  reserveRequest,
  settleRequest,
} from './quota.js';
export type { Caller, Router } from './router.js';

export * as schemas from './schemas.js';
export {
  type ApiKeyCallers,
  type PresentedApiKey,
  type ServiceOperation,
  type ServiceOperationName,
  type SessionTokenVerifier,
  serviceOperations,
} from './serviceOperations.js';
export { checkJsonText, checkText, truncate } from './text.js';
export { TierAdmin } from './tiers.js';
export {
  EXPORT_CSV_HEADER,
  exportFormat,
  exportMonth,
  exportText,
  type UsageReader,
  type UsageScope,
  usagePage,
  usageQuery,
} from './usage.js';
export { compile, type Validator } from './validate.js';
