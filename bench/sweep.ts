/**
 * `node dist/bench/sweep.js`: how many connections the generator should open. Measures the
 * chosen targets (BENCH_ONLY, default ceiling,redis) at each count in BENCH_SWEEP (default
 * 16,32,64,128), every count in every round, interleaved, and prints the median of each.
 * Pick the smallest count past which the ceiling's req/s stops growing: more only adds
 * queueing (p99) and generator work. Same BENCH_* settings as run.js otherwise.
 */
import { stopAll } from './children.js';
import { chooseGenerator, describeGenerator } from './load.js';
import { type Measured, TARGETS, type TargetName } from './report.js';
import { readSettings } from './settings.js';
import { measureTarget, median, type Running, startTarget } from './targets.js';

async function main(): Promise<void> {
  const settings = readSettings({ BENCH_ONLY: 'ceiling,redis', ...process.env });
  const counts = (process.env.BENCH_SWEEP ?? '16,32,64,128').split(',').map(Number);
  if (counts.some((count) => !Number.isInteger(count) || count < 1)) throw new Error('BENCH_SWEEP: a comma-separated list of connection counts');
  const targets = (Object.keys(TARGETS) as TargetName[]).filter((target) => settings.only.has(target));
  const generator = chooseGenerator();
  const results = new Map<string, Measured[]>();
  const running = new Map<TargetName, Running>();
  try {
    for (const target of targets) running.set(target, await startTarget(target, settings));
    for (let round = 1; round <= settings.rounds; round++) {
      for (const [target, server] of running) {
        for (const connections of counts) {
          const result = await measureTarget(server, generator, { ...settings, connections });
          console.error(`[sweep] round ${round}, ${TARGETS[target]}, -c${connections}: ${result.rps.toFixed(0)} req/s`);
          const key = `${target} ${connections}`;
          results.set(key, [...(results.get(key) ?? []), result]);
        }
      }
    }
  } finally {
    await Promise.all([...running.values()].map((server) => server.stop()));
  }
  console.log(
    `\n${describeGenerator(generator)}, ${settings.warmUpSeconds} s warm-up + ${settings.durationSeconds} s per point, ${settings.rounds} round(s), medians`,
  );
  console.log('target           conns     req/s   p50 ms   p99 ms  CPU µs/req  cores  req/s by round');
  for (const target of targets) {
    for (const connections of counts) {
      const rounds = results.get(`${target} ${connections}`) ?? [];
      if (rounds.length === 0) continue;
      const m = median(rounds);
      console.log(
        [
          TARGETS[target].padEnd(15),
          String(connections).padStart(6),
          m.rps.toFixed(0).padStart(9),
          m.p50Ms.toFixed(2).padStart(8),
          m.p99Ms.toFixed(2).padStart(8),
          (m.serverCpuUsPerRequest?.toFixed(1) ?? 'n/a').padStart(11),
          (m.serverCores?.toFixed(2) ?? 'n/a').padStart(6),
          ` ${rounds.map((r) => r.rps.toFixed(0)).join(' / ')}`,
        ].join(' '),
      );
    }
  }
}

main().then(
  async () => {
    await stopAll();
    process.exit(0);
  },
  async (error: unknown) => {
    console.error(error);
    await stopAll();
    process.exit(1);
  },
);
