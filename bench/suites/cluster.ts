/**
 * The cluster part (`BENCH_ONLY=cluster node dist/bench/suites/run.js`, or alone:
 * `node dist/bench/suites/cluster.js`): what routing to owners over NATS costs, in one run.
 *
 * 1. A private nats-server with JetStream on free ports, a fresh database on the local
 *    PostgreSQL (BENCH_DATABASE_URL, else DATABASE_URL), and 200 users with API keys on the
 *    `bench` tier, seeded by COPY.
 * 2. One node in cluster mode, alone (it owns every shard, nothing is forwarded): wrk at each
 *    concurrency of BENCH_CLUSTER_CONNECTIONS (default 16 and 128 connections).
 * 3. Two more nodes join. Once the map has settled, at each concurrency one wrk per node, the
 *    same connections in all, split between them: two requests in three reach a node that
 *    does not own the user and go to the owner over NATS. Total req/s, the worst node's p99,
 *    and the mean forward batch (items forwarded / batches, from the nodes' metrics).
 *    Few connections show what a forward adds to a request; many show the capacity, as a
 *    load balancer in front of many clients sees it: forwards are batched per owner only
 *    when several requests for it are in flight at once.
 * 4. The NATS API on the same three nodes: `tally.v1.quota.consume` with batches of 100 items
 *    in MessagePack, 8 requests in flight, through the service's queue group: decisions per
 *    second, against HTTP's best requests per second on three nodes in step 3.
 * 5. @tally/client, 512 callers each awaiting one consume at a time (so the client's
 *    auto-batching makes the batches): on the one node of step 2 (against HTTP's best there),
 *    by default (one message per turn) and with messages of 128 (`maxBatch`), and on the
 *    three nodes routed to owners and through the queue group (`routing: 'any'`).
 *    Decisions per second, p50 and p99 per call, the client's mean message size, and the
 *    items forwarded between nodes per decision.
 *
 * Every node runs on this machine's two cores with PostgreSQL, nats-server and the load
 * generators: the three-node figure shows what forwarding costs when nothing is gained
 * from more machines. Prints a table and a `CLUSTER_RESULT {…}` line (what run.ts collects).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, headers } from '@nats-io/transport-node';
import { Packr } from 'msgpackr';
import postgres from 'postgres';
import { TallyClient } from '../../clients/typescript/src/index.js';
import { seedUsers } from '../../test/support/seed.js';
import { type Child, startNode, startProcess, stopAll, waitForLine } from '../harness/children.js';
import { type ClientPhase, type ClusterLevel, type ClusterPhase, type ClusterResult, formatCluster } from '../harness/clusterReport.js';
import { BENCH_TIER, CONSUME_PATH, KEY_COUNT } from '../harness/workload.js';
import { consumeScript, findOrInstallWrk, readSummary, type WrkSummary, writeKeysFile } from '../harness/wrk.js';
import { TALLY_MAIN } from '../targets/tally.js';

const CONCURRENCIES = (process.env.BENCH_CLUSTER_CONNECTIONS ?? '16,64').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_DURATION ?? 10);
const WARM_UP_SECONDS = 3;
const NATS_BATCH = 100;
const NATS_IN_FLIGHT = 8;
const CLIENT_CALLERS = 512;
/** The client's `maxBatch` in the phase that splits each turn's calls, so that the node decides one message while the client writes the next. */
const SMALL_MESSAGES = 128;
const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const NODE_IDS = ['bench-1', 'bench-2', 'bench-3'];

async function untilNatsAnswers(natsUrl: string): Promise<void> {
  for (let attempt = 0; attempt < 75; attempt++) {
    const nc = await connect({ servers: natsUrl }).catch(() => null);
    if (nc !== null) {
      await nc.close();
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error('nats-server did not start (is it installed?)');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function forwardCounts(urls: string[]): Promise<{ items: number; batches: number }> {
  let items = 0;
  let batches = 0;
  for (const url of urls) {
    const text = await (await fetch(`${url}/metrics`)).text();
    items += Number(/^tally_cluster_forwarded_total (\d+)/m.exec(text)?.[1] ?? 0);
    batches += Number(/^tally_cluster_forward_batches_total (\d+)/m.exec(text)?.[1] ?? 0);
  }
  return { items, batches };
}

async function wrkRun(wrk: string, url: string, script: string, seconds: number, connections: number): Promise<WrkSummary> {
  const child = startProcess('wrk', wrk, ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', script, `${url}${CONSUME_PATH}`]);
  const { code, output } = await child.stdout();
  if (!/^BENCH_RESULT /m.test(output)) {
    const signal = child.process.signalCode;
    throw new Error(
      `wrk on ${url} (${connections} connections) ${code === null ? `was killed by ${signal}` : `exited with ${code}`} and printed no result: ${output}`,
    );
  }
  return readSummary(output);
}

/** wrk on every URL at once, `connections` split between them; req/s summed, the worst p50 and p99. */
async function measure(name: string, wrk: string, urls: string[], script: string, connections: number): Promise<ClusterPhase> {
  const split = urls.map((_, i) => Math.floor(connections / urls.length) + (i < connections % urls.length ? 1 : 0));
  await Promise.all(urls.map((url, i) => wrkRun(wrk, url, script, WARM_UP_SECONDS, split[i]!)));
  const before = await forwardCounts(urls);
  const runs = await Promise.all(urls.map((url, i) => wrkRun(wrk, url, script, SECONDS, split[i]!)));
  const after = await forwardCounts(urls);
  const forwarded = after.items - before.items;
  const batches = after.batches - before.batches;
  return {
    name,
    rps: runs.reduce((sum, run) => sum + run.requests / (run.duration_us / 1e6), 0),
    p50Ms: Math.max(...runs.map((run) => run.p50_us / 1000)),
    p99Ms: Math.max(...runs.map((run) => run.p99_us / 1000)),
    non2xx: runs.reduce((sum, run) => sum + run.status_429 + run.status_other, 0),
    socketErrors: runs.reduce((sum, run) => sum + run.socket_errors, 0),
    forwarded,
    meanBatch: batches === 0 ? 0 : forwarded / batches,
  };
}

/** `NATS_IN_FLIGHT` loops, each sending one batch of `NATS_BATCH` consumes at a time, for `seconds`. */
async function natsLoad(natsUrl: string, userIds: string[], seconds: number): Promise<Omit<ClusterResult['nats'], 'vsHttp'>> {
  const packr = new Packr({ useRecords: false });
  const nc = await connect({ servers: natsUrl });
  const h = headers();
  h.set('content-type', 'application/msgpack');
  const payloads = Array.from({ length: Math.ceil(userIds.length / NATS_BATCH) }, (_, b) =>
    packr.pack({ items: Array.from({ length: NATS_BATCH }, (_, i) => ({ user_id: userIds[(b * NATS_BATCH + i) % userIds.length]!, cost: 1 })) }),
  );
  let decisions = 0;
  let allowed = 0;
  let errors = 0;
  const latencies: number[] = [];
  const run = async (until: number, count: boolean) => {
    for (let next = 0; performance.now() < until; next++) {
      const sent = performance.now();
      const reply = await nc.request('tally.v1.quota.consume', payloads[next % payloads.length]!, { timeout: 10_000, headers: h });
      if (!count) continue;
      latencies.push(performance.now() - sent);
      if (reply.headers?.get('Nats-Service-Error-Code')) {
        errors += NATS_BATCH;
        continue;
      }
      const { results } = packr.unpack(reply.data) as { results: { allowed?: boolean }[] };
      decisions += results.length;
      for (const result of results) if (result.allowed === true) allowed++;
    }
  };
  try {
    const warmUntil = performance.now() + WARM_UP_SECONDS * 1000;
    await Promise.all(Array.from({ length: NATS_IN_FLIGHT }, () => run(warmUntil, false)));
    const started = performance.now();
    const until = started + seconds * 1000;
    await Promise.all(Array.from({ length: NATS_IN_FLIGHT }, () => run(until, true)));
    const elapsed = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      batch: NATS_BATCH,
      inFlight: NATS_IN_FLIGHT,
      decisionsPerSecond: decisions / elapsed,
      allowed,
      errors,
      p99Ms: latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))] ?? Number.NaN,
    };
  } finally {
    await nc.close();
  }
}

/**
 * CLIENT_CALLERS callers, each awaiting one consume through @tally/client before the next, for
 * `seconds` after a warm-up: the client batches what they ask in one turn. `urls` are the
 * nodes' HTTP addresses, for the forwarding counters.
 */
async function clientLoad(
  name: string,
  natsUrl: string,
  urls: string[],
  userIds: string[],
  options: { routing: 'owner' | 'any'; maxBatch?: number },
  seconds: number,
): Promise<ClientPhase> {
  const nc = await connect({ servers: natsUrl });
  const tally = await TallyClient.nats(nc, { ...options, timeout: 10_000 });
  let decisions = 0;
  let errors = 0;
  const latencies: number[] = [];
  const run = async (caller: number, until: number, count: boolean) => {
    for (let next = caller; performance.now() < until; next += CLIENT_CALLERS) {
      const sent = performance.now();
      try {
        await tally.consume(userIds[next % userIds.length]!, { cost: 1 });
        if (!count) continue;
        latencies.push(performance.now() - sent);
        decisions++;
      } catch {
        errors++;
      }
    }
  };
  try {
    const warmUntil = performance.now() + WARM_UP_SECONDS * 1000;
    await Promise.all(Array.from({ length: CLIENT_CALLERS }, (_, caller) => run(caller, warmUntil, false)));
    const before = await forwardCounts(urls);
    const sent = { ...tally.stats };
    const started = performance.now();
    const until = started + seconds * 1000;
    await Promise.all(Array.from({ length: CLIENT_CALLERS }, (_, caller) => run(caller, until, true)));
    const elapsed = (performance.now() - started) / 1000;
    const after = await forwardCounts(urls);
    latencies.sort((a, b) => a - b);
    const at = (share: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * share))] ?? Number.NaN;
    return {
      name,
      callers: CLIENT_CALLERS,
      decisionsPerSecond: decisions / elapsed,
      p50Ms: at(0.5),
      p99Ms: at(0.99),
      meanMessage: (tally.stats.items - sent.items) / Math.max(1, tally.stats.messages - sent.messages),
      forwardedPerDecision: (after.items - before.items) / Math.max(1, decisions),
      moved: tally.stats.moved - sent.moved,
      errors,
    };
  } finally {
    await tally.close();
    await nc.close();
  }
}

export async function runCluster(): Promise<ClusterResult> {
  if (CONCURRENCIES.some((connections) => !Number.isInteger(connections) || connections < 3)) {
    throw new Error('BENCH_CLUSTER_CONNECTIONS is a comma-separated list of connection counts, each at least 3');
  }
  const wrk = findOrInstallWrk();
  if (wrk === null) throw new Error('the cluster part needs wrk (apt-get install wrk)');
  const dir = mkdtempSync(join(tmpdir(), 'tally-bench-cluster-'));
  const name = `tally_cluster_${randomBytes(4).toString('hex')}`;
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  const nodes: Child[] = [];
  let nats: Child | undefined;
  try {
    const natsPort = await freePort();
    const natsUrl = `nats://127.0.0.1:${natsPort}`;
    nats = startProcess(
      'nats-server',
      process.env.NATS_SERVER_BIN ?? 'nats-server',
      ['-a', '127.0.0.1', '-p', String(natsPort), '-js', '-sd', join(dir, 'nats')],
      { stdio: 'ignore' },
    );
    await untilNatsAnswers(natsUrl);
    const keySecret = randomBytes(32).toString('hex');
    const adminToken = randomBytes(16).toString('hex');
    const env = {
      TALLY_ADMIN_TOKEN: adminToken,
      PATH: process.env.PATH ?? '',
      DATABASE_URL: databaseUrl,
      NATS_URL: natsUrl,
      TALLY_KEY_SECRET: keySecret,
      TALLY_JWT_SECRET: randomBytes(32).toString('hex'),
      TALLY_HTTP_HOST: '127.0.0.1',
      // info: the start line says when a node serves (stdout is read, then drained).
      TALLY_LOG_LEVEL: 'info',
      TALLY_LOG_FORMAT: 'json',
      TALLY_LEASE_MS: '6000',
      TALLY_HEARTBEAT_MS: '1000',
    };
    const migrating = startNode('tally migrate', [TALLY_MAIN, 'migrate'], { ...env, TALLY_NODE_ID: 'bench-migrate' }, ['ignore', 'ignore', 'inherit']);
    if ((await migrating.exited) !== 0) throw new Error('tally migrate failed');
    const seeded = await seedUsers(sql, { keySecret, users: KEY_COUNT, tier: { name: 'bench', limits: BENCH_TIER.limits } });
    const keysFile = join(dir, 'keys.txt');
    writeKeysFile(
      keysFile,
      seeded.keys.map((key) => `Bearer ${key}`),
    );
    const script = join(dir, 'consume.lua');
    writeFileSync(script, consumeScript(CONSUME_PATH, keysFile));

    const urls: string[] = [];
    const start = async (id: string) => {
      const port = await freePort();
      const node = startNode(id, [TALLY_MAIN, 'start'], { ...env, TALLY_NODE_ID: id, TALLY_HTTP_PORT: String(port), TALLY_DATA_DIR: join(dir, id) }, [
        'ignore',
        'pipe',
        'inherit',
      ]);
      nodes.push(node);
      await waitForLine(node, /tally is serving/, 60_000);
      urls.push(`http://127.0.0.1:${port}`);
    };
    const readyAll = async () => {
      for (let waited = 0; waited < 60_000; waited += 250) {
        const statuses = await Promise.all(urls.map((one) => fetch(`${one}/health/ready`).then((r) => r.status)));
        if (statuses.every((status) => status === 200)) return;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      throw new Error('the nodes did not become ready');
    };

    await start(NODE_IDS[0]!);
    await readyAll();
    const singles: ClusterPhase[] = [];
    for (const connections of CONCURRENCIES) {
      console.error(`[cluster] one node, ${connections} connections, ${SECONDS} s`);
      singles.push(await measure('1 node (cluster mode, alone)', wrk, urls, script, connections));
    }
    console.error(`[cluster] one node, @tally/client, ${CLIENT_CALLERS} callers`);
    const clientSingle = await clientLoad('1 node, @tally/client', natsUrl, urls, seeded.ids, { routing: 'owner' }, SECONDS);
    console.error(`[cluster] one node, @tally/client with messages of ${SMALL_MESSAGES}, ${CLIENT_CALLERS} callers`);
    const clientSmall = await clientLoad(
      `1 node, @tally/client, maxBatch ${SMALL_MESSAGES}`,
      natsUrl,
      urls,
      seeded.ids,
      { routing: 'owner', maxBatch: SMALL_MESSAGES },
      SECONDS,
    );

    console.error('[cluster] two more nodes join');
    await start(NODE_IDS[1]!);
    await start(NODE_IDS[2]!);
    // Settled: three owners, nothing moving, every node ready.
    for (let waited = 0; ; waited += 250) {
      const view = (await (await fetch(`${urls[0]}/v1/admin/cluster`, { headers: { authorization: `Bearer ${adminToken}` } })).json()) as {
        shards: { by_node: Record<string, number>; moving: number[] };
      };
      const settled = Object.keys(view.shards.by_node).length === 3 && view.shards.moving.length === 0;
      if (settled) break;
      if (waited > 60_000) throw new Error('the three nodes did not settle');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    await readyAll();
    const levels: ClusterLevel[] = [];
    for (const [i, connections] of CONCURRENCIES.entries()) {
      console.error(`[cluster] three nodes, load on all three, ${connections} connections in all`);
      const single = singles[i]!;
      const three = await measure('3 nodes, load on all three', wrk, urls, script, connections);
      levels.push({ connections, single, three, ratio: three.rps / single.rps, addedP99Ms: three.p99Ms - single.p99Ms });
    }

    console.error(`[cluster] NATS API, batches of ${NATS_BATCH}, ${NATS_IN_FLIGHT} in flight`);
    const natsResult = await natsLoad(natsUrl, seeded.ids, SECONDS);
    const busiest = Math.max(...levels.map((level) => level.three.rps));
    console.error(`[cluster] three nodes, @tally/client routed to owners, ${CLIENT_CALLERS} callers`);
    const routed = await clientLoad('3 nodes, @tally/client, routed to owners', natsUrl, urls, seeded.ids, { routing: 'owner' }, SECONDS);
    console.error(`[cluster] three nodes, @tally/client through the queue group, ${CLIENT_CALLERS} callers`);
    const anyNode = await clientLoad('3 nodes, @tally/client, queue group', natsUrl, urls, seeded.ids, { routing: 'any' }, SECONDS);
    const httpSingle = Math.max(...singles.map((phase) => phase.rps));
    return {
      seconds: SECONDS,
      levels,
      nats: { ...natsResult, vsHttp: natsResult.decisionsPerSecond / busiest },
      client: {
        single: clientSingle,
        small: clientSmall,
        routed,
        anyNode,
        singleVsHttp: clientSingle.decisionsPerSecond / httpSingle,
        smallVsHttp: clientSmall.decisionsPerSecond / httpSingle,
        routedVsAny: routed.decisionsPerSecond / anyNode.decisionsPerSecond,
      },
    };
  } finally {
    await Promise.all(nodes.map((node) => node.stop(30_000)));
    await nats?.stop();
    await sql.end();
    await admin.unsafe(`drop database if exists ${name} with (force)`).catch(() => undefined);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runCluster().then(
    (result) => {
      console.log(formatCluster(result));
      console.log(`CLUSTER_RESULT ${JSON.stringify(result)}`);
      process.exit(0);
    },
    async (error: unknown) => {
      console.error('[cluster] failed:', error);
      await stopAll();
      process.exit(1);
    },
  );
}
