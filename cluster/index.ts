/**
 * `tally cluster <command>`: see and change a running cluster over NATS alone (`NATS_URL`
 * or `--nats`). It reads what the nodes keep in JetStream KV (members, the shard map, the
 * coordinator's entry) and writes only operator requests (`tally_operator`), which the
 * coordinator carries out by planned moves. So every command is safe to run twice and to
 * interrupt: Ctrl-C stops the waiting, never a move half way.
 *
 * Exit codes: 0 done, 1 not done (timeout, refused, unreachable; the message says which),
 * 2 bad usage.
 */
import { parseArgs } from 'node:util';
import { type KV, type KvEntry, Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { SingleBar } from 'cli-progress';
import {
  COORDINATOR_BUCKET,
  drainKey,
  EPOCHS_SUBJECT,
  MEMBERS_BUCKET,
  type MemberRecord,
  OPERATOR_BUCKET,
  pinKey,
  planPlacement,
  SHARDS_BUCKET,
  type ShardEntry,
} from '../src/node/cluster/index.js';
import { initHashing } from '../src/shards/index.js';

const SHARD_COUNT = 1024;
const DEFAULT_LEASE_MS = 6000;
const DEFAULT_TIMEOUT_S = 300;

class UsageError extends Error {}
class NotDone extends Error {}

interface Options {
  json: boolean;
  nats: string | undefined;
  node: string | undefined;
  wait: boolean;
  dryRun: boolean;
  timeoutS: number;
}

const USAGE = `usage: tally cluster <command> [options]

commands:
  status                 nodes, shard counts, moves, the coordinator; exit 1 if a shard has no live owner
  nodes                  the members: id, address, status, shards, lease age, version
  shards [--node N]      every shard: owner, epoch, status
  drain <node>           move every shard off the node and keep it empty; waits (--no-wait: at once)
  undrain <node>         let the node take shards again
  move <shard> <node>    one planned move; the shard stays there until a rebalance; waits
  rebalance [--dry-run]  the moves that bring the map to its placement (undoing moves made by
                         move); without --dry-run, asks for them and waits

options:
  --nats URL             NATS servers, comma-separated (default: NATS_URL)
  --json                 print JSON (for scripts)
  --no-wait              drain: return once the request is stored
  --timeout SECONDS      how long drain and rebalance wait (default ${DEFAULT_TIMEOUT_S})
  -h, --help             this help
`;

export async function runClusterCli(argv: string[]): Promise<number> {
  let command: string | undefined;
  let args: string[];
  let options: Options;
  try {
    const parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: 'boolean' },
        nats: { type: 'string' },
        node: { type: 'string' },
        'no-wait': { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (parsed.values.help === true) {
      process.stdout.write(USAGE);
      return 0;
    }
    [command, ...args] = parsed.positionals;
    const timeout = parsed.values.timeout === undefined ? DEFAULT_TIMEOUT_S : Number(parsed.values.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0) throw new UsageError(`--timeout takes seconds, got "${parsed.values.timeout}"`);
    options = {
      json: parsed.values.json === true,
      nats: parsed.values.nats ?? (process.env.NATS_URL?.trim() || undefined),
      node: parsed.values.node,
      wait: parsed.values['no-wait'] !== true,
      dryRun: parsed.values['dry-run'] === true,
      timeoutS: timeout,
    };
    const arity: Record<string, number> = { status: 0, nodes: 0, shards: 0, drain: 1, undrain: 1, move: 2, rebalance: 0 };
    if (command === undefined) throw new UsageError('name a command');
    if (!Object.hasOwn(arity, command)) throw new UsageError(`unknown command "${command}"`);
    const takes = ['takes no argument', 'takes one node id', 'takes a shard and a node id'][arity[command]!];
    if (args.length !== arity[command]) throw new UsageError(`${command} ${takes}`);
    if (command === 'move' && !/^\d+$/.test(args[0]!)) throw new UsageError(`move: "${args[0]}" is not a shard number (0–${SHARD_COUNT - 1})`);
    if (command === 'move' && Number(args[0]) >= SHARD_COUNT) throw new UsageError(`move: shard ${args[0]} is out of range (0–${SHARD_COUNT - 1})`);
    if (options.nats === undefined) throw new UsageError('say where NATS is: NATS_URL or --nats');
  } catch (error) {
    process.stderr.write(`tally cluster: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }

  let nc: NatsConnection;
  try {
    nc = await connect({ servers: options.nats.split(',').map((url) => url.trim()), name: 'tally-cluster-cli', timeout: 5000 });
  } catch (error) {
    process.stderr.write(`tally cluster ${command}: cannot reach NATS at ${options.nats}: ${(error as Error).message}\n`);
    return 1;
  }
  // Ctrl-C: stop waiting; whatever was requested stays requested, and the cluster goes on.
  const interrupted = new AbortController();
  const onSignal = () => interrupted.abort();
  process.once('SIGINT', onSignal);
  let cluster: ClusterState | undefined;
  try {
    cluster = await ClusterState.open(nc);
    switch (command) {
      case 'status':
        return await status(cluster, options);
      case 'nodes':
        return await nodes(cluster, options);
      case 'shards':
        return await shards(cluster, nc, options);
      case 'drain':
        return await drain(cluster, args[0]!, options, interrupted.signal);
      case 'undrain':
        return await undrain(cluster, args[0]!, options);
      case 'move':
        return await move(cluster, Number(args[0]), args[1]!, options, interrupted.signal);
      default:
        return await rebalance(cluster, options, interrupted.signal);
    }
  } catch (error) {
    const why =
      error instanceof NotDone || error instanceof UsageError ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`tally cluster ${command}: ${why}\n`);
    return error instanceof UsageError ? 2 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    cluster?.close();
    await nc.close().catch(() => undefined);
  }
}

interface Member {
  id: string;
  address: string;
  status: string;
  version: string;
  leaseAgeMs: number;
  live: boolean;
}

/** The cluster as the buckets hold it now. */
function ownersOf(bucket: LiveBucket): Map<number, ShardEntry> {
  const owners = new Map<number, ShardEntry>();
  for (const [key, entry] of bucket.entries) owners.set(Number(key.slice('shard.'.length)), entry.json<ShardEntry>());
  return owners;
}

class ClusterState {
  private constructor(
    readonly members: Member[],
    readonly owners: Map<number, ShardEntry>,
    readonly leader: string | null,
    readonly drained: Set<string>,
    readonly operator: KV,
    private readonly shardMap: LiveBucket,
  ) {}

  static async open(nc: NatsConnection): Promise<ClusterState> {
    const kvm = new Kvm(nc);
    const opened = await Promise.all([MEMBERS_BUCKET, SHARDS_BUCKET, COORDINATOR_BUCKET].map((name) => kvm.open(name))).catch((error: unknown) => {
      throw new NotDone(`no Tally cluster on this NATS (its buckets cannot be opened: ${(error as Error).message})`);
    });
    const [membersKv, shardsKv, coordinatorKv] = opened as [KV, KV, KV];
    // The operator bucket is the nodes' to create, but a drain may come first.
    const operator = await kvm.create(OPERATOR_BUCKET, { history: 1 });
    const [memberEntries, shardMap, operatorEntries, leaderEntry] = await Promise.all([
      readAll(membersKv),
      LiveBucket.open(shardsKv),
      readAll(operator),
      coordinatorKv.get('leader').catch(() => null),
    ]);
    const drained = new Set([...operatorEntries.keys()].filter((key) => key.startsWith('drain.')).map((key) => key.slice('drain.'.length)));
    const members: Member[] = [...memberEntries.values()]
      .map((entry) => {
        const record = entry.json<MemberRecord>();
        // Aged by the server's timestamp of the last renewal: the CLI has no watch to time it by.
        const leaseAgeMs = Math.max(0, Date.now() - entry.created.getTime());
        const status = record.status === 'active' && drained.has(record.id) ? 'drained' : record.status;
        return {
          id: record.id,
          address: record.address,
          status,
          version: record.version,
          leaseAgeMs,
          live: leaseAgeMs < (record.lease_ms ?? DEFAULT_LEASE_MS),
        };
      })
      .sort((a, b) => (a.id < b.id ? -1 : 1));
    const owners = ownersOf(shardMap);
    const leader = leaderEntry?.operation === 'PUT' ? leaderEntry.json<{ node: string }>().node : null;
    return new ClusterState(members, owners, leader, drained, operator, shardMap);
  }

  /** The shard map as the watch has it now (what waiting commands poll). */
  current(): Map<number, ShardEntry> {
    return ownersOf(this.shardMap);
  }

  close(): void {
    this.shardMap.stop();
  }

  live(): Member[] {
    return this.members.filter((member) => member.live);
  }
}

/**
 * A bucket's current entries, kept up to date by one watch. Loaded once the watch has
 * delivered what was stored when it began: the message with nothing pending after it, or,
 * since writes going on meanwhile (a drain's moves) can leave that count short of zero, no
 * message for a while.
 */
class LiveBucket {
  readonly entries = new Map<string, KvEntry>();
  private stopper: { stop(): void } | null = null;

  static async open(kv: KV): Promise<LiveBucket> {
    const bucket = new LiveBucket();
    const stored = (await kv.status()).values;
    const watch = await kv.watch();
    bucket.stopper = watch;
    let last = performance.now();
    let loaded = stored === 0;
    void (async () => {
      for await (const entry of watch) {
        last = performance.now();
        if (entry.operation === 'PUT') bucket.entries.set(entry.key, entry);
        else bucket.entries.delete(entry.key);
        if (entry.delta === 0) loaded = true;
      }
    })();
    const until = performance.now() + 10_000;
    while (!loaded && performance.now() - last < 300 && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
    return bucket;
  }

  stop(): void {
    this.stopper?.stop();
  }
}

async function readAll(kv: KV): Promise<Map<string, KvEntry>> {
  const bucket = await LiveBucket.open(kv);
  bucket.stop();
  return bucket.entries;
}

function counts(owners: Map<number, ShardEntry>, live: Set<string>) {
  const byNode: Record<string, number> = {};
  const moves: { shard: number; from: string; to: string }[] = [];
  let unowned = 0;
  for (let shard = 0; shard < SHARD_COUNT; shard++) {
    const entry = owners.get(shard);
    if (entry === undefined || !live.has(entry.owner)) {
      unowned++;
      continue;
    }
    byNode[entry.owner] = (byNode[entry.owner] ?? 0) + 1;
    if (entry.status === 'moving') moves.push({ shard, from: entry.owner, to: entry.to! });
  }
  return { byNode, moves, unowned };
}

function table(rows: (string | number)[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => String(row[column]).length)));
  return `${rows
    .map((row) =>
      row
        .map((cell, column) => String(cell).padEnd(widths[column]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

async function status(cluster: ClusterState, options: Options): Promise<number> {
  const live = cluster.live();
  const { byNode, moves, unowned } = counts(cluster.owners, new Set(live.map((member) => member.id)));
  const ok = unowned === 0 && live.length > 0;
  if (options.json) {
    const body = {
      ok,
      leader: cluster.leader,
      nodes: live.map((member) => ({
        id: member.id,
        address: member.address,
        status: member.status,
        shards: byNode[member.id] ?? 0,
        lease_age_ms: member.leaseAgeMs,
        version: member.version,
      })),
      shards: { count: SHARD_COUNT, by_node: byNode, moving: moves.map((move) => move.shard), moves, unassigned: unowned },
    };
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
  } else {
    process.stdout.write(
      table([
        ['NODE', 'ADDRESS', 'STATUS', 'SHARDS', 'LEASE AGE', 'VERSION'],
        ...live.map((m) => [m.id + (m.id === cluster.leader ? ' *' : ''), m.address, m.status, byNode[m.id] ?? 0, `${m.leaseAgeMs} ms`, m.version]),
      ]),
    );
    process.stdout.write(
      `\n${SHARD_COUNT - unowned}/${SHARD_COUNT} shards have a live owner; ${moves.length} moving; coordinator: ${cluster.leader ?? 'none'} (*)\n`,
    );
    if (!ok) process.stdout.write(`NOT OK: ${unowned} shards have no live owner\n`);
  }
  return ok ? 0 : 1;
}

async function nodes(cluster: ClusterState, options: Options): Promise<number> {
  const { byNode } = counts(cluster.owners, new Set(cluster.live().map((member) => member.id)));
  const rows = cluster.members.map((m) => ({ ...m, shards: byNode[m.id] ?? 0 }));
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify(
        rows.map((m) => ({
          id: m.id,
          address: m.address,
          status: m.live ? m.status : 'silent',
          shards: m.shards,
          lease_age_ms: m.leaseAgeMs,
          version: m.version,
        })),
        null,
        2,
      )}\n`,
    );
  } else {
    process.stdout.write(
      table([
        ['NODE', 'ADDRESS', 'STATUS', 'SHARDS', 'LEASE AGE', 'VERSION'],
        ...rows.map((m) => [m.id, m.address, m.live ? m.status : 'silent', m.shards, `${m.leaseAgeMs} ms`, m.version]),
      ]),
    );
  }
  return 0;
}

async function shards(cluster: ClusterState, nc: NatsConnection, options: Options): Promise<number> {
  // Epochs live in the nodes (and the fence in Postgres): every node answers for the shards it serves.
  const epochs = new Map<number, number>();
  const replies = await nc.requestMany(EPOCHS_SUBJECT, '', { maxWait: 1000, maxMessages: cluster.live().length });
  for await (const reply of replies) {
    for (const [shard, epoch] of reply.json<{ epochs: [number, number][] }>().epochs) epochs.set(shard, epoch);
  }
  const list = [];
  for (let shard = 0; shard < SHARD_COUNT; shard++) {
    const entry = cluster.owners.get(shard);
    if (options.node !== undefined && entry?.owner !== options.node) continue;
    list.push({
      shard,
      owner: entry?.owner ?? null,
      epoch: epochs.get(shard) ?? null,
      status: entry === undefined ? 'unassigned' : entry.status === 'moving' ? `moving to ${entry.to}` : epochs.has(shard) ? 'served' : 'claiming',
    });
  }
  if (options.json) process.stdout.write(`${JSON.stringify(list)}\n`);
  else process.stdout.write(table([['SHARD', 'OWNER', 'EPOCH', 'STATUS'], ...list.map((s) => [s.shard, s.owner ?? '-', s.epoch ?? '-', s.status])]));
  return 0;
}

async function drain(cluster: ClusterState, node: string, options: Options, signal: AbortSignal): Promise<number> {
  if (!cluster.members.some((member) => member.id === node)) throw new NotDone(`no node "${node}" in this cluster (tally cluster nodes lists them)`);
  const others = cluster.live().filter((member) => member.id !== node && member.status === 'active');
  if (others.length === 0) throw new NotDone(`refused: no other active node could take the shards of "${node}"`);
  // A put of the same key again is harmless: drain twice is drain once.
  await cluster.operator.put(drainKey(node), JSON.stringify({ at: new Date().toISOString() }));
  const total = [...cluster.owners.values()].filter((entry) => entry.owner === node).length;
  if (!options.wait) {
    report(options, { node, drained: false, requested: true, shards: total });
    return 0;
  }
  const left = await waitFor(
    cluster,
    total,
    (owners) => [...owners.values()].filter((entry) => entry.owner === node).length,
    `draining ${node}`,
    options,
    signal,
  );
  report(options, { node, drained: left === 0, shards_moved: total - left, left });
  if (left > 0)
    throw new NotDone(
      signal.aborted ? `interrupted with ${left} shards left on ${node} (they keep moving)` : `${left} shards still on ${node} after ${options.timeoutS} s`,
    );
  return 0;
}

async function undrain(cluster: ClusterState, node: string, options: Options): Promise<number> {
  if (!cluster.drained.has(node) && !cluster.members.some((member) => member.id === node)) throw new NotDone(`no node "${node}" in this cluster`);
  await cluster.operator.delete(drainKey(node));
  report(options, { node, drained: false });
  return 0;
}

async function move(cluster: ClusterState, shard: number, node: string, options: Options, signal: AbortSignal): Promise<number> {
  const member = cluster.live().find((one) => one.id === node);
  if (member === undefined) throw new NotDone(`no live node "${node}" in this cluster (tally cluster nodes lists them)`);
  if (member.status !== 'active') throw new NotDone(`refused: node "${node}" is ${member.status} and takes no shards`);
  const from = cluster.owners.get(shard)?.owner ?? null;
  await cluster.operator.put(pinKey(shard), JSON.stringify({ to: node, at: new Date().toISOString() }));
  const left = await waitFor(
    cluster,
    1,
    (owners) => (owners.get(shard)?.owner === node && owners.get(shard)?.status === 'owned' ? 0 : 1),
    `moving shard ${shard}`,
    options,
    signal,
  );
  report(options, { shard, from, to: node, done: left === 0 });
  if (left > 0)
    throw new NotDone(
      signal.aborted ? `interrupted: shard ${shard} is still asked to move to ${node}` : `shard ${shard} not on ${node} after ${options.timeoutS} s`,
    );
  return 0;
}

async function rebalance(cluster: ClusterState, options: Options, signal: AbortSignal): Promise<number> {
  await initHashing();
  const live = cluster.live();
  const takers = live.filter((member) => member.status === 'active').map((member) => member.id);
  const owners = new Map([...cluster.owners].map(([shard, entry]) => [shard, entry.owner]));
  const plan = planPlacement({ takers, live: new Set(live.map((member) => member.id)), owners, maxMoves: SHARD_COUNT });
  const moves = [...plan.assign.map(({ shard, to }) => ({ shard, from: null as string | null, to })), ...plan.moves];
  if (options.json && options.dryRun) process.stdout.write(`${JSON.stringify({ moves })}\n`);
  else if (!options.json) {
    process.stdout.write(moves.length === 0 ? 'the map is where placement wants it: nothing to move\n' : `${moves.length} moves:\n`);
    if (moves.length > 0 && moves.length <= 64) process.stdout.write(table([['SHARD', 'FROM', 'TO'], ...moves.map((m) => [m.shard, m.from ?? '-', m.to])]));
  }
  if (options.dryRun || moves.length === 0) {
    if (options.json && !options.dryRun) process.stdout.write(`${JSON.stringify({ moves, done: true })}\n`);
    return 0;
  }
  // Moves made by `move` are undone: the pins go, and the coordinator carries the plan out
  // itself, 32 moves in flight at a time. Wait for it.
  for (const key of await cluster.operator.keys('pin.>').then(collect)) await cluster.operator.delete(key);
  const target = plan.target;
  const left = await waitFor(
    cluster,
    moves.length,
    (now) => {
      let off = 0;
      for (const { shard } of moves) if (now.get(shard)?.owner !== target.get(shard) || now.get(shard)?.status !== 'owned') off++;
      return off;
    },
    'rebalancing',
    options,
    signal,
  );
  if (options.json) process.stdout.write(`${JSON.stringify({ moves, done: left === 0, left })}\n`);
  if (left > 0) throw new NotDone(signal.aborted ? `interrupted with ${left} moves to go (they go on)` : `${left} moves not done after ${options.timeoutS} s`);
  return 0;
}

/**
 * Polls the map until `remaining` reaches 0, the timeout passes or Ctrl-C; shows a bar on a
 * terminal (moved / total, rate, ETA) and a line a second otherwise (not with --json).
 */
async function waitFor(
  cluster: ClusterState,
  total: number,
  remaining: (owners: Map<number, ShardEntry>) => number,
  what: string,
  options: Options,
  signal: AbortSignal,
): Promise<number> {
  const until = performance.now() + options.timeoutS * 1000;
  const tty = process.stderr.isTTY === true && !options.json;
  const bar = tty ? new SingleBar({ format: `${what} [{bar}] {value}/{total} shards | {speed} shards/s | ETA {eta}s`, stream: process.stderr }) : null;
  bar?.start(total, 0, { speed: '0' });
  const started = performance.now();
  let lastLine = 0;
  let left = total;
  try {
    while (!signal.aborted && performance.now() < until) {
      left = remaining(cluster.current());
      const moved = total - left;
      const speed = (moved / Math.max(0.001, (performance.now() - started) / 1000)).toFixed(0);
      bar?.update(moved, { speed });
      if (!tty && !options.json && (performance.now() - lastLine >= 1000 || left === 0)) {
        lastLine = performance.now();
        process.stderr.write(`${what}: ${moved}/${total} shards moved (${speed}/s)\n`);
      }
      if (left === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    bar?.stop();
  }
  return left;
}

async function collect(keys: AsyncIterable<string>): Promise<string[]> {
  const all: string[] = [];
  for await (const key of keys) all.push(key);
  return all;
}

function report(options: Options, body: Record<string, unknown>): void {
  if (options.json) process.stdout.write(`${JSON.stringify(body)}\n`);
  else
    process.stdout.write(
      `${Object.entries(body)
        .map(([key, value]) => `${key}: ${value}`)
        .join(', ')}\n`,
    );
}
