/** One Tally process: configuration, lifecycle, routing, accounts and the metrics registry. */
export { Accounts, LOGIN_FAILURES, type AccountStore, type Login, type LoginResult, type Registration } from './accounts.js';
export { ConfigError, loadConfig, type Config } from './config.js';
export { createLogger } from './logger.js';
export { Metrics } from './metrics.js';
export { TallyNode } from './node.js';
export { LocalRouter, type Clock, type Router } from './router.js';
export { SessionTokens, type SessionClaims } from './sessionTokens.js';
export { TierAdmin, type TierView } from './tierAdmin.js';
