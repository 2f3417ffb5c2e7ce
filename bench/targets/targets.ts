/**
 * The load targets as the runner sees them: started once (each in its own process),
 * then measured as often as asked, one at a time, and stopped.
 */
import { join } from 'node:path';
import { startNode, waitForLine } from '../harness/children.js';
import { addCpuTime, type CpuTime, processCpuTime, redisCpuTime } from '../harness/cpu.js';
import { type Generator, type LoadOptions, runLoad } from '../harness/load.js';
import { type Measured, TARGETS, type TargetName } from '../harness/report.js';
import type { Settings } from '../harness/settings.js';
import { CONSUME_PATH, KEY_COUNT, randomApiKeys } from '../harness/workload.js';
import { startTally } from './tally.js';

/** A target that is listening, with the keys to send it and how to stop it. */
export interface Running {
  url: string;
  authorizations: string[];
  /** CPU time the target has used so far (all of its processes), if this platform tells. */
  cpuTime(): Promise<CpuTime | undefined>;
  stop(): Promise<void>;
}

const here = import.meta.dirname;

/** Starts `node dist/bench/targets/<script> <args>` (a server next to this module) and waits for its `listening <port>` line. */
async function startServerScript(name: string, script: string, args: string[]): Promise<Running> {
  const child = startNode(name, [join(here, script), ...args]);
  try {
    const [, port] = await waitForLine(child, /^listening (\d+)$/);
    return {
      url: `http://127.0.0.1:${port}${CONSUME_PATH}`,
      authorizations: randomApiKeys().map((key) => `Bearer ${key}`),
      cpuTime: async () => processCpuTime(child.process.pid),
      stop: () => child.stop(),
    };
  } catch (error) {
    await child.stop();
    throw error;
  }
}

export async function startTarget(target: TargetName, settings: Settings): Promise<Running> {
  switch (target) {
    case 'ceiling':
      return startServerScript(TARGETS.ceiling, 'ceiling.js', ['0', 'plain']);
    case 'shaped':
      return startServerScript(TARGETS.shaped, 'ceiling.js', ['0', 'shaped']);
    case 'redis': {
      const prefix = `tallybench:${process.pid}:`;
      const peer = await startServerScript(TARGETS.redis, 'redisPeer.js', ['0', settings.redisUrl, prefix, String(settings.redisAutoPipelining)]);
      // Redis does half of this design's work: count its CPU with the peer's.
      return { ...peer, cpuTime: async () => addCpuTime(await peer.cpuTime(), await redisCpuTime(settings.redisUrl)) };
    }
    case 'tally':
    case 'replica': {
      const replica = target === 'replica' ? { url: settings.redisUrl, prefix: `tallybench-replica:${process.pid}:` } : undefined;
      console.error(`[bench] starting tally${replica === undefined ? '' : ' with the Redis replica'} and seeding ${KEY_COUNT} users through the API`);
      const tally = await startTally({ databaseUrl: settings.databaseUrl, profileDir: settings.profileDir, replica });
      return {
        url: tally.url + CONSUME_PATH,
        authorizations: tally.keys.map((key) => `Bearer ${key}`),
        // With the replica, Redis's work counts too, as it does for the peer.
        cpuTime: async () => (replica === undefined ? processCpuTime(tally.pid) : addCpuTime(await processCpuTime(tally.pid), await redisCpuTime(replica.url))),
        stop: tally.stop,
      };
    }
  }
}

/** One measurement: a warm-up (not counted), then the measured run and the server's CPU time during it. */
export async function measureTarget(
  running: Running,
  generator: Generator,
  settings: Pick<Settings, 'connections' | 'durationSeconds' | 'warmUpSeconds'>,
): Promise<Measured> {
  const options: LoadOptions = {
    url: running.url,
    authorizations: running.authorizations,
    durationSeconds: settings.warmUpSeconds,
    connections: settings.connections,
  };
  await runLoad(generator, options);
  const cpuBefore = await running.cpuTime();
  const result: Measured = await runLoad(generator, { ...options, durationSeconds: settings.durationSeconds });
  const cpuAfter = await running.cpuTime();
  if (cpuBefore !== undefined && cpuAfter !== undefined && result.requests > 0) {
    const user = cpuAfter.user - cpuBefore.user;
    const kernel = cpuAfter.kernel - cpuBefore.kernel;
    result.serverCpuUsPerRequest = ((user + kernel) * 1e6) / result.requests;
    result.serverKernelUsPerRequest = (kernel * 1e6) / result.requests;
    result.serverCores = (user + kernel) / result.seconds;
  }
  return result;
}

/** The round whose req/s is the median (the lower middle one for an even count). */
export function median(results: readonly Measured[]): Measured {
  return [...results].sort((a, b) => a.rps - b.rps)[Math.floor((results.length - 1) / 2)]!;
}
