/**
 * The load generator, the same for every target of a run: `POST /v1/quota/consume` with
 * `{"cost":1}`, rotating through the same list of `Authorization` headers, on keep-alive
 * connections, one request in flight per connection (no pipelining).
 *
 * wrk is preferred: written in C on epoll, it leaves the most of a 2-core machine to the
 * server under test. Without it (and no way to install it) a small Node generator stands
 * in; it costs more CPU per request, so numbers from the two are not comparable with each
 * other, only the ratios within one run are. The output says which one ran.
 */
import { execFileSync } from 'node:child_process';
import { runNodeLoad } from './nodeLoad.js';
import { findOrInstallWrk, runWrk } from './wrk.js';

export interface LoadOptions {
  /** Full URL of the consume route. */
  url: string;
  /** Complete header values, `Bearer tk_...`, used in turn. */
  authorizations: readonly string[];
  durationSeconds: number;
  connections: number;
}

export interface LoadResult {
  generator: Generator['kind'];
  connections: number;
  /** Measured, not requested. */
  seconds: number;
  /** Responses received. */
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  status2xx: number;
  status429: number;
  /** Any other status: 4xx other than 429, 5xx, ... */
  statusOther: number;
  /** Connect, read and write errors and timeouts. */
  socketErrors: number;
}

export type Generator = { kind: 'wrk'; path: string } | { kind: 'node'; reason: string };

/**
 * wrk if it is on PATH, or can be installed (as root, with apt-get); the Node generator
 * otherwise. BENCH_GENERATOR=wrk|node forces one.
 */
export function chooseGenerator(forced = process.env.BENCH_GENERATOR): Generator {
  if (forced === 'node') return { kind: 'node', reason: 'BENCH_GENERATOR=node' };
  const path = findOrInstallWrk();
  if (path !== null) return { kind: 'wrk', path };
  if (forced === 'wrk') throw new Error('BENCH_GENERATOR=wrk, but wrk is not installed and cannot be installed here');
  return { kind: 'node', reason: 'wrk is not installed and cannot be installed here' };
}

export function describeGenerator(generator: Generator): string {
  if (generator.kind === 'node') return `Node keep-alive generator (${generator.reason})`;
  let version = '';
  try {
    // `wrk -v` prints its version and exits non-zero.
    execFileSync(generator.path, ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    version = /wrk\s+(\S+)/.exec(String((error as { stdout?: string }).stdout ?? ''))?.[1] ?? '';
  }
  return `wrk ${version}`.trim();
}

export function runLoad(generator: Generator, options: LoadOptions): Promise<LoadResult> {
  return generator.kind === 'wrk' ? runWrk(generator.path, options) : runNodeLoad(options);
}
