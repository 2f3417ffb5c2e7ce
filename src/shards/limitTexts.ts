/**
 * Texts built from the parts of a limit that do not change between answers (its name, kind,
 * size, window), remembered so that the hot path formats them once. Kept per limit name with
 * a few variants per name: tiers commonly share a name (`requests`) with different sizes, and
 * answers for their users interleave.
 */
import type { LimitState } from './quota/limits.js';

const VARIANTS_PER_NAME = 16;
const NAMES_MAX = 1024;

export class LimitTexts<T> {
  private readonly byName = new Map<string, T[]>();

  /** `matches` tells whether a remembered entry was built from the same parts as `state`. */
  constructor(
    private readonly matches: (entry: T, state: LimitState) => boolean,
    private readonly build: (state: LimitState) => T,
  ) {}

  for(state: LimitState): T {
    let variants = this.byName.get(state.name);
    if (variants !== undefined) {
      for (const entry of variants) if (this.matches(entry, state)) return entry;
    } else {
      if (this.byName.size >= NAMES_MAX) this.byName.clear();
      variants = [];
      this.byName.set(state.name, variants);
    }
    const entry = this.build(state);
    if (variants.length >= VARIANTS_PER_NAME) variants.shift();
    variants.push(entry);
    return entry;
  }
}
