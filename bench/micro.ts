/**
 * Micro benchmarks, run in a child started with --expose-gc:
 * - one quota decision: the pure engine, and the same decision through a user actor;
 * - heap per active user actor with two limits (rate + budget) and one API key, as the
 *   runtime holds it (shard map entry and LRU links included).
 * Prints one JSON line.
 */
import {
  ActorRuntime,
  compileLimits,
  consume,
  initHashing,
  issueApiKey,
  newQuotaState,
  newUserId,
  TierRegistry,
  UserActor,
  type LoadedUser,
  type Shard,
} from '../src/shards/index.js';

const LIMITS = [
  { name: 'requests', kind: 'rate' as const, limit: 1_000_000_000, period_ms: 60_000, burst: 1_000_000 },
  { name: 'tokens', kind: 'budget' as const, limit: 1_000_000_000_000, period: 'month' as const },
];

function time(iterations: number, body: (i: number) => void): number {
  for (let i = 0; i < Math.min(iterations, 100_000); i++) body(i); // warm-up: let the JIT settle
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) body(i);
  return Number(process.hrtime.bigint() - start) / iterations;
}

function decisionNs(): { engine: number; actor: number } {
  const set = compileLimits(LIMITS);
  let state = newQuotaState(set);
  const now = Date.now();
  const request = { cost: 1, resource: 'default' };
  const engine = time(2_000_000, (i) => {
    state = consume(set, state, now + i, request).state;
  });
  const tiers = new TierRegistry();
  tiers.put([{ name: 'bench', limits: LIMITS, failOpen: false, updatedAt: now }]);
  const runtime = new ActorRuntime({ maxActors: 10, idleMs: 60_000, negativeTtlMs: 1000, negativeMax: 10 });
  const actor = new UserActor(fixture(newUserId()), runtime.shards[0]!, tiers);
  const actorNs = time(2_000_000, (i) => {
    actor.consume(tiers, now + i, request);
    if ((i & 1023) === 0) runtime.collectDirty().commit(); // as the flusher would
  });
  return { engine, actor: actorNs };
}

function fixture(id: string): LoadedUser {
  const key = issueApiKey(id);
  const now = new Date();
  return {
    user: { id, email: `${id}@example.com`, name: 'Bench User', tier: 'bench', passwordHash: 'x', preferences: {}, blocked: false, overrides: [], createdAt: now },
    sessions: [],
    keys: [{ id: key.keyId, userId: id, prefix: key.prefix, hash: key.hash, name: 'bench', scopes: ['quota'], createdAt: now, expiresAt: null, lastUsedAt: null }],
    state: null,
  };
}

/** As the write-behind loop does after a successful write (in its own frame, so the batch is garbage after). */
function flushAll(runtime: ActorRuntime): void {
  runtime.collectDirty().commit();
}

async function heapPerActor(count: number): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with --expose-gc');
  await initHashing();
  const tiers = new TierRegistry();
  tiers.put([{ name: 'bench', limits: LIMITS, failOpen: false, updatedAt: Date.now() }]);
  const runtime = new ActorRuntime({ maxActors: count * 2, idleMs: 3_600_000, negativeTtlMs: 1000, negativeMax: 10 });
  for (const shard of runtime.shards) shard.status = 'owned';
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const now = Date.now();
  for (let i = 0; i < count; i++) {
    // Built here, as a database row would arrive: what the actor keeps of it is counted.
    const loaded = fixture(newUserId());
    const load = async (_key: string, shard: Shard) => new UserActor(loaded, shard, tiers);
    const actor = await runtime.get(loaded.user.id, now, load, 'user');
    actor.consume(tiers, now, { cost: 1, resource: 'default' }); // active: counters in use
  }
  flushAll(runtime);
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  if (runtime.size !== count) throw new Error('actors were dropped');
  return (after - before) / count;
}

const [engine, actor] = Object.values(decisionNs());
const heap = await heapPerActor(100_000);
console.log(JSON.stringify({ decisionEngineNs: engine, decisionActorNs: actor, heapBytesPerActor: heap }));
