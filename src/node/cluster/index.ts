/**
 * The cluster protocol: membership, the shard map and its coordinator, placement, operator
 * requests, forwarding to owners, and the node that runs them all. `protocol.ts` names every
 * subject, bucket and key; the readers here are what the operator CLI builds on.
 */
export { ClusterNode } from './clusterNode.js';
export { Coordinator } from './coordinator.js';
export { Forwarder } from './forwarder.js';
export { BucketWatch, openBucket } from './kv.js';
export { type MemberRecord, Membership, type MembershipOptions } from './membership.js';
export { planPlacement, targetPlacement } from './placement.js';
export {
  COORDINATOR_BUCKET,
  drainKey,
  EPOCHS_SUBJECT,
  MEMBERS_BUCKET,
  OPERATOR_BUCKET,
  pinKey,
  SHARDS_BUCKET,
  TIER_EDITS_SUBJECT,
} from './protocol.js';
export { ClusterRouter } from './router.js';
export { type ShardEntry, ShardMap } from './shardMap.js';
export type { ForwardItem } from './wire.js';
