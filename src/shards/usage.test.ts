import { describe, expect, it } from 'vitest';
import { compileLimits } from './quota/index.js';
import { MAX_FREE_ROWS, OTHER_RESOURCE, UsageCounters } from './usage.js';

/** A tier with a budget on `tokens`: that resource always gets rows of its own. */
const SET = compileLimits([{ name: 'tokens', kind: 'budget', limit: 1_000_000, period: 'month', resource: 'tokens' }]);

const HOUR = 3_600_000;
const T0 = Date.parse('2026-11-30T22:10:00Z');

describe('UsageCounters', () => {
  it('counts by resource and key within the hour, and rolls the hour when a record falls in a later one', () => {
    const usage = new UsageCounters(T0 - (T0 % HOUR), 0);
    usage.charged(T0, 'key_a', 'default', 2, SET);
    usage.charged(T0 + 1000, 'key_a', 'default', 3, SET);
    usage.charged(T0 + 2000, 'key_a', 'tokens', 1500, SET);
    usage.refused(T0 + 3000, 'sess_b', 'default', SET);
    expect(usage.pendingUsage()).toBeNull();
    // 23:59:59.999 is still 23:00's hour; midnight opens the next.
    usage.charged(Date.parse('2026-11-30T22:59:59.999Z'), 'key_a', 'default', 1, SET);
    usage.charged(Date.parse('2026-11-30T23:00:00.000Z'), 'key_a', 'default', 7, SET);
    const pending = usage.pendingUsage()!;
    expect(pending.rolls).toBe(1);
    expect(pending.hours).toEqual([
      {
        roll: 1,
        hour: Date.parse('2026-11-30T22:00:00Z'),
        cells: ['default', 'key_a', 6, 3, 0, 'tokens', 'key_a', 1500, 1, 0, 'default', 'sess_b', 0, 0, 1],
      },
    ]);
    expect(usage.cells).toEqual(['default', 'key_a', 7, 1, 0]);
  });

  it('gives a write a copy: an hour rolled while it is in flight waits for the next write', () => {
    const usage = new UsageCounters(0, 0);
    usage.charged(10, 'k', 'default', 1, SET);
    usage.rollNow();
    const first = usage.pendingUsage()!;
    usage.charged(20, 'k', 'default', 1, SET);
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
    usage.charged(T0, 'k', 'default', 5, SET);
    usage.rollNow();
    usage.charged(T0 + HOUR, 'k', 'images', 2, SET);
    const copy = UsageCounters.fromJSON(JSON.parse(JSON.stringify(usage.toJSON())))!;
    expect(copy.rolls).toBe(5);
    expect(copy.pendingUsage()).toEqual(usage.pendingUsage());
    expect(copy.cells).toEqual(usage.cells);
    copy.rollNow();
    expect(copy.pendingUsage()!.rolls).toBe(6);
  });

  it('counts resources no limit names together past MAX_FREE_ROWS rows an hour, never one a limit names', () => {
    const usage = new UsageCounters(0, 0);
    for (let i = 0; i < MAX_FREE_ROWS + 10; i++) usage.charged(10, 'k', `junk-${i}`, 1, SET);
    usage.charged(10, 'k', 'tokens', 500, SET);
    const { cells } = usage.toJSON();
    expect(cells).toHaveLength((MAX_FREE_ROWS + 2) * 5);
    expect(cells.slice(-10)).toEqual([OTHER_RESOURCE, 'k', 10, 10, 0, 'tokens', 'k', 500, 1, 0]);
  });

  it('reads a malformed stored form without throwing, skipping what is wrong', () => {
    expect(UsageCounters.fromJSON(undefined)).toBeNull();
    expect(UsageCounters.fromJSON({ hour: 'x', rolls: 1 })).toBeNull();
    const read = UsageCounters.fromJSON({
      hour: T0,
      rolls: 2,
      cells: ['default', 'k', 1, 1, 0, 'bad', 'k', -1, 0, 0, 'cut short'],
      pending: [
        [2, T0, ['default', 'k', 3, 1, 0]],
        [9, T0, ['default', 'k', 3, 1, 0]], // a roll past `rolls`: not ours
        'nonsense',
      ],
    })!;
    expect(read.cells).toEqual(['default', 'k', 1, 1, 0]);
    expect(read.pendingUsage()!.hours.map((closed) => closed.roll)).toEqual([2]);
    expect(read.hour % HOUR).toBe(0);
  });
});
