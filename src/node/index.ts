/** One Tally process: configuration, lifecycle, routing, accounts and the metrics registry. */
export { type AccountStore, Accounts, LOGIN_FAILURES, type Login, type LoginResult, type Registration } from './accounts.js';
export { type Config, ConfigError, loadConfig } from './config.js';
export { createLogger } from './logger.js';
export { Metrics } from './metrics.js';
export { TallyNode } from './node.js';
export { type Clock, LocalRouter, type Router } from './router.js';
export { TierAdmin, type TierView } from './tierAdmin.js';
