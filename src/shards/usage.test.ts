import { describe, expect, it } from 'vitest';
import { UsageCounters } from './usage.js';

const HOUR = 3_600_000;
const T0 = Date.parse('2026-11-30T22:10:00Z');

describe('UsageCounters', () => {
  it('counts by resource and key within the hour, and rolls the hour when a record falls in a later one', () => {
    const usage = new UsageCounters(T0 - (T0 % HOUR), 0);
    usage.charged(T0, 'key_a', 'default', 2);
    usage.charged(T0 + 1000, 'key_a', 'default', 3);
    usage.charged(T0 + 2000, 'key_a', 'tokens', 1500);
    usage.refused(T0 + 3000, 'sess_b', 'default');
    expect(usage.pendingUsage()).toBeNull();
    // 23:59:59.999 is still 23:00's hour; midnight opens the next.
    usage.charged(Date.parse('2026-11-30T22:59:59.999Z'), 'key_a', 'default', 1);
    usage.charged(Date.parse('2026-11-30T23:00:00.000Z'), 'key_a', 'default', 7);
    const pending = usage.pendingUsage()!;
    expect(pending.rolls).toBe(1);
    expect(pending.hours).toEqual([
      {
        roll: 1,
        hour: Date.parse('2026-11-30T22:00:00Z'),
        rows: [
          { resource: 'default', key: 'key_a', amount: 6, requests: 3, denied: 0 },
          { resource: 'tokens', key: 'key_a', amount: 1500, requests: 1, denied: 0 },
          { resource: 'default', key: 'sess_b', amount: 0, requests: 0, denied: 1 },
        ],
      },
    ]);
    expect(usage.rows).toEqual([{ resource: 'default', key: 'key_a', amount: 7, requests: 1, denied: 0 }]);
  });

  it('gives a write a copy: an hour rolled while it is in flight waits for the next write', () => {
    const usage = new UsageCounters(0, 0);
    usage.charged(10, 'k', 'default', 1);
    usage.rollNow();
    const first = usage.pendingUsage()!;
    usage.charged(20, 'k', 'default', 1);
    usage.rollNow();
    expect(first.hours.map((closed) => closed.roll)).toEqual([1]);
    usage.added(first.rolls);
    expect(usage.pendingUsage()!.hours.map((closed) => closed.roll)).toEqual([2]);
    usage.added(2);
    expect(usage.pendingUsage()).toBeNull();
    expect(usage.empty).toBe(true);
  });

  it('goes on numbering rolls from the stored state, which keeps closed hours not known to be added', () => {
    const usage = new UsageCounters(T0 - (T0 % HOUR), 4);
    usage.charged(T0, 'k', 'default', 5);
    usage.rollNow();
    usage.charged(T0 + HOUR, 'k', 'images', 2);
    const copy = UsageCounters.fromJSON(JSON.parse(JSON.stringify(usage.toJSON())))!;
    expect(copy.rolls).toBe(5);
    expect(copy.pendingUsage()).toEqual(usage.pendingUsage());
    expect(copy.rows).toEqual(usage.rows);
    copy.rollNow();
    expect(copy.pendingUsage()!.rolls).toBe(6);
  });

  it('reads a malformed stored form without throwing, skipping what is wrong', () => {
    expect(UsageCounters.fromJSON(undefined)).toBeNull();
    expect(UsageCounters.fromJSON({ hour: 'x', rolls: 1 })).toBeNull();
    const read = UsageCounters.fromJSON({
      hour: T0,
      rolls: 2,
      rows: [['default', 'k', 1, 1, 0], ['bad', 'k', -1, 0, 0], 'nonsense'],
      pending: [
        [2, T0, 'default', 'k', 3, 1, 0],
        [9, T0, 'default', 'k', 3, 1, 0], // a roll past `rolls`: not ours
      ],
    })!;
    expect(read.rows).toEqual([{ resource: 'default', key: 'k', amount: 1, requests: 1, denied: 0 }]);
    expect(read.pendingUsage()!.hours.map((closed) => closed.roll)).toEqual([2]);
    expect(read.hour % HOUR).toBe(0);
  });
});
