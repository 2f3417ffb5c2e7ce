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
