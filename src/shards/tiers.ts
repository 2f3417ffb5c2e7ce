/**
 * Tiers: named sets of limits. Every active user of a tier shares one compiled LimitSet, so
 * a user's own memory holds only counters. Editing a tier bumps `version`; each actor
 * compares versions on its next decision and re-resolves its limits, which is how an edit
 * reaches active actors without visiting them.
 */
import { compileLimits, type LimitSet } from './quota/index.js';
import type { Limit } from './quota/limits.js';

export interface Tier {
  readonly name: string;
  readonly limits: readonly Limit[];
  readonly failOpen: boolean;
  readonly set: LimitSet;
  readonly updatedAt: number;
}

export interface TierDefinition {
  name: string;
  limits: readonly Limit[];
  failOpen: boolean;
  updatedAt: number;
}

export class TierRegistry {
  private readonly tiers = new Map<string, Tier>();
  /** Bumped on every change; actors cache their resolved limits against it. */
  version = 0;

  get(name: string): Tier | undefined {
    return this.tiers.get(name);
  }

  has(name: string): boolean {
    return this.tiers.has(name);
  }

  all(): Tier[] {
    return [...this.tiers.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Installs tiers; unchanged definitions keep their compiled set. Returns true if any changed. */
  put(definitions: readonly TierDefinition[]): boolean {
    let changed = false;
    for (const definition of definitions) {
      const current = this.tiers.get(definition.name);
      if (current !== undefined && sameTier(current, definition)) continue;
      this.tiers.set(definition.name, {
        name: definition.name,
        limits: definition.limits,
        failOpen: definition.failOpen,
        set: compileLimits([...definition.limits]),
        updatedAt: definition.updatedAt,
      });
      changed = true;
    }
    if (changed) this.version++;
    return changed;
  }
}

function sameTier(tier: Tier, definition: TierDefinition): boolean {
  return tier.failOpen === definition.failOpen && JSON.stringify(tier.limits) === JSON.stringify(definition.limits);
}

/** A user's limits: the tier's, with overrides replacing limits of the same name or adding new ones. */
export function effectiveLimits(tier: readonly Limit[], overrides: readonly Limit[]): Limit[] {
  const byName = new Map<string, Limit>();
  for (const limit of tier) byName.set(limit.name, limit);
  for (const limit of overrides) byName.set(limit.name, limit);
  return [...byName.values()];
}
