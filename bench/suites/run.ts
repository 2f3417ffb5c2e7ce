/**
 * `npm run bench`: the ceiling, the Redis peer and Tally, each driven by the same load
 * generator with the same settings, one at a time, then the micro benchmarks in a child
 * with `--expose-gc`. Prints a table and the ratios; the JSON goes to BENCH_OUT when that
 * names a file. See bench/README.md.
 *
 * This module loads nothing from `src/`: Tally runs as a child process and the micro
 * benchmarks in another, so a broken build of one part still lets the others report.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startNode, stopAll, waitForLine } from '../harness/children.js';
import { type ClusterResult, formatCluster } from '../harness/clusterReport.js';
import { chooseGenerator, describeGenerator, type Generator } from '../harness/load.js';
import { type BenchReport, formatReport, type Measured, ratios, TARGETS, type TargetName } from '../harness/report.js';
import { formatScale, type ScaleResult } from '../harness/scaleReport.js';
import { readSettings, type Settings } from '../harness/settings.js';
import { KEY_COUNT } from '../harness/workload.js';
import { measureTarget, median, type Running, startTarget } from '../targets/targets.js';
import type { MicroResult } from './micro.js';
import type { PipelineResult } from './pipeline.js';

/**
 * Starts every target, then measures them in turn, `rounds` times over: never two at once,
 * but interleaved, so that a slow minute of a shared machine lands on every target rather
 * than on one. Each target's result is its median round.
 */
async function measureTargets(targets: TargetName[], generator: Generator, settings: Settings, report: BenchReport): Promise<void> {
  const running = new Map<TargetName, Running>();
  const rounds = new Map<TargetName, Measured[]>();
  const fail = (target: TargetName, error: unknown) => {
    report.failures[target] = error instanceof Error ? error.message : String(error);
    console.error(`[bench] ${TARGETS[target]} failed:`, error);
  };
  try {
    for (const target of targets) {
      try {
        running.set(target, await startTarget(target, settings));
        rounds.set(target, []);
      } catch (error) {
        fail(target, error);
      }
    }
    for (let round = 1; round <= settings.rounds; round++) {
      for (const [target, server] of running) {
        console.error(
          `[bench] round ${round}/${settings.rounds}, ${TARGETS[target]}: ${settings.warmUpSeconds} s warm-up, ${settings.durationSeconds} s measured`,
        );
        try {
          const result = await measureTarget(server, generator, settings);
          console.error(`[bench] ${TARGETS[target]}: ${result.rps.toFixed(0)} req/s`);
          rounds.get(target)!.push(result);
        } catch (error) {
          fail(target, error);
          running.delete(target);
          rounds.delete(target);
          await server.stop();
        }
      }
    }
  } finally {
    await Promise.all([...running.values()].map((server) => server.stop()));
  }
  for (const [target, results] of rounds) {
    report.load[target] = median(results);
    report.rounds[target] = results.map((result) => result.rps);
  }
}

/** Runs `node [flags] dist/bench/suites/<script>` (a suite next to this one) and returns the JSON of its `<TAG> {…}` line. */
async function runResultChild<T>(name: string, flags: string[], script: string, tag: string, timeoutMs = 300_000): Promise<T> {
  console.error(`[bench] ${name} (node ${[...flags, `dist/bench/suites/${script}`].join(' ')})`);
  const child = startNode(name, [...flags, join(import.meta.dirname, script)]);
  try {
    const [, json] = await waitForLine(child, new RegExp(`^${tag} (.*)$`), timeoutMs);
    return JSON.parse(json!) as T;
  } finally {
    await child.stop();
  }
}

async function main(): Promise<number> {
  const settings = readSettings();
  const targets = (Object.keys(TARGETS) as TargetName[]).filter((target) => settings.only.has(target));
  const generator = targets.length > 0 ? chooseGenerator() : undefined;
  const report: BenchReport = {
    generator: generator === undefined ? 'none' : describeGenerator(generator),
    settings: {
      connections: settings.connections,
      durationSeconds: settings.durationSeconds,
      warmUpSeconds: settings.warmUpSeconds,
      rounds: settings.rounds,
      keys: KEY_COUNT,
      redisAutoPipelining: settings.redisAutoPipelining,
    },
    load: {},
    rounds: {},
    ratios: {},
    failures: {},
  };
  if (generator !== undefined) await measureTargets(targets, generator, settings, report);
  report.ratios = ratios(report.load);
  if (settings.only.has('micro')) {
    try {
      report.micro = await runResultChild<MicroResult>('micro benchmarks', ['--expose-gc'], 'micro.js', 'MICRO_RESULT');
    } catch (error) {
      report.failures.micro = error instanceof Error ? error.message : String(error);
    }
  }
  if (settings.only.has('pipeline')) {
    try {
      report.pipeline = await runResultChild<PipelineResult>('pipeline', [], 'pipeline.js', 'PIPELINE_RESULT');
    } catch (error) {
      report.failures.pipeline = error instanceof Error ? error.message : String(error);
    }
  }
  let cluster: ClusterResult | undefined;
  if (settings.only.has('cluster')) {
    try {
      cluster = await runResultChild<ClusterResult>('cluster', [], 'cluster.js', 'CLUSTER_RESULT', 600_000);
    } catch (error) {
      report.failures.cluster = error instanceof Error ? error.message : String(error);
    }
  }
  let scale: ScaleResult | undefined;
  if (settings.only.has('scale')) {
    try {
      // WebSocket (to ask the node's inspector for its heap) is behind a flag on Node 20.
      scale = await runResultChild<ScaleResult>('scale', ['--experimental-websocket', '--no-warnings'], 'scale.js', 'SCALE_RESULT', 1_800_000);
    } catch (error) {
      report.failures.scale = error instanceof Error ? error.message : String(error);
    }
  }
  console.log(`\n${formatReport(report)}`);
  if (cluster !== undefined) console.log(`\ncluster (three nodes on one NATS and one PostgreSQL, on this machine):\n${formatCluster(cluster)}`);
  if (scale !== undefined) console.log(`\nscale (${scale.users} users on PostgreSQL):\n${formatScale(scale)}`);
  if (settings.out !== undefined) writeFileSync(settings.out, `${JSON.stringify(report, null, 2)}\n`);
  const microFailed = report.micro !== undefined && Object.keys(report.micro.errors).length > 0;
  return Object.keys(report.failures).length > 0 || microFailed ? 1 : 0;
}

main().then(
  async (code) => {
    await stopAll();
    process.exit(code);
  },
  async (error: unknown) => {
    console.error(error);
    await stopAll();
    process.exit(1);
  },
);
