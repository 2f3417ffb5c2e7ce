/**
 * Entity placement: `shard = xxh64(entityKey) mod SHARD_COUNT`. The count is fixed for the
 * life of a cluster: changing it would move every entity at once.
 */
import xxhash from 'xxhash-wasm';

export const SHARD_COUNT = 1024;

let h64: ((input: string, seed?: bigint) => bigint) | undefined;

/** xxhash-wasm compiles its WebAssembly asynchronously; call once before `shardOf`. */
export async function initHashing(): Promise<void> {
  h64 ??= (await xxhash()).h64;
}

export function shardOf(entityKey: string): number {
  if (h64 === undefined) throw new Error('initHashing() must complete before shardOf()');
  return Number(h64(entityKey) % BigInt(SHARD_COUNT));
}

/**
 * The rendezvous weight of `node` for `shard`: each shard goes to the live node with the
 * highest weight (subject to a cap), so adding or removing a node moves only the shards it
 * gains or had.
 */
export function placementWeight(nodeId: string, shard: number): bigint {
  if (h64 === undefined) throw new Error('initHashing() must complete before placementWeight()');
  return h64(`${nodeId}/${shard}`);
}
