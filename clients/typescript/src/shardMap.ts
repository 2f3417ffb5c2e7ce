/**
 * The cluster's shard map as the client keeps it, the way a Redis Cluster client keeps the
 * slot map: fetched from any node (`tally.v1.cluster.map`), fetched again when a node says
 * it changed (`tally.events.map`) or answers `moved`, and read on every call to find the
 * owner of a user's shard. The shard is `xxh64(key) mod shard_count`, the key being the
 * user id, or the map's `limiter_prefix` followed by a limiter's key.
 *
 * The map is only advice: a node that no longer owns a shard says `moved`, and the client
 * asks again. A wrong map costs a round trip, never a wrong decision.
 */
import xxhash from 'xxhash-wasm';

/** The map as `tally.v1.cluster.map` answers it. */
export interface WireShardMap {
  shard_count: number;
  hash: string;
  limiter_prefix: string;
  direct_prefix: string;
  nodes: string[];
  owners: number[];
}

/** Refreshes this close together are one: a move changes many shards, and every node says so. */
const REFRESH_GAP_MS = 20;

export class ShardMap {
  private nodes: string[] = [];
  private owners: Int32Array = new Int32Array(0);
  private shardCount = 0;
  /** Where a limiter's key begins, in the key its shard is computed from. */
  limiterPrefix = '';
  /** Where a node's own subjects begin (the node id and the operation follow). */
  directPrefix = '';
  private refreshing: Promise<void> | null = null;
  private refreshedAt = Number.NEGATIVE_INFINITY;
  /** How many times the map was fetched (for tests and the bench). */
  fetches = 0;

  private constructor(
    private readonly h64: (input: string) => bigint,
    private readonly fetchMap: () => Promise<WireShardMap>,
  ) {}

  /** Fetches the map once; rejects when no node answers. */
  static async load(fetchMap: () => Promise<WireShardMap>): Promise<ShardMap> {
    const { h64 } = await xxhash();
    const map = new ShardMap((input) => h64(input), fetchMap);
    map.install(await fetchMap());
    return map;
  }

  /** The owner of `key`'s shard, or undefined when the map names none. */
  ownerOf(key: string): string | undefined {
    if (this.shardCount === 0) return undefined;
    const index = this.owners[Number(this.h64(key) % BigInt(this.shardCount))]!;
    return index < 0 ? undefined : this.nodes[index];
  }

  /**
   * Fetches the map again: one fetch at a time, and not again within REFRESH_GAP_MS of the
   * last (its answer is as new as another would be). Never rejects: on failure the old map stays.
   */
  refresh(): Promise<void> {
    if (this.refreshing !== null) return this.refreshing;
    const wait = this.refreshedAt + REFRESH_GAP_MS - performance.now();
    this.refreshing = (async () => {
      try {
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        this.install(await this.fetchMap());
      } catch {
        // The old map stays; the calls it misroutes are answered `moved` or go to any node.
      } finally {
        this.refreshedAt = performance.now();
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  private install(wire: WireShardMap): void {
    if (wire.hash !== 'xxh64' || !Number.isInteger(wire.shard_count) || wire.owners.length !== wire.shard_count) {
      throw new Error(`a shard map this client cannot read (hash ${wire.hash}, ${wire.owners?.length} owners)`);
    }
    this.fetches++;
    this.nodes = wire.nodes;
    this.owners = Int32Array.from(wire.owners);
    this.shardCount = wire.shard_count;
    this.limiterPrefix = wire.limiter_prefix;
    this.directPrefix = wire.direct_prefix;
  }
}
