import { describe, expect, it } from 'vitest';
import { RateHistory } from './rates.js';

const T0 = Date.UTC(2030, 0, 1);
const at = (ms: number) => new Date(ms).toISOString();

describe('RateHistory', () => {
  it('turns counts into rates over the member’s own time, stamped with the sample’s time', () => {
    const rates = new RateHistory(10_000, 90);
    rates.sample(T0, [{ id: 'b', incarnation: 'x', count: 100, at: T0 - 500 }]);
    expect(rates.view(T0)).toEqual({ interval_ms: 10_000, nodes: [{ id: 'b', points: [] }] });
    rates.sample(T0 + 10_000, [
      { id: 'b', incarnation: 'x', count: 350, at: T0 + 4_500 },
      { id: 'a', incarnation: 'y', count: 7, at: T0 + 9_000 },
    ]);
    // 250 requests over the 5 s between b's two heartbeats; a is new: no point yet.
    expect(rates.view(T0 + 10_000).nodes).toEqual([
      { id: 'a', points: [] },
      { id: 'b', points: [{ at: at(T0 + 10_000), per_second: 50 }] },
    ]);
  });

  it('leaves a gap where no heartbeat came, and starts again after a restart', () => {
    const rates = new RateHistory(10_000, 90);
    rates.sample(T0, [{ id: 'a', incarnation: 'x', count: 10, at: T0 }]);
    rates.sample(T0 + 10_000, [{ id: 'a', incarnation: 'x', count: 10, at: T0 }]);
    rates.sample(T0 + 20_000, [{ id: 'a', incarnation: 'x', count: 40, at: T0 + 20_000 }]);
    rates.sample(T0 + 30_000, [{ id: 'a', incarnation: 'z', count: 3, at: T0 + 30_000 }]);
    rates.sample(T0 + 40_000, [{ id: 'a', incarnation: 'z', count: 13, at: T0 + 40_000 }]);
    expect(rates.view(T0 + 40_000).nodes[0]!.points).toEqual([
      { at: at(T0 + 20_000), per_second: 1.5 },
      { at: at(T0 + 40_000), per_second: 1 },
    ]);
  });

  it('keeps 90 points per member and forgets a member silent for 15 minutes', () => {
    const rates = new RateHistory(10_000, 90);
    for (let i = 0; i <= 200; i++) {
      const now = T0 + i * 10_000;
      const samples = [{ id: 'steady', incarnation: 'x', count: i * 30, at: now }];
      if (i <= 100) samples.push({ id: 'gone', incarnation: 'y', count: i, at: now });
      rates.sample(now, samples);
      if (i === 100) expect(rates.view(now).nodes.map((node) => node.id)).toEqual(['gone', 'steady']);
    }
    const view = rates.view(T0 + 200 * 10_000);
    expect(view.nodes.map((node) => node.id)).toEqual(['steady']);
    expect(view.nodes[0]!.points).toHaveLength(90);
    expect(view.nodes[0]!.points.every((point) => point.per_second === 3)).toBe(true);
    expect(view.nodes[0]!.points[0]!.at).toBe(at(T0 + 111 * 10_000));
  });

  it('shows only the last 15 minutes of a member whose points came with gaps', () => {
    const rates = new RateHistory(10_000, 90);
    rates.sample(T0, [{ id: 'a', incarnation: 'x', count: 0, at: T0 }]);
    rates.sample(T0 + 10_000, [{ id: 'a', incarnation: 'x', count: 10, at: T0 + 10_000 }]);
    // A heartbeat every 10 minutes from then on: a point each time, none in between.
    rates.sample(T0 + 610_000, [{ id: 'a', incarnation: 'x', count: 20, at: T0 + 610_000 }]);
    rates.sample(T0 + 1_210_000, [{ id: 'a', incarnation: 'x', count: 30, at: T0 + 1_210_000 }]);
    expect(rates.view(T0 + 1_210_000).nodes[0]!.points.map((point) => point.at)).toEqual([at(T0 + 610_000), at(T0 + 1_210_000)]);
  });
});
