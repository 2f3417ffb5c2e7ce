/**
 * A user's usage counters: what was charged and refused, by UTC hour, resource and the
 * credential that asked (an API key's id, a session's id, or "" for a platform service).
 *
 * The current hour's counters live in the actor and are written with its quota state, in the
 * same fenced statement, so usage and state lose the same window in a crash and never
 * disagree. When the hour closes (the next record falls in a later hour), or the actor is
 * about to leave memory (`rollNow`), the counters are rolled: they become a closed hour with
 * a roll number, waiting for the next write, which adds them to the `usage` table in the
 * statement that writes the state.
 *
 * Why roll numbers: an addition must happen exactly once, though a write whose answer never
 * came back (the connection broke after the commit) is sent again. Each roll gets the next
 * number of the user's sequence, which is stored with the state (`actor_state.usage_rolls`);
 * a write adds only the closed hours numbered past what the row already says was added. A
 * state loaded from Postgres may still list closed hours it added; a copy from the Redis
 * replica may list some it did not: either way the next write sorts them out the same way.
 *
 * Memory: a user who has charged nothing since it was loaded holds no counters at all (null),
 * and a user with one key and one resource holds one row.
 */

const HOUR_MS = 3_600_000;

export interface UsageCounts {
  readonly resource: string;
  /** The API key's or session's id; "" when a platform service or the admin token asked. */
  readonly key: string;
  amount: number;
  requests: number;
  denied: number;
}

/** A closed hour, waiting to be added to the history by the next write. */
export interface ClosedHour {
  readonly roll: number;
  readonly hour: number;
  readonly rows: readonly UsageCounts[];
}

/** The closed hours one write carries, and the highest roll number among them. */
export interface PendingUsage {
  rolls: number;
  hours: readonly ClosedHour[];
}

/** The counters as the stored state holds them. */
export interface UsageJSON {
  hour: number;
  rolls: number;
  /** `[resource, key, amount, requests, denied]` */
  rows: [string, string, number, number, number][];
  /** `[roll, hour, resource, key, amount, requests, denied]`, for closed hours not yet known to be added. */
  pending?: [number, number, string, string, number, number, number][];
}

export class UsageCounters {
  /** The start of the hour `rows` count, in ms since the epoch (UTC). */
  hour: number;
  rows: UsageCounts[] = [];
  pending: ClosedHour[] | null = null;
  /** The last roll number given. */
  rolls: number;

  constructor(hour: number, rolls: number) {
    this.hour = hour;
    this.rolls = rolls;
  }

  /** Records an admitted charge of `amount` to `resource`; counts one request. */
  charged(now: number, key: string, resource: string, amount: number): void {
    const row = this.row(now, key, resource);
    row.amount += amount;
    row.requests++;
  }

  /** Records a refused request for `resource`. */
  refused(now: number, key: string, resource: string): void {
    this.row(now, key, resource).denied++;
  }

  /** Rolls the current hour's counters into a closed hour, if there are any. Returns whether it did. */
  rollNow(): boolean {
    if (this.rows.length === 0) return false;
    const closed: ClosedHour = { roll: ++this.rolls, hour: this.hour, rows: this.rows };
    if (this.pending === null) this.pending = [closed];
    else this.pending.push(closed);
    this.rows = [];
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

  /** Nothing counted and nothing waiting: the counters can go. */
  get empty(): boolean {
    return this.rows.length === 0 && this.pending === null;
  }

  toJSON(): UsageJSON {
    const json: UsageJSON = { hour: this.hour, rolls: this.rolls, rows: this.rows.map((row) => [row.resource, row.key, row.amount, row.requests, row.denied]) };
    if (this.pending !== null) {
      json.pending = this.pending.flatMap((closed) =>
        closed.rows.map((row): [number, number, string, string, number, number, number] => [
          closed.roll,
          closed.hour,
          row.resource,
          row.key,
          row.amount,
          row.requests,
          row.denied,
        ]),
      );
    }
    return json;
  }

  /**
   * The counters a stored state holds, or null when it holds none. Reading never throws: a
   * malformed row is skipped (only Tally writes these, but a state is read like any input).
   */
  static fromJSON(json: unknown): UsageCounters | null {
    if (typeof json !== 'object' || json === null) return null;
    const { hour, rolls, rows, pending } = json as Partial<Record<keyof UsageJSON, unknown>>;
    if (!isCount(hour) || !isCount(rolls)) return null;
    const counters = new UsageCounters(hourOf(hour), rolls);
    if (Array.isArray(rows)) {
      for (const raw of rows) {
        const row = countsOf(raw, 0);
        if (row !== null) counters.rows.push(row);
      }
    }
    if (Array.isArray(pending)) {
      const closed = new Map<number, ClosedHour & { rows: UsageCounts[] }>();
      for (const raw of pending) {
        if (!Array.isArray(raw) || !isCount(raw[0]) || !isCount(raw[1]) || raw[0] > rolls) continue;
        const row = countsOf(raw, 2);
        if (row === null) continue;
        const entry = closed.get(raw[0]) ?? { roll: raw[0], hour: hourOf(raw[1]), rows: [] };
        entry.rows.push(row);
        closed.set(raw[0], entry);
      }
      if (closed.size > 0) counters.pending = [...closed.values()].sort((a, b) => a.roll - b.roll);
    }
    return counters.empty && rolls === 0 ? null : counters;
  }

  private row(now: number, key: string, resource: string): UsageCounts {
    if (now >= this.hour + HOUR_MS) {
      this.rollNow();
      this.hour = hourOf(now);
    }
    // A clock behind the one that opened this hour (another owner's) still counts here: a
    // closed hour is never reopened.
    const rows = this.rows;
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      if (row.resource === resource && row.key === key) return row;
    }
    const row: UsageCounts = { resource, key, amount: 0, requests: 0, denied: 0 };
    rows.push(row);
    return row;
  }
}

const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

function countsOf(raw: unknown, at: number): UsageCounts | null {
  if (!Array.isArray(raw)) return null;
  const [resource, key, amount, requests, denied] = raw.slice(at) as unknown[];
  if (typeof resource !== 'string' || typeof key !== 'string' || !isCount(amount) || !isCount(requests) || !isCount(denied)) return null;
  return { resource, key, amount, requests, denied };
}

/** The start of the UTC hour `at` falls in. */
export function hourOf(at: number): number {
  return at - (at % HOUR_MS);
}
