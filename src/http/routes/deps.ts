/** What route handlers need from the node, passed in so the HTTP folder imports no wiring. */
import type { Accounts } from '../../accounts/index.js';
import type { ClusterRates, ClusterView, Router, TierAdmin, UsageReader } from '../../api/index.js';
import type { IssuedApiKey } from '../../shards/index.js';

export interface HealthReport {
  ready: boolean;
  /** What readiness depends on: every one ok. */
  checks: Record<string, { ok: boolean; detail?: string }>;
  /** What the node sees that does not decide readiness (a cluster's shards, while they move). */
  observed?: Record<string, { ok: boolean; detail?: string }>;
}

export interface RouteDeps {
  router: Router;
  accounts: Accounts;
  apiKeys: { issue(userId: string): IssuedApiKey };
  tiers: TierAdmin;
  /** The usage history (the node's store). */
  usage: UsageReader;
  clock: () => number;
  health(): Promise<HealthReport>;
  cluster(): ClusterView;
  /** Each node's quota decisions per second over the last 15 minutes, as this node keeps them. */
  rates(): ClusterRates;
  /** Where an entity lives: its shard, and the node that owns that shard now. */
  placement(entityKey: string): { shard: number; owner: string | null };
  metrics(): Promise<{ contentType: string; text: string }>;
}
