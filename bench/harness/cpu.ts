/**
 * CPU time spent by the server under test. On a shared 2-core machine req/s moves with
 * whatever else runs; CPU time per request moves much less, so the report shows both. For
 * the Redis peer, Redis's own CPU is counted too: it is half of that design's work.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { Redis } from 'ioredis';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** CPU seconds spent in user space and in the kernel on a process's behalf. */
export interface CpuTime {
  user: number;
  kernel: number;
}

/** The CPU time of a live process, from /proc (Linux); undefined elsewhere. */
export function processCpuTime(pid: number | undefined): CpuTime | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces;
    // utime and stime are fields 14 and 15 of the whole line.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) / clockTicks(), kernel: Number(fields[12]) / clockTicks() };
  } catch {
    return undefined;
  }
}

/** The CPU time of the Redis server, from `INFO cpu`. */
export async function redisCpuTime(url: string): Promise<CpuTime | undefined> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    const info = await redis.info('cpu');
    const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1]);
    const time = { user: field('used_cpu_user'), kernel: field('used_cpu_sys') };
    return Number.isFinite(time.user) && Number.isFinite(time.kernel) ? time : undefined;
  } catch {
    return undefined;
  } finally {
    redis.disconnect();
  }
}

/** The sum of two readings; undefined when either is unknown. */
export function addCpuTime(a: CpuTime | undefined, b: CpuTime | undefined): CpuTime | undefined {
  return a === undefined || b === undefined ? undefined : { user: a.user + b.user, kernel: a.kernel + b.kernel };
}

/**
 * The CPU time of a PostgreSQL server running on this machine: every live `postgres`
 * process (backends, writers, autovacuum), plus what exited backends left in the
 * postmaster's count of its children's time. Undefined when no such process can be read
 * (the server runs elsewhere). Postgres charges a statement's work to the backend that runs
 * it, so the difference between two readings is what the server spent in between.
 */
export function postgresCpuTime(): CpuTime | undefined {
  let total: CpuTime | undefined;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) !== 'postgres') continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = clockTicks();
    // utime, stime (own); and for the postmaster (its parent is not postgres), cutime and cstime.
    let user = Number(fields[11]) / ticks;
    let kernel = Number(fields[12]) / ticks;
    if (!isPostgres(Number(fields[1]))) {
      user += Number(fields[13]) / ticks;
      kernel += Number(fields[14]) / ticks;
    }
    total = { user: (total?.user ?? 0) + user, kernel: (total?.kernel ?? 0) + kernel };
  }
  return total;
}

function isPostgres(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres';
  } catch {
    return false;
  }
}
