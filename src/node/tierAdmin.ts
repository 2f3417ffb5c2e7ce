/**
 * Tier administration: edits are written through to Postgres and installed in this node's
 * registry at once; `refresh` (run every few hundred ms) picks up edits made through other
 * nodes, so an edit is live everywhere within a second.
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
