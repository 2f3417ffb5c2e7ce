/**
 * Micro benchmarks, in a process of their own started with `--expose-gc` (run.ts does it):
 * - decision: one consume over the bench tier's two limits (rate + budget), through the
 *   pure quota engine, in ns per operation;
 * - heap per active user: heap growth, after full collections, per object that a factory
 *   creates and the measurement keeps alive.
 *
 * As a script (`node --expose-gc dist/bench/suites/micro.js`) it prints one JSON line, `MicroResult`.
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import {
  ActorRuntime,
  ALL_WRITTEN,
  compileLimits,
  consume,
  initHashing,
  issueApiKey,
  type LoadedUser,
  newQuotaState,
  newUserId,
  TierRegistry,
  UserActor,
} from '../../src/shards/index.js';
import { BENCH_TIER } from '../harness/workload.js';

const WARM_UP_ITERATIONS = 100_000;
export const HEAP_OBJECTS = 100_000;

/**
 * Nanoseconds per call of `body`, after a warm-up long enough for the optimising compiler.
 * `body` gets a call count that runs on from the warm-up, so a clock derived from it never
 * goes back (GCRA rightly refuses when it does).
 */
function timeNs(iterations: number, body: (call: number) => void): number {
  let call = 0;
  while (call < WARM_UP_ITERATIONS) body(call++);
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) body(call++);
  return Number(process.hrtime.bigint() - start) / iterations;
}

/**
 * One quota decision through the pure engine. The clock moves 1 ms every 1024 decisions,
 * about real time at a million decisions a second; every decision is an admitted one.
 */
export function decisionNs(iterations = 1_000_000): number {
  const set = compileLimits(BENCH_TIER.limits);
  let state = newQuotaState(set);
  const start = Date.now();
  const request = { cost: 1, resource: 'default' };
  let refused = 0;
  const ns = timeNs(iterations, (i) => {
    const decision = consume(set, state, start + (i >>> 10), request);
    state = decision.state;
    if (!decision.allowed) refused++;
  });
  if (refused > 0) throw new Error(`${refused} decisions were refusals: the bench limits are too low to measure admitted decisions`);
  return ns;
}

export interface HeapSubject {
  description: string;
  /** Creates one object; the measurement keeps what it returns (or resolves to) alive. */
  create(i: number): unknown;
  /** Called once all are created, before the final collection (e.g. to flush dirty state). */
  settle?(): void;
}

/**
 * Heap bytes per object: `heapUsed` after two full collections, before and after creating
 * `count` objects. The array holding them is allocated before the first reading, so it is
 * not counted; anything set up before the call (a runtime, a tier registry) is not either.
 */
export async function heapPerObject(subject: HeapSubject | ((i: number) => unknown), count = HEAP_OBJECTS): Promise<number> {
  if (typeof subject === 'function') subject = { description: subject.name, create: subject };
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('heap measurement needs `node --expose-gc`');
  const kept = new Array<unknown>(count).fill(null);
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < count; i++) kept[i] = await subject.create(i);
  subject.settle?.();
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  if (kept[count - 1] == null) throw new Error('the factory returned nothing to keep');
  return (after - before) / count;
}

// ---------------------------------------------------------------------------------------
// BENCH HOOK (lead): the active user actor whose heap is measured, and the decision timed
// through it. Written against today's `src/shards/index.ts` (ActorRuntime.get with a loader,
// UserActor(loaded, shard, tiers), actor.consume(tiers, now, request)); when that API
// changes, change only this section. Run `BENCH_ONLY=micro node dist/bench/suites/run.js` to check.
// ---------------------------------------------------------------------------------------

const BENCH_MAC_KEY = randomBytes(32);

/** A user as Postgres would hand it over: the bench tier, one API key, no sessions yet. */
function loadedUser(id: string): LoadedUser {
  const key = issueApiKey(id, BENCH_MAC_KEY);
  const createdAt = new Date();
  return {
    user: { id, email: `${id}@example.com`, name: 'Bench User', tier: 'bench', passwordHash: 'x', preferences: {}, blocked: false, overrides: [], createdAt },
    sessions: [],
    keys: [{ id: key.keyId, userId: id, prefix: key.prefix, hash: key.hash, name: 'bench', scopes: ['quota'], createdAt, expiresAt: null, lastUsedAt: null }],
    state: null,
  };
}

/** Activates the user through the runtime, as a request would, with `loaded` as what the store returned. */
function activate(runtime: ActorRuntime, tiers: TierRegistry, loaded: LoadedUser, now: number): Promise<UserActor> {
  return Promise.resolve(
    runtime.get(loaded.user.id, now, async (_key, shard) => ({ actor: new UserActor(loaded, shard, tiers), fenceEpoch: shard.epoch }), 'user'),
  );
}

async function benchRuntime(): Promise<{ runtime: ActorRuntime; tiers: TierRegistry }> {
  await initHashing();
  const tiers = new TierRegistry();
  tiers.put([{ name: 'bench', limits: BENCH_TIER.limits, failOpen: false, updatedAt: Date.now() }]);
  const runtime = new ActorRuntime({ maxActors: 10 * HEAP_OBJECTS, idleMs: 3_600_000, negativeTtlMs: 1000, negativeMax: 10 });
  for (const shard of runtime.shards) shard.status = 'owned';
  return { runtime, tiers };
}

/**
 * An active user: a UserActor on the two-limit bench tier with one API key, held by the
 * runtime (shard map entry, LRU links), with one consume done so its counters are in use.
 */
export async function activeUserActors(): Promise<HeapSubject> {
  const { runtime, tiers } = await benchRuntime();
  const now = Date.now();
  const request = { cost: 1, resource: 'default' };
  return {
    description: 'UserActor, 2 limits + 1 API key, activated by an ActorRuntime, after one consume',
    async create() {
      const actor = await activate(runtime, tiers, loadedUser(newUserId()), now);
      actor.consume(tiers, now, request);
      return actor;
    },
    settle() {
      // As the write-behind flusher does once the rows are durable.
      runtime.collectDirty(now).finish(ALL_WRITTEN);
    },
  };
}

/** One decision through a user actor: the engine plus the actor's bookkeeping. */
export async function actorDecisionNs(iterations = 1_000_000): Promise<number> {
  const { runtime, tiers } = await benchRuntime();
  const actor = await activate(runtime, tiers, loadedUser(newUserId()), Date.now());
  const start = Date.now();
  const request = { cost: 1, resource: 'default' };
  return timeNs(iterations, (i) => {
    actor.consume(tiers, start + (i >>> 10), request);
    if ((i & 1023) === 0) runtime.collectDirty(start).finish(ALL_WRITTEN); // as the flusher would, every so often
  });
}

// ---- end of BENCH HOOK ------------------------------------------------------------------

export interface MicroResult {
  decisionNs?: number;
  actorDecisionNs?: number;
  heapBytesPerActiveUser?: number;
  heapSubject?: string;
  /** What failed, by measurement: one broken part does not hide the others. */
  errors: Record<string, string>;
}

export async function runMicro(): Promise<MicroResult> {
  const result: MicroResult = { errors: {} };
  const attempt = async (name: string, measure: () => Promise<void> | void) => {
    try {
      await measure();
    } catch (error) {
      result.errors[name] = error instanceof Error ? error.message : String(error);
    }
  };
  // The heap first, while the heap is small and unfragmented by the timing loops.
  await attempt('heap', async () => {
    const subject = await activeUserActors();
    result.heapSubject = subject.description;
    result.heapBytesPerActiveUser = await heapPerObject(subject);
  });
  await attempt('decision', () => {
    result.decisionNs = decisionNs();
  });
  await attempt('actorDecision', async () => {
    result.actorDecisionNs = await actorDecisionNs();
  });
  return result;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(`MICRO_RESULT ${JSON.stringify(await runMicro())}`);
}
