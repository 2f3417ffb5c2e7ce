/**
 * The answer of `GET /v1/admin/cluster`: the nodes and the shard map as one node sees them.
 * It imports nothing, so that the console page (a browser bundle) shares it.
 */
export interface ClusterView {
  nodes: { id: string; self: boolean; shards: number; status: string; address?: string; lease_age_ms?: number; version?: string; requests?: number }[];
  /** Cluster mode: the node that writes the shard map. */
  leader?: string | null;
  /** `lost`: shards this node gave up because the fence showed another owner. */
  shards: {
    count: number;
    by_node: Record<string, number>;
    moving: number[];
    moves?: { shard: number; from: string; to: string }[];
    unassigned?: number;
    owners?: (string | null)[];
    lost?: number[];
  };
}

/**
 * The answer of `GET /v1/admin/cluster/rates`: each node's quota decisions per second over the
 * last 15 minutes, a point every `interval_ms`, oldest first, as the node that answers keeps them.
 */
export interface ClusterRates {
  interval_ms: number;
  nodes: { id: string; points: { at: string; per_second: number }[] }[];
}
