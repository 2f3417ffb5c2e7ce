/**
 * A user's usage counters: what was charged and refused, by UTC hour, resource and the
 * credential that asked (an API key's id, a session's id, or "" for a platform service).
 *
 * The current hour's counters live in the actor and are written with its quota state, in the
 * same fenced statement, so usage and state lose the same window in a crash and never
 * disagree. When the hour closes (the next record falls in a later hour), or the actor is
 * about to leave memory idle (`rollNow`), the counters are rolled: they become a closed hour
 * with a roll number, waiting for the next write, which adds them to the `usage` table in the
 * statement that writes the state.
 *
 * Why roll numbers: an addition must happen exactly once, though a write whose answer never
 * came back (the connection broke after the commit) is sent again. Each roll gets the next
 * number of the user's sequence, which is stored with the state (`actor_state.usage_rolls`);
 * a write adds only the closed hours numbered past what the row already says was added. A
 * state loaded from Postgres may still list closed hours it added; a copy from the Redis
 * replica may list some it did not: either way the next write sorts them out the same way.
 *
 * Bounded: a resource that no limit of the user names (callers choose those freely) gets a
 * row of its own only while the hour has fewer than MAX_FREE_ROWS rows; later ones are
 * counted under OTHER_RESOURCE. Resources a limit names always get their own, so what a
 * budget spent is always in its resource's rows.
 *
 * Memory: a user who has charged nothing since it was loaded holds no counters at all (null);
 * the counters are one object and one flat array of 5 slots per resource and credential,
 * with every number a small integer (hours and ticks, not milliseconds).
 */
import type { LimitSet } from './quota/index.js';

const HOUR_MS = 3_600_000;
/** The slots of one resource and credential in `cells`: resource, key, amount, requests, denied. */
const ROW = 5;
/** Rows an hour may hold before resources no limit names are counted together. */
export const MAX_FREE_ROWS = 64;
/** Where resources no limit names are counted once an hour holds MAX_FREE_ROWS rows ("#" is in no limit name). */
export const OTHER_RESOURCE = '#other';

/** `[resource, key, amount, requests, denied, resource, key, …]` */
export type UsageCells = (string | number)[];

/** A closed hour, waiting to be added to the history by the next write. */
export interface ClosedHour {
  readonly roll: number;
  /** The hour's start, in ms since the epoch. */
  readonly hour: number;
  readonly cells: Readonly<UsageCells>;
}

/** The closed hours one write carries, and the highest roll number among them. */
export interface PendingUsage {
  rolls: number;
  hours: readonly ClosedHour[];
}

/** The current hour's counters as usage queries read them from the state row (`actor_state.usage_live`). */
export interface LiveUsage {
  /** The hour's start, ms since the epoch. */
  hour: number;
  cells: Readonly<UsageCells>;
}

/**
 * The counters as the stored state holds them: the cells as they are in memory, so writing a
 * state (once a flush for every changed user) copies nothing.
 */
export interface UsageJSON {
  /** The current hour's start, ms since the epoch. */
  hour: number;
  rolls: number;
  /** `[resource, key, amount, requests, denied, resource, …]` */
  cells: Readonly<UsageCells>;
  /** `[roll, hour, cells]` for closed hours not yet known to be added. */
  pending?: [number, number, Readonly<UsageCells>][];
}

export class UsageCounters {
  /** The hour `cells` count, in hours since the epoch (UTC). */
  private hourIndex: number;
  cells: UsageCells | null = null;
  pending: ClosedHour[] | null = null;
  /** The last roll number given. */
  rolls: number;

  constructor(hour: number, rolls: number) {
    this.hourIndex = Math.floor(hour / HOUR_MS);
    this.rolls = rolls;
  }

  /** The start of the hour being counted, ms since the epoch. */
  get hour(): number {
    return this.hourIndex * HOUR_MS;
  }

  /** Records an admitted charge of `amount` to `resource`; counts one request. */
  charged(now: number, key: string, resource: string, amount: number, set: LimitSet): void {
    const at = this.rowAt(now, key, resource, set);
    const cells = this.cells!;
    cells[at + 2] = (cells[at + 2] as number) + amount;
    cells[at + 3] = (cells[at + 3] as number) + 1;
  }

  /** Records a refused request for `resource`. */
  refused(now: number, key: string, resource: string, set: LimitSet): void {
    const at = this.rowAt(now, key, resource, set) + 4;
    const cells = this.cells!;
    cells[at] = (cells[at] as number) + 1;
  }

  /** Rolls the current hour's counters into a closed hour, if there are any. Returns whether it did. */
  rollNow(): boolean {
    if (this.cells === null) return false;
    const closed: ClosedHour = { roll: ++this.rolls, hour: this.hour, cells: this.cells };
    if (this.pending === null) this.pending = [closed];
    else this.pending.push(closed);
    this.cells = null;
    return true;
  }

  /**
   * What the next write is to add, or null when nothing is waiting. A copy: the write is sent
   * later, and an hour rolled meanwhile must not ride along under the `rolls` taken now (it
   * would be added, and then added again by the write that carries it next).
   */
  pendingUsage(): PendingUsage | null {
    if (this.pending === null) return null;
    return { rolls: this.pending[this.pending.length - 1]!.roll, hours: this.pending.slice() };
  }

  /** A write that carried closed hours up to roll `rolls` committed: they are in the history now. */
  added(rolls: number): void {
    if (this.pending === null) return;
    const left = this.pending.filter((closed) => closed.roll > rolls);
    this.pending = left.length === 0 ? null : left;
  }

  /** Nothing counted and nothing waiting. */
  get empty(): boolean {
    return this.cells === null && this.pending === null;
  }

  /** The current hour's counters, or null when it has none. Not a copy: encode it before the next record. */
  live(): LiveUsage | null {
    return this.cells === null ? null : { hour: this.hour, cells: this.cells };
  }

  toJSON(): UsageJSON {
    const json: UsageJSON = { hour: this.hour, rolls: this.rolls, cells: this.cells ?? NO_CELLS };
    if (this.pending !== null) json.pending = this.pending.map((closed) => [closed.roll, closed.hour, closed.cells]);
    return json;
  }

  /**
   * The counters a stored state holds, or null when it holds none. Reading never throws: a
   * malformed row is skipped (only Tally writes these, but a state is read like any input).
   */
  static fromJSON(json: unknown): UsageCounters | null {
    if (typeof json !== 'object' || json === null) return null;
    const { hour, rolls, cells, pending } = json as Partial<Record<keyof UsageJSON, unknown>>;
    if (!isCount(hour) || !isCount(rolls)) return null;
    const counters = new UsageCounters(hour, rolls);
    counters.cells = cellsFrom(cells);
    if (Array.isArray(pending)) {
      const closed: ClosedHour[] = [];
      for (const raw of pending) {
        if (!Array.isArray(raw) || !isCount(raw[0]) || !isCount(raw[1]) || raw[0] > rolls || closed.some((one) => one.roll === raw[0])) continue;
        const closedCells = cellsFrom(raw[2]);
        if (closedCells !== null) closed.push({ roll: raw[0], hour: hourOf(raw[1]), cells: closedCells });
      }
      if (closed.length > 0) counters.pending = closed.sort((a, b) => a.roll - b.roll);
    }
    return counters.empty && rolls === 0 ? null : counters;
  }

  /** Where the row of `key` and `resource` starts in the cells of the hour `now` falls in (rolling the hour before if it closed). */
  private rowAt(now: number, key: string, resource: string, set: LimitSet): number {
    const index = Math.floor(now / HOUR_MS);
    // A clock behind the one that opened this hour (another owner's) still counts here: a
    // closed hour is never reopened.
    if (index > this.hourIndex) {
      this.rollNow();
      this.hourIndex = index;
    }
    if (this.cells === null) {
      // A literal: its backing store is exactly one row (a push onto [] would reserve 16 slots).
      this.cells = [resource, key, 0, 0, 0];
      return 0;
    }
    return rowOf(this.cells, key, resource, set);
  }
}

/** Where the row of `key` and `resource` starts in `cells`, made if there is none. */
function rowOf(cells: UsageCells, key: string, resource: string, set: LimitSet): number {
  for (let at = 0; at < cells.length; at += ROW) {
    if (cells[at] === resource && cells[at + 1] === key) return at;
  }
  if (cells.length >= MAX_FREE_ROWS * ROW && resource !== OTHER_RESOURCE && !set.compiled.some((entry) => entry.limit.resource === resource)) {
    return rowOf(cells, key, OTHER_RESOURCE, set);
  }
  cells.push(resource, key, 0, 0, 0);
  return cells.length - ROW;
}

const NO_CELLS: Readonly<UsageCells> = Object.freeze([]);

const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

/** The well-formed rows of stored cells (a malformed row is skipped), or null when none are. */
function cellsFrom(raw: unknown): UsageCells | null {
  if (!Array.isArray(raw)) return null;
  const cells: UsageCells = [];
  for (let at = 0; at + ROW <= raw.length; at += ROW) {
    const [resource, key, amount, requests, denied] = raw.slice(at, at + ROW) as unknown[];
    if (typeof resource === 'string' && typeof key === 'string' && isCount(amount) && isCount(requests) && isCount(denied)) {
      cells.push(resource, key, amount, requests, denied);
    }
  }
  return cells.length === 0 ? null : cells;
}

/** The start of the UTC hour `at` falls in. */
export function hourOf(at: number): number {
  return at - (at % HOUR_MS);
}
