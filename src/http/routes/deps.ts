/** What route handlers need from the node, passed in so the HTTP folder imports no wiring. */
import type { Accounts, Router, TierAdmin } from '../../node/index.js';
import type { IssuedApiKey } from '../../shards/index.js';

export interface HealthReport {
  ready: boolean;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

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

export interface RouteDeps {
  router: Router;
  accounts: Accounts;
  apiKeys: { issue(userId: string): IssuedApiKey };
  tiers: TierAdmin;
  clock: () => number;
  health(): Promise<HealthReport>;
  cluster(): ClusterView;
  /** Where an entity lives: its shard, and the node that owns that shard now. */
  placement(entityKey: string): { shard: number; owner: string | null };
  metrics(): Promise<{ contentType: string; text: string }>;
}
