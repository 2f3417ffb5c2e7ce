/** The results of one bench run, as the table a reader compares and as JSON. */

import type { MicroResult } from '../suites/micro.js';
import type { PipelineResult } from '../suites/pipeline.js';
import type { LoadResult } from './load.js';
import { TOKENS_BODY } from './workload.js';

export const TARGETS = {
  ceiling: 'ceiling (uWS)',
  shaped: 'shaped ceiling',
  redis: 'redis-lua peer',
  tally: 'tally consume',
  replica: 'tally + replica',
} as const;

export type TargetName = keyof typeof TARGETS;

/** What the generator saw, and what the server spent on it. */
export interface Measured extends LoadResult {
  /** Server CPU µs per answered request (for the Redis peer: the peer plus Redis). */
  serverCpuUsPerRequest?: number;
  /** The part of it spent in the kernel (TCP on loopback, epoll, waking the generator). */
  serverKernelUsPerRequest?: number;
  /** Cores the server kept busy on average. */
  serverCores?: number;
}

export interface BenchReport {
  generator: string;
  settings: { connections: number; durationSeconds: number; warmUpSeconds: number; rounds: number; keys: number; redisAutoPipelining: boolean };
  /** Each target's median round. */
  load: Partial<Record<TargetName, Measured>>;
  /** req/s of every round, in order. */
  rounds: Partial<Record<TargetName, number[]>>;
  micro?: MicroResult;
  pipeline?: PipelineResult;
  ratios: {
    tallyToCeiling?: number;
    /** Against the ceiling that answers with Tally's headers and body: Tally's own work. */
    tallyToShaped?: number;
    shapedToCeiling?: number;
    tallyToRedis?: number;
    redisToCeiling?: number;
    /** The same comparisons by server CPU per request (other's cost / tally's cost): higher is better for tally. */
    cpuCeilingToTally?: number;
    cpuRedisToTally?: number;
    /**
     * Where the throughput targets lie against what this run showed reachable: 3 × the peer
     * as a share of the ceiling, and 0.8 × the ceiling as a share of the shaped ceiling.
     * Above 1, the target asks for more than the zero-work server gave in the same run.
     */
    redisTargetToCeiling?: number;
    ceilingTargetToShaped?: number;
    /** The same node with the Redis replica on, against without: what pushing every 100 ms costs. */
    replicaToTally?: number;
  };
  /** Targets that could not be measured, with why. */
  failures: Partial<Record<TargetName | 'micro' | 'pipeline' | 'cluster' | 'scale', string>>;
}

export function ratios(load: BenchReport['load']): BenchReport['ratios'] {
  const { ceiling, shaped, redis, tally, replica } = load;
  const ratio = (a?: number, b?: number) => (a === undefined || b === undefined ? undefined : a / b);
  return {
    tallyToCeiling: ratio(tally?.rps, ceiling?.rps),
    tallyToShaped: ratio(tally?.rps, shaped?.rps),
    shapedToCeiling: ratio(shaped?.rps, ceiling?.rps),
    tallyToRedis: ratio(tally?.rps, redis?.rps),
    redisToCeiling: ratio(redis?.rps, ceiling?.rps),
    cpuCeilingToTally: ratio(ceiling?.serverCpuUsPerRequest, tally?.serverCpuUsPerRequest),
    cpuRedisToTally: ratio(redis?.serverCpuUsPerRequest, tally?.serverCpuUsPerRequest),
    redisTargetToCeiling: ratio(redis === undefined ? undefined : 3 * redis.rps, ceiling?.rps),
    ceilingTargetToShaped: ratio(ceiling === undefined ? undefined : 0.8 * ceiling.rps, shaped?.rps),
    replicaToTally: ratio(replica?.rps, tally?.rps),
  };
}

const percent = (part: number, whole: number) => (whole === 0 ? '-' : ((100 * part) / whole).toFixed(1));
const fixed = (value: number | undefined, digits: number) => (value === undefined ? 'n/a' : value.toFixed(digits));

export function formatReport(report: BenchReport): string {
  const { settings } = report;
  const lines = [
    `load: ${report.generator}, ${settings.connections} connections, ${settings.warmUpSeconds} s warm-up + ${settings.durationSeconds} s measured per target,`,
    `      ${settings.rounds} round(s), targets in turn, never two at once; each row is the target's median round`,
    `      POST /v1/quota/consume {"cost":1}, ${settings.keys} API keys in turn, keep-alive, no pipelining`,
    '',
    'target             req/s   p50 ms   p99 ms    2xx%    429%   other  sock err  CPU µs/req  kernel  cores  req/s by round',
  ];
  for (const name of Object.keys(TARGETS) as TargetName[]) {
    const r = report.load[name];
    if (r === undefined) {
      const failure = report.failures[name];
      if (failure !== undefined) lines.push(`${TARGETS[name].padEnd(15)}  failed: ${failure}`);
      continue;
    }
    lines.push(
      [
        TARGETS[name].padEnd(15),
        r.rps.toFixed(0).padStart(8),
        r.p50Ms.toFixed(2).padStart(8),
        r.p99Ms.toFixed(2).padStart(8),
        percent(r.status2xx, r.requests).padStart(7),
        percent(r.status429, r.requests).padStart(7),
        String(r.statusOther).padStart(7),
        String(r.socketErrors).padStart(9),
        fixed(r.serverCpuUsPerRequest, 1).padStart(11),
        fixed(r.serverKernelUsPerRequest, 1).padStart(7),
        fixed(r.serverCores, 2).padStart(6),
        ` ${(report.rounds[name] ?? []).map((rps) => rps.toFixed(0)).join(' / ')}`,
      ].join(' '),
    );
  }
  const {
    tallyToCeiling,
    tallyToShaped,
    shapedToCeiling,
    tallyToRedis,
    redisToCeiling,
    cpuCeilingToTally,
    cpuRedisToTally,
    redisTargetToCeiling,
    ceilingTargetToShaped,
    replicaToTally,
  } = report.ratios;
  lines.push(
    '',
    `ratios: tally/ceiling = ${fixed(tallyToCeiling, 2)} (target >= 0.8); tally/redis = ${fixed(tallyToRedis, 2)} (target >= 3); redis/ceiling = ${fixed(redisToCeiling, 2)}`,
    `        shaped/ceiling = ${fixed(shapedToCeiling, 2)} (the answer's headers and size alone); tally/shaped = ${fixed(tallyToShaped, 2)} (Tally's own work)`,
    `by CPU per request: ceiling/tally = ${fixed(cpuCeilingToTally, 2)}; redis/tally = ${fixed(cpuRedisToTally, 2)} (redis: peer + Redis server)`,
    `reach: 3 x redis = ${fixed(redisTargetToCeiling, 2)} x ceiling; 0.8 x ceiling = ${fixed(ceilingTargetToShaped, 2)} x shaped (above 1: more than a server doing no work gave in this run)`,
    `replica: (tally + replica)/tally = ${fixed(replicaToTally, 2)} (target >= 0.9: REDIS_URL set, snapshots pushed every 100 ms)`,
  );
  const micro = report.micro;
  if (micro !== undefined) {
    lines.push(
      `decision: ${fixed(micro.decisionNs, 0)} ns (target < 2000 ns; through a UserActor: ${fixed(micro.actorDecisionNs, 0)} ns); ` +
        `heap per active user: ${fixed(micro.heapBytesPerActiveUser, 0)} bytes (target < 1024)`,
    );
    if (micro.heapSubject !== undefined) lines.push(`      heap measured on: ${micro.heapSubject}`);
    for (const [part, error] of Object.entries(micro.errors)) lines.push(`micro ${part} failed: ${error}`);
  } else if (report.failures.micro !== undefined) {
    lines.push(`micro failed: ${report.failures.micro}`);
  }
  const pipeline = report.pipeline;
  if (pipeline !== undefined) {
    lines.push(
      `pipeline: ${fixed(pipeline.nsPerConsume, 0)} ns of JavaScript per consume through the HTTP pipeline, sockets left out ` +
        `(fastest of ${pipeline.rounds.length} rounds, median ${fixed(pipeline.medianNsPerConsume, 0)} ns; ${pipeline.users} users in turn, ${pipeline.answerBytes}-byte answers)`,
      `pipeline, a request and its tokens (${TOKENS_BODY}): ${fixed(pipeline.tokens.nsPerConsume, 0)} ns ` +
        `(median ${fixed(pipeline.tokens.medianNsPerConsume, 0)} ns; ${fixed(pipeline.tokens.nsPerConsume / pipeline.nsPerConsume, 2)}× the plain consume)`,
    );
  } else if (report.failures.pipeline !== undefined) {
    lines.push(`pipeline failed: ${report.failures.pipeline}`);
  }
  for (const name of Object.keys(TARGETS) as TargetName[]) {
    const r = report.load[name];
    if (r !== undefined && (r.statusOther > 0 || r.socketErrors > 0)) {
      lines.push(
        `warning: ${TARGETS[name]} had ${r.statusOther} answers that were neither 2xx nor 429 and ${r.socketErrors} socket errors: its req/s is not all decisions`,
      );
    }
  }
  return lines.join('\n');
}
