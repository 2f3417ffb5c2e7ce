/**
 * Tier administration: edits are written through to Postgres and installed in this node's
 * registry at once. In a cluster, `onEdited` tells the other nodes (a NATS broadcast), and
 * each runs `refresh` on hearing it, so an edit is live everywhere within a round trip.
 * `refresh` also runs every few seconds and after NATS reconnects, for a broadcast missed.
 */
import type { Limit, TierRegistry } from '../shards/index.js';

export interface TierRow {
  name: string;
  limits: unknown[];
  failOpen: boolean;
  updatedAt: Date;
}

export interface TierStore {
  listTiers(): Promise<TierRow[]>;
  upsertTier(tier: Omit<TierRow, 'updatedAt'>): Promise<TierRow>;
}

export interface TierView {
  name: string;
  limits: readonly Limit[];
  fail_open: boolean;
  updated_at: string;
}

export class TierAdmin {
  /** Called after an edit is written and installed here. */
  onEdited: (name: string) => void = () => {};

  constructor(
    private readonly store: TierStore,
    private readonly registry: TierRegistry,
  ) {}

  list(): TierView[] {
    return this.registry.all().map((tier) => ({
      name: tier.name,
      limits: tier.limits,
      fail_open: tier.failOpen,
      updated_at: new Date(tier.updatedAt).toISOString(),
    }));
  }

  async put(name: string, limits: Limit[], failOpen: boolean): Promise<TierView> {
    const row = await this.store.upsertTier({ name, limits, failOpen });
    this.install([row]);
    this.onEdited(name);
    return this.list().find((tier) => tier.name === name)!;
  }

  async refresh(): Promise<boolean> {
    return this.install(await this.store.listTiers());
  }

  private install(rows: TierRow[]): boolean {
    return this.registry.put(
      rows.map((row) => ({ name: row.name, limits: row.limits as Limit[], failOpen: row.failOpen, updatedAt: row.updatedAt.getTime() })),
    );
  }
}
