/**
 * The cluster protocol's names, all in one place: every NATS subject a node publishes or
 * subscribes to, every JetStream KV bucket and key format, and the wire version of the
 * forwarded batches. Who may publish and subscribe what under these names is the trust model
 * of docs/operations.md (and deploy/nats-server.conf, which enforces it); what nodes write
 * under them is sealed (mac.ts). Check both against this file when a name is added.
 *
 * The NATS API for platform services (`tally.v1.>`) is not cluster protocol: it is the
 * service's public contract and lives with it, in src/nats.
 */

/** Version of the forwarded batch format (wire.ts); a node refuses a batch of another version. */
export const WIRE_VERSION = 2;
/** Items in one forwarded batch, at most: senders send up to 100; a larger batch is not answered. */
export const MAX_BATCH_ITEMS = 1000;

// --- Subjects ---------------------------------------------------------------------------

/** Forwarded batches for the entities a node owns: exactly that node subscribes, no queue group. */
export const nodeSubject = (nodeId: string): string => `tally.node.${nodeId}`;
/** Where the CLI asks every node for the epochs of the shards it serves (`tally cluster shards`). */
export const EPOCHS_SUBJECT = 'tally.cluster.epochs';
/**
 * Where the operator CLI asks for a drain, an undrain, a move or the end of moves (JSON
 * request, JSON answer): one node of the queue group checks the request and writes the
 * sealed entry, so that operators need no key secret and no right to write the buckets.
 */
export const OPERATOR_REQUESTS_SUBJECT = 'tally.cluster.operator';
export const OPERATOR_REQUESTS_QUEUE = 'tally-nodes';
/** The prefix of the operator CLI's reply subjects: the only inboxes the operator user may subscribe to. */
export const OPERATOR_INBOX_PREFIX = '_INBOX_tally_operator';
/** Where a node says it has edited a tier; every node reloads its tiers on hearing it. */
export const TIER_EDITS_SUBJECT = 'tally.tiers.edited';
/** Where an owner says a user's session, key or block changed (`{"user": id}`); every node forgets that user's fail-open credentials. */
export const REVOKED_SUBJECT = 'tally.cluster.revoked';

// --- KV buckets and their keys ---------------------------------------------------------

/** One entry per node, keyed by node id, renewed by its heartbeat (membership.ts). */
export const MEMBERS_BUCKET = 'tally_members';
/** The coordinator's lease: one entry, taken and renewed by compare-and-set (coordinator.ts). */
export const COORDINATOR_BUCKET = 'tally_coordinator';
export const LEADER_KEY = 'leader';
/** The shard map: one entry per shard, written by the coordinator only (shardMap.ts). */
export const SHARDS_BUCKET = 'tally_shards';
const SHARD_PREFIX = 'shard.';
export const shardKey = (shard: number): string => `${SHARD_PREFIX}${shard}`;
/** The shard a map key names, or null for any other key (the shard count is the caller's to check). */
export const keyedShard = (key: string): number | null => {
  if (!key.startsWith(SHARD_PREFIX)) return null;
  const shard = Number(key.slice(SHARD_PREFIX.length));
  return Number.isInteger(shard) ? shard : null;
};
/** What operators ask for: drained nodes and pinned shards (operator.ts, the CLI). */
export const OPERATOR_BUCKET = 'tally_operator';
const DRAIN_PREFIX = 'drain.';
const PIN_PREFIX = 'pin.';
export const drainKey = (node: string): string => `${DRAIN_PREFIX}${node}`;
export const pinKey = (shard: number): string => `${PIN_PREFIX}${shard}`;
/** Every pin key, as a KV key filter. */
export const ALL_PINS = `${PIN_PREFIX}>`;
/** The node a drain key names, or null for any other key. */
export const drainedNode = (key: string): string | null => (key.startsWith(DRAIN_PREFIX) ? key.slice(DRAIN_PREFIX.length) : null);
/** The shard a pin key names, or null for any other key. */
export const pinnedShard = (key: string): number | null => {
  if (!key.startsWith(PIN_PREFIX)) return null;
  const shard = Number(key.slice(PIN_PREFIX.length));
  return Number.isInteger(shard) ? shard : null;
};
