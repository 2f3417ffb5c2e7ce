/**
 * The cluster protocol: membership, the shard map and its coordinator, placement, operator
 * requests, forwarding to owners, and the node that runs them all. `protocol.ts` names every
 * subject, bucket and key; the readers here are what the operator CLI builds on.
 */
export { ClusterNode } from './clusterNode.js';
export { type NatsAuth, natsConnectOptions } from './connection.js';
export { Coordinator } from './coordinator.js';
export { Forwarder } from './forwarder.js';
export { BucketWatch, openBucket } from './kv.js';
export { ClusterMac } from './mac.js';
export { Membership, type MembershipOptions } from './membership.js';
export type { OperatorRequest } from './operator.js';
export { planPlacement, targetPlacement } from './placement.js';
export { OPERATOR_INBOX_PREFIX, OPERATOR_REQUESTS_SUBJECT, REVOKED_SUBJECT, TIER_EDITS_SUBJECT } from './protocol.js';
export { ClusterNotFoundError, ClusterReader, readEpochs } from './readers.js';
export { ClusterRouter } from './router.js';
export { ShardMap, type ShardMapView } from './shardMap.js';
export type { ForwardItem } from './wire.js';
