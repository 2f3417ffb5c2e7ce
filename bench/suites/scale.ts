/**
 * The scale part: one node on a real PostgreSQL holding many active users, against the same
 * node with 200, in one run (`BENCH_ONLY=scale node dist/bench/suites/run.js`, or alone:
 * `npm run bench:scale`).
 *
 * 1. Seeds BENCH_SCALE_USERS users (default 300,000), each with an API key, straight into a
 *    fresh database with COPY (the keys are issued with the node's own key secret, so they
 *    verify), on the `bench` tier's two limits.
 * 2. Starts the node and measures, with wrk and 64 connections:
 *    - small: consumes cycling through 200 users (warm);
 *    - cold: one pass through every user, each request activating its user from Postgres:
 *      activations per second from the node's own counters, p99 of that pass;
 *    - warm: consumes cycling through all of them;
 *    and, around each phase, from `/metrics`: event-loop delay (max and p99; prom-client's
 *    `monitorEventLoopDelay` histogram, reset at every scrape), flushes (count, seconds,
 *    rows), actors in memory, loads, evictions, passivations and refusals; and, from /proc,
 *    the CPU time of the node and of the PostgreSQL server (every `postgres` process on this
 *    machine: bench/harness/cpu.ts), as µs per request, per flushed row and per activation.
 * 3. After 15 s without load, the heap per active user: (heap used at N users − heap used
 *    at 200) / (N − 200), as the heap is and after two full collections.
 *
 * Prints a table and a `SCALE_RESULT {…}` line (what run.ts collects).
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { seedUsers } from '../../test/support/seed.js';
import { type Child, startNode, startProcess, stopAll, waitForLine } from '../harness/children.js';
import { type PostgresProcess, postgresCpuTime, postgresProcesses, postgresSpentByKind, processCpuTime } from '../harness/cpu.js';
import { formatScale, type Phase, type ScaleResult } from '../harness/scaleReport.js';
import { BENCH_TIER, CONSUME_PATH } from '../harness/workload.js';
import { consumeScript, findOrInstallWrk, readSummary, type WrkSummary, writeKeysFile } from '../harness/wrk.js';
import { TALLY_MAIN } from '../targets/tally.js';

const USERS = Number(process.env.BENCH_SCALE_USERS ?? 300_000);
const SMALL = 200;
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const WARM_SECONDS = Number(process.env.BENCH_DURATION ?? 15);
const WARM_UP_SECONDS = 3;
const IDLE_SECONDS = 15;
const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/** Node and V8 flags for the node under test, e.g. `--max-semi-space-size=64` (docs/operations.md). */
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '').split(/\s+/).filter((flag) => flag !== '');
/** With BENCH_PROFILE: sample what outlives the young generation instead of the CPU (see `profiled`). */
const HEAP_SAMPLES = process.env.BENCH_HEAP_SAMPLES === '1';

interface Metrics {
  lagMaxMs: number;
  lagP99Ms: number;
  flushes: number;
  flushSeconds: number;
  flushedRows: number;
  active: number;
  loads: number;
  evicted: number;
  passivated: number;
  refused: number;
  minorGcSeconds: number;
  dirty: number;
  /** CPU seconds so far: the node's process, and the PostgreSQL server's (undefined when it runs elsewhere). */
  nodeCpu: number | undefined;
  postgresCpu: number | undefined;
  /** The PostgreSQL server's processes and their CPU so far (harness/cpu.ts). */
  postgresProcesses: Map<number, PostgresProcess> | undefined;
}

function sample(text: string, name: string, labels = ''): number {
  const prefix = `${name}${labels} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? 0 : Number(line.slice(prefix.length));
}

async function scrape(url: string, node?: Child): Promise<Metrics> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const nodeCpu = processCpuTime(node?.process.pid);
  const processes = postgresProcesses();
  const postgresTime = postgresCpuTime(processes);
  return {
    nodeCpu: nodeCpu === undefined ? undefined : nodeCpu.user + nodeCpu.kernel,
    postgresCpu: postgresTime === undefined ? undefined : postgresTime.user + postgresTime.kernel,
    postgresProcesses: processes,
    lagMaxMs: sample(text, 'nodejs_eventloop_lag_max_seconds') * 1000,
    lagP99Ms: sample(text, 'nodejs_eventloop_lag_p99_seconds') * 1000,
    flushes: sample(text, 'tally_flush_total', '{result="ok"}') + sample(text, 'tally_flush_total', '{result="error"}'),
    flushSeconds: sample(text, 'tally_flush_duration_seconds_sum'),
    flushedRows: sample(text, 'tally_flush_rows_total'),
    active: sample(text, 'tally_actors_active'),
    loads: sample(text, 'tally_store_loads_total', '{kind="user"}'),
    evicted: sample(text, 'tally_actors_evicted_total'),
    passivated: sample(text, 'tally_actors_passivated_total'),
    refused: sample(text, 'tally_actors_refused_total'),
    minorGcSeconds: sample(text, 'nodejs_gc_duration_seconds_sum', '{kind="minor"}'),
    dirty: sample(text, 'tally_actors_dirty'),
  };
}

/**
 * A session with the node's inspector (Chrome DevTools Protocol over WebSocket). The
 * inspector starts on SIGUSR1 (on --inspect-port), so the phases before the first session
 * run without it; once started it stays, idle when no session is attached. Node 20 has
 * WebSocket behind --experimental-websocket, which `npm run bench` passes.
 */
class Inspector {
  private id = 0;
  private readonly waiting = new Map<number, (result: Record<string, unknown> | Error) => void>();
  /** Called with every event the node sends (a message without an id). */
  onEvent: (method: string, params: Record<string, unknown>) => void = () => {};

  private constructor(private readonly socket: WebSocket) {
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data)) as {
        id?: number;
        method?: string;
        params?: Record<string, unknown>;
        result?: Record<string, unknown>;
        error?: { message: string };
      };
      if (message.id !== undefined) this.waiting.get(message.id)?.(message.error === undefined ? (message.result ?? {}) : new Error(message.error.message));
      else if (message.method !== undefined) this.onEvent(message.method, message.params ?? {});
    };
    // A node that dies mid-call (out of memory writing a snapshot, say) fails what waits for it.
    socket.onclose = () => {
      for (const answer of [...this.waiting.values()]) answer(new Error('the node’s inspector closed'));
    };
  }

  static async open(node: Child, port: number): Promise<Inspector> {
    node.process.kill('SIGUSR1');
    let targets: { webSocketDebuggerUrl: string }[] | undefined;
    for (let attempt = 0; targets === undefined && attempt < 50; attempt++) {
      targets = await fetch(`http://127.0.0.1:${port}/json/list`)
        .then((response) => response.json() as Promise<{ webSocketDebuggerUrl: string }[]>)
        .catch(() => new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 100)));
    }
    if (targets === undefined) throw new Error('the node’s inspector did not start');
    const socket = new WebSocket(targets[0]!.webSocketDebuggerUrl);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = reject;
    });
    return new Inspector(socket);
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = ++this.id;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, (result) => {
        this.waiting.delete(id);
        if (result instanceof Error) reject(new Error(`${method}: ${result.message}`));
        else resolve(result);
      });
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  close(): void {
    this.socket.close();
  }
}

/** Heap in use as it is, and after two full collections. */
async function heapUsed(node: Child, port: number): Promise<{ asIs: number; afterGc: number }> {
  const inspector = await Inspector.open(node, port);
  try {
    const asIs = (await inspector.call('Runtime.getHeapUsage')).usedSize as number;
    await inspector.call('HeapProfiler.collectGarbage');
    await inspector.call('HeapProfiler.collectGarbage');
    return { asIs, afterGc: (await inspector.call('Runtime.getHeapUsage')).usedSize as number };
  } finally {
    inspector.close();
  }
}

/**
 * With BENCH_PROFILE set, a heap snapshot of the node as `<dir>/scale.heapsnapshot` (open it
 * in Chrome DevTools' Memory tab): what the heap per user is made of.
 */
async function heapSnapshot(node: Child, port: number): Promise<void> {
  const dir = process.env.BENCH_PROFILE;
  if (dir === undefined || dir === '') return;
  const inspector = await Inspector.open(node, port);
  const file = createWriteStream(join(dir, 'scale.heapsnapshot'));
  let failed: unknown = null;
  file.on('error', (error) => {
    failed ??= error;
  });
  try {
    inspector.onEvent = (method, params) => {
      if (method === 'HeapProfiler.addHeapSnapshotChunk') file.write(params.chunk as string);
    };
    await inspector.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
  } finally {
    inspector.close();
    await new Promise((resolve) => file.end(resolve));
  }
  if (failed !== null) throw failed;
}

/**
 * Runs `work`; with BENCH_PROFILE set, under the node's CPU profiler, saved as
 * `<dir>/scale-<name>.cpuprofile`. With BENCH_HEAP_SAMPLES=1 as well, under the sampling heap
 * profiler instead (`<dir>/scale-<name>.heapprofile`), keeping the samples of objects a major
 * collection freed and dropping those a minor one did: what the phase allocated that outlived
 * the young generation (promoted, then garbage; or still live), by allocating stack.
 */
async function profiled<T>(node: Child, port: number, name: string, work: () => Promise<T>): Promise<T> {
  const dir = process.env.BENCH_PROFILE;
  if (dir === undefined || dir === '') return work();
  const inspector = await Inspector.open(node, port);
  try {
    if (HEAP_SAMPLES) {
      await inspector.call('HeapProfiler.enable');
      await inspector.call('HeapProfiler.startSampling', {
        samplingInterval: 4096,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: false,
      });
      const result = await work();
      const { profile } = await inspector.call('HeapProfiler.stopSampling');
      writeFileSync(join(dir, `scale-${name}.heapprofile`), JSON.stringify(profile));
      return result;
    }
    await inspector.call('Profiler.enable');
    await inspector.call('Profiler.start');
    const result = await work();
    const { profile } = await inspector.call('Profiler.stop');
    writeFileSync(join(dir, `scale-${name}.cpuprofile`), JSON.stringify(profile));
    return result;
  } finally {
    inspector.close();
  }
}

/** Waits (up to a minute) until the flusher has written what the last phase left dirty. */
async function flushed(url: string): Promise<void> {
  for (let waited = 0; waited < 60_000; waited += 250) {
    if ((await scrape(url)).dirty <= SMALL) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Runs wrk for `seconds`, or until `until` says stop (checked every 500 ms; wrk stops on SIGINT and reports). */
async function runWrk(wrk: string, url: string, script: string, seconds: number, until?: () => Promise<boolean>): Promise<WrkSummary> {
  const child = startProcess('wrk', wrk, ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--timeout', '10s', '-s', script, `${url}${CONSUME_PATH}`]);
  let output = '';
  child.process.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  let watching = until !== undefined;
  const watcher = (async () => {
    while (watching && child.alive) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      if (watching && (await until!())) {
        child.process.kill('SIGINT');
        return;
      }
    }
  })();
  await child.exited;
  watching = false;
  await watcher;
  return readSummary(output);
}

/** `after − before`, or undefined when either is unknown. */
function spent(before: number | undefined, after: number | undefined): number | undefined {
  return before === undefined || after === undefined ? undefined : after - before;
}

function phase(name: string, outcome: WrkSummary, before: Metrics, after: Metrics): Phase {
  const flushes = after.flushes - before.flushes;
  const rows = after.flushedRows - before.flushedRows;
  const nodeCpu = spent(before.nodeCpu, after.nodeCpu);
  const postgresCpu = spent(before.postgresCpu, after.postgresCpu);
  return {
    name,
    rps: outcome.requests / (outcome.duration_us / 1e6),
    p50Ms: outcome.p50_us / 1000,
    p99Ms: outcome.p99_us / 1000,
    requests: outcome.requests,
    non2xx: outcome.status_429 + outcome.status_other,
    socketErrors: outcome.socket_errors,
    lagMaxMs: after.lagMaxMs,
    lagP99Ms: after.lagP99Ms,
    flushes,
    flushMeanMs: flushes === 0 ? 0 : ((after.flushSeconds - before.flushSeconds) / flushes) * 1000,
    rowsPerFlush: flushes === 0 ? 0 : (after.flushedRows - before.flushedRows) / flushes,
    minorGcUsPerRequest: outcome.requests === 0 ? 0 : ((after.minorGcSeconds - before.minorGcSeconds) * 1e6) / outcome.requests,
    nodeCpuUsPerRequest: nodeCpu === undefined || outcome.requests === 0 ? undefined : (nodeCpu * 1e6) / outcome.requests,
    postgresCpuUsPerRow: postgresCpu === undefined || rows === 0 ? undefined : (postgresCpu * 1e6) / rows,
    postgresCpuSeconds: postgresCpu,
    postgresCpuSecondsByKind:
      before.postgresProcesses === undefined || after.postgresProcesses === undefined
        ? undefined
        : postgresSpentByKind(before.postgresProcesses, after.postgresProcesses),
  };
}

export async function runScale(): Promise<ScaleResult> {
  const wrk = findOrInstallWrk();
  if (wrk === null) throw new Error('the scale part needs wrk (apt-get install wrk)');
  if (typeof WebSocket === 'undefined') throw new Error('run with node --experimental-websocket (npm run bench does)');
  const dir = mkdtempSync(join(tmpdir(), 'tally-bench-scale-'));
  const name = `tally_scale_${randomBytes(4).toString('hex')}`;
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  let node: Child | undefined;
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  try {
    const keySecret = randomBytes(32).toString('hex');
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const inspectorPort = port + 1;
    const env = {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: databaseUrl,
      TALLY_KEY_SECRET: keySecret,
      TALLY_HTTP_HOST: '127.0.0.1',
      TALLY_HTTP_PORT: String(port),
      TALLY_DATA_DIR: dir,
      TALLY_LOG_LEVEL: 'warn',
      TALLY_LOG_FORMAT: 'json',
      TALLY_ACTOR_IDLE_MS: String(3_600_000),
    };
    // The schema first: the node migrates on start, but the seed must come before it serves.
    const migrating = startNode('tally migrate', [TALLY_MAIN, 'migrate'], env, ['ignore', 'ignore', 'inherit']);
    if ((await migrating.exited) !== 0) throw new Error('tally migrate failed');
    const seedStarted = performance.now();
    console.error(`[scale] seeding ${USERS} users with keys (COPY)`);
    const seeded = await seedUsers(sql, { keySecret, users: USERS, tier: { name: 'bench', limits: BENCH_TIER.limits } });
    const authorizations = seeded.keys.map((key) => `Bearer ${key}`);
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    const allKeys = join(dir, 'keys.txt');
    const smallKeys = join(dir, 'small.txt');
    writeKeysFile(allKeys, authorizations);
    writeKeysFile(smallKeys, authorizations.slice(0, SMALL));
    const smallScript = join(dir, 'small.lua');
    const allScript = join(dir, 'all.lua');
    writeFileSync(smallScript, consumeScript(CONSUME_PATH, smallKeys));
    writeFileSync(allScript, consumeScript(CONSUME_PATH, allKeys));

    node = startNode('tally', [...NODE_FLAGS, `--inspect-port=127.0.0.1:${inspectorPort}`, TALLY_MAIN, 'start'], { ...env, TALLY_LOG_LEVEL: 'info' }, [
      'ignore',
      'pipe',
      'ignore',
    ]);
    await waitForLine(node, /tally is serving/, 120_000);
    const base = `http://127.0.0.1:${port}`;
    const phases: Phase[] = [];

    console.error(`[scale] small: ${SMALL} users, ${WARM_SECONDS} s`);
    await runWrk(wrk, base, smallScript, WARM_UP_SECONDS);
    let before = await scrape(base, node);
    phases.push(phase(`${SMALL} users, warm`, await runWrk(wrk, base, smallScript, WARM_SECONDS), before, await scrape(base, node)));
    await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
    const heapSmall = await heapUsed(node, inspectorPort);

    console.error(`[scale] cold: one pass through ${USERS} users`);
    before = await scrape(base, node);
    const coldStarted = performance.now();
    // Every scrape resets the event-loop histogram: the pass's worst is the worst of its scrapes.
    let lagMaxMs = 0;
    let lagP99Ms = 0;
    const cold = await profiled(node, inspectorPort, 'cold', () =>
      runWrk(wrk, base, allScript, Math.ceil(USERS / 1000) + 30, async () => {
        const now = await scrape(base, node);
        lagMaxMs = Math.max(lagMaxMs, now.lagMaxMs);
        lagP99Ms = Math.max(lagP99Ms, now.lagP99Ms);
        return now.active >= USERS;
      }),
    );
    const coldSeconds = (performance.now() - coldStarted) / 1000;
    const afterCold = await scrape(base, node);
    const coldPhase = phase(`${USERS} users, cold pass`, cold, before, afterCold);
    coldPhase.lagMaxMs = Math.max(lagMaxMs, afterCold.lagMaxMs);
    coldPhase.lagP99Ms = Math.max(lagP99Ms, afterCold.lagP99Ms);
    coldPhase.activationsPerSecond = (afterCold.loads - before.loads) / coldSeconds;
    const coldPostgres = spent(before.postgresCpu, afterCold.postgresCpu);
    if (coldPostgres !== undefined) coldPhase.postgresCpuUsPerActivation = (coldPostgres * 1e6) / Math.max(1, afterCold.loads - before.loads);
    phases.push(coldPhase);

    console.error(`[scale] warm: ${USERS} users, ${WARM_SECONDS} s`);
    await runWrk(wrk, base, allScript, WARM_UP_SECONDS);
    before = await scrape(base, node);
    const warm = await profiled(node, inspectorPort, 'warm', () => runWrk(wrk, base, allScript, WARM_SECONDS));
    const afterWarm = await scrape(base, node);
    phases.push(phase(`${USERS} users, warm`, warm, before, afterWarm));

    // The same 200 users again, now beside all the others: what holding them costs the hot
    // path. The warm phase's last flushes are let through first, so that they are not
    // counted against it.
    await flushed(base);
    await runWrk(wrk, base, smallScript, WARM_UP_SECONDS);
    before = await scrape(base, node);
    phases.push(phase(`${SMALL} users again, ${USERS} in memory`, await runWrk(wrk, base, smallScript, WARM_SECONDS), before, await scrape(base, node)));

    await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
    const idle = await scrape(base, node);
    const heapLarge = await heapUsed(node, inspectorPort);
    // The figures are taken; a snapshot that fails (a heap too large for the inspector to write) costs only itself.
    await heapSnapshot(node, inspectorPort).catch((error: unknown) => console.error('[scale] no heap snapshot:', error));
    const users = Math.max(1, idle.active - SMALL);
    const heapPerUserBytes = (heapLarge.afterGc - heapSmall.afterGc) / users;
    const heapPerUserNoGcBytes = (heapLarge.asIs - heapSmall.asIs) / users;
    return {
      users: USERS,
      small: SMALL,
      idleSeconds: IDLE_SECONDS,
      seedSeconds,
      phases,
      activeAfterWarm: afterWarm.active,
      heapPerUserBytes,
      heapPerUserNoGcBytes,
      lost: { evicted: idle.evicted, passivated: idle.passivated, refused: idle.refused, neverLoaded: USERS - idle.loads },
    };
  } finally {
    await node?.stop(60_000);
    await sql.end();
    await admin.unsafe(`drop database if exists ${name} with (force)`).catch(() => undefined);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runScale().then(
    (result) => {
      console.log(formatScale(result));
      console.log(`SCALE_RESULT ${JSON.stringify(result)}`);
    },
    async (error: unknown) => {
      console.error('[scale] failed:', error);
      await stopAll();
      process.exit(1);
    },
  );
}
