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
 * it, so the difference between two readings is what the server spent in between. Given a
 * reading of `postgresProcesses`, sums that one.
 */
export function postgresCpuTime(processes = postgresProcesses()): CpuTime | undefined {
  if (processes === undefined) return undefined;
  let user = 0;
  let kernel = 0;
  for (const { time } of processes.values()) {
    user += time.user;
    kernel += time.kernel;
  }
  return { user, kernel };
}

/** A PostgreSQL process, by its title (`postgres: 15/main: walwriter`). */
export interface PostgresProcess {
  /**
   * `backends` (the connections: every statement's own work), `checkpointer`, `background
   * writer`, `walwriter`, `autovacuum` (launcher and workers), `exited` (the postmaster: its
   * own time and its count of its children's that exited) or `other`.
   */
  kind: string;
  time: CpuTime;
}

/** Every live `postgres` process on this machine by pid (see `postgresCpuTime`); undefined when there is none. */
export function postgresProcesses(): Map<number, PostgresProcess> | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  const processes = new Map<number, PostgresProcess>();
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    let title: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      title = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) !== 'postgres') continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = clockTicks();
    // utime, stime (own); and for the postmaster (its parent is not postgres), cutime and cstime.
    let user = Number(fields[11]) / ticks;
    let kernel = Number(fields[12]) / ticks;
    const postmaster = !isPostgres(Number(fields[1]));
    if (postmaster) {
      user += Number(fields[13]) / ticks;
      kernel += Number(fields[14]) / ticks;
    }
    processes.set(Number(entry), { kind: postmaster ? 'exited' : processKind(title), time: { user, kernel } });
  }
  return processes.size === 0 ? undefined : processes;
}

/**
 * What the server spent between two readings of `postgresProcesses`, by kind of process, in
 * seconds. A process that exited meanwhile moved its time into the postmaster's count: what
 * it had spent by the first reading is taken off `exited` again, so each kind holds only
 * what was spent in between.
 */
export function postgresSpentByKind(before: Map<number, PostgresProcess>, after: Map<number, PostgresProcess>): Record<string, number> {
  const spent: Record<string, number> = {};
  const add = (kind: string, seconds: number) => {
    spent[kind] = (spent[kind] ?? 0) + seconds;
  };
  const seconds = (time: CpuTime) => time.user + time.kernel;
  for (const [pid, now] of after) add(now.kind, seconds(now.time) - seconds(before.get(pid)?.time ?? { user: 0, kernel: 0 }));
  for (const [pid, then] of before) if (!after.has(pid)) add('exited', -seconds(then.time));
  return spent;
}

const AUXILIARY = ['checkpointer', 'background writer', 'walwriter', 'autovacuum'];

function processKind(title: string): string {
  // "postgres: 15/main: walwriter " (or without the cluster name); a backend's names its user and database.
  const role = title.replace(/\0/g, ' ').replace(/^postgres: (?:[^:]*: )?/, '');
  return AUXILIARY.find((kind) => role.startsWith(kind)) ?? (/^\S+ \S+ (?:\S+\(\d+\)|\[local\])/.test(role) ? 'backends' : 'other');
}

function isPostgres(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres';
  } catch {
    return false;
  }
}
