/** One Tally process: configuration, lifecycle, routing, accounts and the metrics registry. */

export { initHashing } from '../shards/index.js';
export { type AccountStore, Accounts, LOGIN_FAILURES, type Login, type LoginResult, type Registration } from './accounts.js';
// For the cluster tooling (cluster/): where the cluster keeps its state, and how it places shards.
export { EPOCHS_SUBJECT } from './clusterNode.js';
export { type Config, ConfigError, loadConfig } from './config.js';
export { COORDINATOR_BUCKET } from './coordinator.js';
export { createLogger } from './logger.js';
export { MEMBERS_BUCKET, type MemberRecord } from './membership.js';
export { Metrics } from './metrics.js';
export { TallyNode } from './node.js';
export { drainKey, OPERATOR_BUCKET, pinKey } from './operator.js';
export { planPlacement, targetPlacement } from './placement.js';
export { type Clock, LocalRouter, type Router } from './router.js';
export { SHARDS_BUCKET, type ShardEntry } from './shardMap.js';
export { TierAdmin, type TierView } from './tierAdmin.js';
export { VERSION } from './version.js';
