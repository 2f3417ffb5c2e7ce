/**
 * The optional replica cache: each owner pushes the quota state of the actors that changed
 * to Redis every replica interval (~100 ms), so that a node which takes a shard over after a
 * crash starts from a copy about one interval old instead of one flush interval (~1 s) old.
 * Postgres stays the source of truth: the write-behind flush is not changed or slowed, and a
 * Redis that is down, slow or flushed costs freshness only, never an answer.
 *
 * One hash per actor, `<prefix><incarnation>:<entity key>` → `e` (the shard epoch the state
 * was decided under), `q` (its sequence: the actor's change counter) and `s` (the state,
 * MessagePack). Keys expire after the actor idle time, so Redis holds about the active actors
 * and no more. `<incarnation>` is the database's (migration 008): copies and the fence kept
 * for another database under the same prefix (re-created, restored) are never read as this
 * one's; `<prefix>#incarnation` names the database the prefix serves now, and the first node
 * of a new one deletes the former fence and says so once (the former copies expire).
 *
 * Which copy is newer is decided by `(epoch, seq)`, compared in that order, in two places:
 * - Redis itself refuses a push that is not newer than what it holds (one Lua script per
 *   push). A frozen former owner whose push lands late cannot replace the new owner's copy.
 * - An activation takes the Redis copy only when it is newer than the Postgres row and its
 *   epoch is not past the fence the activation read (`chooseCopy`).
 */
import type { Logger } from 'pino';
import type { PersistedState } from '../shards/index.js';
import { ReplicaTimeoutError } from './errors.js';
import { statePackr } from './stateCodec.js';

/** A snapshot as read back from Redis. */
export interface ReplicaCopy {
  epoch: number;
  seq: number;
  state: unknown;
}

/** The state an activation starts from, and where it came from. */
export interface ChosenCopy {
  state: unknown | null;
  seq: number;
  source: 'postgres' | 'redis' | 'none';
}

/**
 * The newer of the Postgres row and the Redis copy. A copy whose epoch is past the fence is
 * not one this activation may trust (the loader is not the shard's owner, or the database
 * was restored from a backup), and is ignored; the runtime gives the shard up in the first
 * case anyway.
 */
export function chooseCopy(row: { state: unknown | null; epoch: number; seq: number }, copy: ReplicaCopy | null, fenceEpoch: number | null): ChosenCopy {
  const rowFound = row.state !== null;
  const copyUsable = copy !== null && fenceEpoch !== null && copy.epoch <= fenceEpoch;
  if (copyUsable && (!rowFound || copy.epoch > row.epoch || (copy.epoch === row.epoch && copy.seq > row.seq))) {
    return { state: copy.state, seq: copy.seq, source: 'redis' };
  }
  return rowFound ? { state: row.state, seq: row.seq, source: 'postgres' } : { state: null, seq: 0, source: 'none' };
}

/** What an activation reads besides Postgres; never rejects (an error or a late answer reads as no copy). */
export interface StateReplica {
  read(keys: readonly string[]): Promise<(ReplicaCopy | null)[]>;
  /** After a claim: the epochs it took (shard → epoch), which Redis then holds former owners to. */
  fence(epochs: ReadonlyMap<number, number>): Promise<void>;
  /** Counts which copy each activation started from. */
  chosen(source: ChosenCopy['source']): void;
}

/** The part of an ioredis client the replica uses (a test may hand in a client of its own). */
export interface ReplicaRedis {
  status: string;
  pipeline(): {
    hmgetBuffer(key: string, ...fields: string[]): unknown;
    exec(): Promise<[Error | null, unknown][] | null>;
  };
  tallyReplicaPut(numberOfKeys: number, ...args: (string | Buffer)[]): Promise<number>;
  tallyReplicaFence(numberOfKeys: number, ...args: string[]): Promise<string[]>;
  tallyReplicaAdopt(numberOfKeys: number, ...args: string[]): Promise<string | null>;
  on(event: 'ready' | 'error' | 'end', listener: (...args: unknown[]) => void): unknown;
  quit(): Promise<unknown>;
  disconnect(): void;
}

/**
 * KEYS[1]: the fence hash (shard → the highest epoch claimed); then the actors' keys.
 * ARGV: for each actor, its shard, epoch, sequence, time to live in ms and state.
 *
 * A snapshot is refused when its shard's fence is past its epoch (its writer has been
 * fenced out, as Postgres would refuse its row) or when the copy held is of a later epoch.
 * Within one epoch the last push wins: one process holds an epoch, and its pushes reach
 * Redis in order on its one connection. A key that is not a hash is left alone. Returns how
 * many snapshots it wrote.
 */
const PUT_SCRIPT = `
local written = 0
for i = 2, #KEYS do
  local at = (i - 2) * 5
  local epoch = tonumber(ARGV[at + 2])
  local fenced = tonumber(redis.call('HGET', KEYS[1], ARGV[at + 1]))
  if fenced == nil or fenced <= epoch then
    local held = redis.pcall('HGET', KEYS[i], 'e')
    if type(held) ~= 'table' then
      local heldEpoch = tonumber(held)
      if heldEpoch == nil or heldEpoch <= epoch then
        redis.call('HSET', KEYS[i], 'e', ARGV[at + 2], 'q', ARGV[at + 3], 's', ARGV[at + 5])
        redis.call('PEXPIRE', KEYS[i], ARGV[at + 4])
        written = written + 1
      end
    end
  end
end
return written`;

/**
 * KEYS[1]: the fence hash. ARGV: shard and epoch pairs, as a claim bumped them in Postgres.
 * Raises each shard's fence to its epoch, never lowers it; returns the shards whose fence was
 * already past the epoch given (Redis is ahead of this database).
 */
const FENCE_SCRIPT = `
local ahead = {}
for i = 1, #ARGV, 2 do
  local held = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  local epoch = tonumber(ARGV[i + 1])
  if held == nil or held < epoch then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  elseif held > epoch then
    ahead[#ahead + 1] = ARGV[i]
  end
end
return ahead`;

/**
 * KEYS[1]: `<prefix>#incarnation`; KEYS[2]: the fence of the layout before incarnations.
 * ARGV[1]: this database's incarnation; ARGV[2]: the prefix.
 *
 * Makes the prefix this database's: returns false when it already was; otherwise records the
 * incarnation, deletes the former database's fence (or the old layout's), and returns the
 * former incarnation ('' for the old layout; false too for a prefix never used before).
 * Nothing else is deleted: the former copies expire.
 */
const ADOPT_SCRIPT = `
local former = redis.call('GET', KEYS[1])
if former == ARGV[1] then return false end
redis.call('SET', KEYS[1], ARGV[1])
if former then
  redis.call('DEL', ARGV[2] .. former .. ':#fence')
  return former
end
if redis.call('DEL', KEYS[2]) == 1 then return '' end
return false`;

export interface ReplicaOptions {
  /** Prepended to every key. */
  prefix: string;
  /** The database's incarnation (`readIncarnation`): every key but the marker is under it. */
  incarnation: string;
  /** A snapshot not pushed again for this long expires. */
  ttlMs: number;
  /** An activation waits this long for Redis, then goes on with Postgres alone. */
  readTimeoutMs: number;
}

export interface ReplicaStats {
  pushes: number;
  pushFailures: number;
  snapshotsPushed: number;
  readFailures: number;
  chosen: Record<ChosenCopy['source'], number>;
}

/** Snapshots per script call: a call runs alone in Redis, so it is kept to about a millisecond. */
const PUT_BATCH = 200;
/** The fence hash, beside the actors' keys (an entity key never starts with '#'). */
const FENCE_KEY = '#fence';
/** `<prefix>#incarnation`: the incarnation of the database the prefix serves now. */
const INCARNATION_KEY = '#incarnation';

export function emptyReplicaStats(): ReplicaStats {
  return { pushes: 0, pushFailures: 0, snapshotsPushed: 0, readFailures: 0, chosen: { postgres: 0, redis: 0, none: 0 } };
}

export class RedisReplica implements StateReplica {
  readonly stats = emptyReplicaStats();
  /** Whether the last contact with Redis went well; logged when it changes. */
  private healthy = true;

  constructor(
    private readonly redis: ReplicaRedis,
    private readonly options: ReplicaOptions,
    private readonly log: Logger,
  ) {
    redis.on('error', (error) => this.trouble('the Redis connection failed', error));
    redis.on('ready', () => {
      this.recovered('Redis connection ready');
      void this.adoptPrefix();
    });
  }

  /** Every key of this database's replica starts with this. */
  private get keys(): string {
    return `${this.options.prefix}${this.options.incarnation}:`;
  }

  /**
   * Makes the prefix this database's (at each connection): when it served another database
   * (or the layout before incarnations), that database's fence is deleted, once, with one
   * info line. Its copies are never read (they are under another incarnation) and expire.
   */
  private async adoptPrefix(): Promise<void> {
    const { prefix, incarnation } = this.options;
    try {
      const former = await this.redis.tallyReplicaAdopt(2, prefix + INCARNATION_KEY, prefix + FENCE_KEY, incarnation, prefix);
      if (former !== null) {
        this.log.info(
          { prefix, former: former === '' ? 'none (keys from before incarnations)' : former, incarnation },
          'the Redis replica under this prefix served another database: its copies are ignored and expire; its fence was deleted',
        );
      }
    } catch (error) {
      this.trouble('claiming the Redis replica’s prefix failed', error);
    }
  }

  /** Whether Redis answered the last push or read. */
  get up(): boolean {
    return this.healthy && this.connected;
  }

  /** Whether the client has a connection to Redis at all: without one, a push cannot reach it. */
  get connected(): boolean {
    return this.redis.status === 'ready';
  }

  /**
   * Counts a push that waits for Redis to come back, with `pending` actors queued for it:
   * they are not collected meanwhile, and go with the first push after it is back.
   */
  unreachable(pending: number): void {
    if (pending > 0) this.stats.pushFailures++;
  }

  /**
   * Pushes `rows` (the runtime's `collectReplica`) at `now`: one script call per PUT_BATCH
   * snapshots, sent together. A snapshot lives for the idle time, or until its state stops
   * mattering (`expiresAt`) if that comes first: a limiter's row is deleted from Postgres
   * after that, and no copy may outlive it. Resolves with how many Redis took (fewer than
   * given when some are fenced or older than its copy), or null when the push did not reach
   * Redis; never rejects.
   */
  async push(rows: readonly PersistedState[], now: number): Promise<number | null> {
    if (rows.length === 0) return 0;
    if (!this.connected) {
      this.stats.pushFailures++;
      return null;
    }
    this.stats.pushes++;
    try {
      const fence = this.keys + FENCE_KEY;
      // Every call's arguments first: nothing is sent if a state does not encode.
      const batches: (string | Buffer)[][] = [];
      for (let from = 0; from < rows.length; from += PUT_BATCH) {
        const batch = rows.slice(from, from + PUT_BATCH);
        const args: (string | Buffer)[] = [fence, ...batch.map((row) => this.keys + row.entityKey)];
        for (const row of batch) {
          const ttl = row.expiresAt == null ? this.options.ttlMs : Math.max(1, Math.min(this.options.ttlMs, row.expiresAt - now));
          args.push(String(row.shard), String(row.epoch), String(row.seq ?? 0), String(ttl), statePackr.pack(row.state));
        }
        batches.push(args);
      }
      const calls = batches.map((args) => this.redis.tallyReplicaPut((args.length - 1) / 6 + 1, ...args));
      const written = (await Promise.all(calls)).reduce((sum, n) => sum + Number(n), 0);
      this.stats.snapshotsPushed += written;
      this.recovered('Redis answers the replica again');
      return written;
    } catch (error) {
      this.stats.pushFailures++;
      this.trouble('pushing snapshots to the Redis replica failed', error);
      return null;
    }
  }

  /**
   * Raises the replica's fence to the epochs a claim just took in Postgres (shard → epoch),
   * so that Redis refuses what a former owner still pushes under an older epoch. Waits at
   * most the read timeout; never rejects. Shards whose fence in Redis is already past the
   * claim (a database restored from a backup, or a prefix shared with another cluster) are
   * logged: Redis refuses this node's pushes for them until their keys are deleted.
   */
  async fence(epochs: ReadonlyMap<number, number>): Promise<void> {
    if (epochs.size === 0 || this.redis.status !== 'ready') return;
    const args: string[] = [];
    for (const [shard, epoch] of epochs) args.push(String(shard), String(epoch));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.options.readTimeoutMs);
    });
    try {
      const ahead = await Promise.race([this.redis.tallyReplicaFence(1, this.keys + FENCE_KEY, ...args), late]);
      if (ahead === 'late') throw new ReplicaTimeoutError('raising the fence', this.options.readTimeoutMs);
      if (ahead.length > 0) {
        this.log.error(
          { shards: ahead.length, prefix: this.options.prefix },
          'the Redis replica holds newer epochs than this database for some shards (restored from a backup, or a prefix shared with another cluster?): it refuses their snapshots; delete the keys under the prefix',
        );
      }
    } catch (error) {
      this.trouble('raising the Redis replica’s fence failed', error);
    } finally {
      clearTimeout(timer);
    }
  }

  async read(keys: readonly string[]): Promise<(ReplicaCopy | null)[]> {
    const none = (): (ReplicaCopy | null)[] => keys.map(() => null);
    if (keys.length === 0) return [];
    // Down, or failing since its last answer: no activation waits for it until a push succeeds.
    if (!this.up) {
      this.stats.readFailures++;
      return none();
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.options.readTimeoutMs);
    });
    try {
      const pipeline = this.redis.pipeline();
      for (const key of keys) pipeline.hmgetBuffer(this.keys + key, 'e', 'q', 's');
      const answer = await Promise.race([pipeline.exec(), late]);
      if (answer === 'late') throw new ReplicaTimeoutError('reading copies', this.options.readTimeoutMs);
      return keys.map((_, i) => decodeCopy(answer?.[i]));
    } catch (error) {
      this.stats.readFailures++;
      this.trouble('reading the Redis replica failed; activating from Postgres alone', error);
      return none();
    } finally {
      clearTimeout(timer);
    }
  }

  chosen(source: ChosenCopy['source']): void {
    this.stats.chosen[source]++;
  }

  async close(): Promise<void> {
    // A Redis that does not answer QUIT is cut off: closing must not wait on it.
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private trouble(what: string, error: unknown): void {
    if (!this.healthy) return;
    this.healthy = false;
    this.log.warn({ err: error }, `${what}: the replica cache is out of use until Redis answers (nothing is lost: Postgres has every flush)`);
  }

  private recovered(what: string): void {
    if (this.healthy) return;
    this.healthy = true;
    this.log.info(what);
  }
}

/** One pipeline answer: `[error, [e, q, s]]`; anything unreadable is no copy. */
function decodeCopy(answer: [Error | null, unknown] | undefined): ReplicaCopy | null {
  if (answer === undefined || answer[0] !== null) return null;
  const [epoch, seq, state] = answer[1] as (Buffer | null)[];
  if (!epoch || !seq || !state) return null;
  try {
    return { epoch: Number(epoch.toString()), seq: Number(seq.toString()), state: statePackr.unpack(state) };
  } catch {
    // A copy that does not decode is no copy: the activation uses Postgres's.
    return null;
  }
}

/**
 * A client for `url` that never queues a command while disconnected (it fails at once, and
 * the replica goes on without Redis) and reconnects by itself, at most a second apart.
 *
 * ioredis is loaded here, only when a replica is configured: merely importing it made every
 * consume of a node without Redis about 0.5 µs slower (3.1 → 3.65 µs of JavaScript,
 * bench/suites/pipeline, four runs each), for a reason not found in its code.
 */
export async function openReplica(url: string, options: ReplicaOptions, log: Logger): Promise<RedisReplica> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    commandTimeout: 2000,
    retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
  });
  redis.defineCommand('tallyReplicaPut', { lua: PUT_SCRIPT });
  redis.defineCommand('tallyReplicaFence', { lua: FENCE_SCRIPT });
  redis.defineCommand('tallyReplicaAdopt', { lua: ADOPT_SCRIPT });
  return new RedisReplica(redis as unknown as ReplicaRedis, options, log);
}
