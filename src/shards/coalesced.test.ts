import { describe, expect, it } from 'vitest';
import { coalesced } from './coalesced.js';

describe('coalesced', () => {
  it('runs at once when idle, and once more (not once per call) for calls made while it runs', async () => {
    let runs = 0;
    let release: () => void = () => {};
    const task = coalesced(async () => {
      runs++;
      await new Promise<void>((resolve) => {
        release = resolve;
      });
    });
    const first = task();
    expect(runs).toBe(1);
    const during = Array.from({ length: 500 }, () => task());
    expect(runs).toBe(1);
    release();
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    expect(runs).toBe(2);
    release();
    await Promise.all(during);
    expect(runs).toBe(2);
    // Idle again: the next call runs at once.
    const later = task();
    expect(runs).toBe(3);
    release();
    await later;
  });

  it('gives a call made during a failing run a run of its own', async () => {
    let runs = 0;
    const task = coalesced(async () => {
      runs++;
      await new Promise((resolve) => setImmediate(resolve));
      if (runs === 1) throw new Error('first run fails');
    });
    const first = task();
    const second = task();
    await expect(first).rejects.toThrow('first run fails');
    await expect(second).resolves.toBeUndefined();
    expect(runs).toBe(2);
  });

  it('starts no run beside the queued one for a call made between a run’s end and the next’s start', async () => {
    let runs = 0;
    let active = 0;
    let most = 0;
    let release: () => void = () => {};
    const task = coalesced(async () => {
      runs++;
      most = Math.max(most, ++active);
      if (runs === 1) {
        await new Promise<void>((resolve) => {
          release = resolve;
        });
      } else {
        await new Promise((resolve) => setImmediate(resolve));
      }
      active--;
    });
    const first = task();
    // Registered before the queued run's own reaction: runs after the first ends, before the next starts.
    let gap: Promise<void> | undefined;
    const called = first.then(() => {
      gap = task();
      return gap;
    });
    const queued = task();
    release();
    await Promise.all([first, queued, called]);
    expect(gap).toBe(queued);
    expect(runs).toBe(2);
    expect(most).toBe(1);
  });
});
