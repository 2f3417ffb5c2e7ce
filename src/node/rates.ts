/**
 * Each node's quota decision rate over the last 15 minutes, kept in memory by every node, so that the
 * console (`GET /v1/admin/cluster/rates`) can draw the recent past whenever it is opened.
 *
 * Every `intervalMs` the node takes one sample per member of a counter that only grows while
 * the member runs: on a single node its own quota decisions; in a cluster the
 * `decisions` each member's latest heartbeat carried, with the time the member sealed that
 * heartbeat (`at`). A point is the counter's increase between two samples over the member's
 * own time between them, stamped with this node's time of the sample, so every member's
 * points of one sample share one time. A member that restarted (another incarnation, or a
 * smaller count) starts again from its new count; one whose heartbeat has not changed since
 * the last sample gets no point (a gap). Each member keeps at most `capacity` points, and a
 * member with no new heartbeat for as long (it left, or died) is forgotten.
 */
import type { ClusterRates } from '../api/index.js';

export const RATE_INTERVAL_MS = 10_000;
const RATE_POINTS = 90;

/** One member's counter as one sample sees it. */
interface RateSample {
  id: string;
  /** Tells a restarted member from the process before it. */
  incarnation: string;
  count: number;
  /** When the member read `count`, on its own clock (ms since the epoch). */
  at: number;
}

interface MemberRates {
  last: RateSample;
  /** This node's time of the sample that last brought a new count. */
  changedAt: number;
  /** Oldest first, at most `capacity`. */
  points: { at: number; perSecond: number }[];
}

export class RateHistory {
  private readonly members = new Map<string, MemberRates>();

  constructor(
    readonly intervalMs = RATE_INTERVAL_MS,
    private readonly capacity = RATE_POINTS,
  ) {}

  /** How far back points are kept, and how long a silent member is remembered. */
  private get keepMs(): number {
    return this.intervalMs * this.capacity;
  }

  /** Records one sample of every member, taken at `now` (this node's clock, ms since the epoch). */
  sample(now: number, samples: readonly RateSample[]): void {
    for (const sample of samples) {
      const member = this.members.get(sample.id);
      if (member === undefined) {
        this.members.set(sample.id, { last: sample, changedAt: now, points: [] });
        continue;
      }
      const { last } = member;
      if (sample.incarnation !== last.incarnation || sample.count < last.count) {
        member.last = sample;
        member.changedAt = now;
        continue;
      }
      if (sample.at <= last.at) continue;
      member.points.push({ at: now, perSecond: ((sample.count - last.count) * 1000) / (sample.at - last.at) });
      if (member.points.length > this.capacity) member.points.shift();
      member.last = sample;
      member.changedAt = now;
    }
    for (const [id, member] of this.members) if (now - member.changedAt > this.keepMs) this.members.delete(id);
  }

  /** The points of the last `capacity` intervals before `now`, by member id. */
  view(now: number): ClusterRates {
    const since = now - this.keepMs;
    return {
      interval_ms: this.intervalMs,
      nodes: [...this.members]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([id, member]) => ({
          id,
          points: member.points
            .filter((point) => point.at > since)
            .map((point) => ({ at: new Date(point.at).toISOString(), per_second: Math.round(point.perSecond * 100) / 100 })),
        })),
    };
  }
}
