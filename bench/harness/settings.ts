/** Every BENCH_* variable, read and checked once; a bad value stops the run naming it. */

const PARTS = ['ceiling', 'shaped', 'redis', 'tally', 'replica', 'micro', 'pipeline', 'cluster', 'scale'] as const;
type Part = (typeof PARTS)[number];

export interface Settings {
  /** BENCH_ONLY: the parts to run, of ceiling,shaped,redis,tally,replica,micro,pipeline,cluster,scale (default all). */
  only: ReadonlySet<Part>;
  /** BENCH_DURATION: seconds measured per target and round (default 10). */
  durationSeconds: number;
  /** BENCH_WARMUP: seconds of load before each measurement, not counted (default 2). */
  warmUpSeconds: number;
  /** BENCH_ROUNDS: how many times each target is measured, interleaved (default 3). */
  rounds: number;
  /** BENCH_CONNECTIONS: keep-alive connections of the generator (default 64). */
  connections: number;
  /** REDIS_URL: the Redis of the peer and of Tally's replica (default redis://127.0.0.1:6379). */
  redisUrl: string;
  /** BENCH_REDIS_AUTOPIPELINING=1: the peer batches its Redis calls per tick (default off). */
  redisAutoPipelining: boolean;
  /** BENCH_DATABASE_URL: run Tally on this Postgres instead of embedded PGlite. */
  databaseUrl: string | undefined;
  /** BENCH_PROFILE: a directory for a V8 CPU profile of the Tally node. */
  profileDir: string | undefined;
  /** BENCH_OUT: a file for the results as JSON. */
  out: string | undefined;
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const positive = (name: string, fallback: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got "${raw}"`);
    return value;
  };
  const only = (env.BENCH_ONLY ?? PARTS.join(','))
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
  for (const part of only) {
    if (!(PARTS as readonly string[]).includes(part)) throw new Error(`BENCH_ONLY: unknown part "${part}" (use ${PARTS.join(',')})`);
  }
  const pipelining = env.BENCH_REDIS_AUTOPIPELINING ?? '0';
  if (pipelining !== '0' && pipelining !== '1') throw new Error(`BENCH_REDIS_AUTOPIPELINING must be 0 or 1, got "${pipelining}"`);
  return {
    only: new Set(only as Part[]),
    durationSeconds: positive('BENCH_DURATION', 10),
    warmUpSeconds: positive('BENCH_WARMUP', 2),
    rounds: positive('BENCH_ROUNDS', 3),
    connections: positive('BENCH_CONNECTIONS', 64),
    redisUrl: env.REDIS_URL || 'redis://127.0.0.1:6379',
    redisAutoPipelining: pipelining === '1',
    databaseUrl: env.BENCH_DATABASE_URL || undefined,
    profileDir: env.BENCH_PROFILE || undefined,
    out: env.BENCH_OUT || undefined,
  };
}
