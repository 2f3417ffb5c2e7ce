import { describe, expect, it } from 'vitest';
import type { Limit } from './limits.js';
import { validateLimits } from './validate.js';

const ok: Limit[] = [
  { name: 'requests', kind: 'rate', limit: 600, period_ms: 60_000, burst: 50 },
  { name: 'tokens.month:v2', kind: 'budget', limit: 2_000_000, period: 'month', resource: 'llm' },
  { name: 'img_window-1', kind: 'window', limit: Number.MAX_SAFE_INTEGER, window_ms: 31_622_400_000 },
];
const check = (limit: Record<string, unknown>) => validateLimits([limit as unknown as Limit]);

describe('validateLimits', () => {
  it('accepts well-formed limits', () => {
    expect(validateLimits(ok)).toBeNull();
    expect(validateLimits([])).toBeNull();
  });

  it('names the problem', () => {
    expect(validateLimits([ok[0]!, { ...ok[1]!, name: 'requests' }])).toMatch(/"requests" is used twice/);
    expect(check({ name: 'bad name', kind: 'budget', limit: 1, period: 'day' })).toMatch(/name/);
    expect(check({ name: 'x'.repeat(65), kind: 'budget', limit: 1, period: 'day' })).toMatch(/name/);
    expect(check({ name: '', kind: 'budget', limit: 1, period: 'day' })).toMatch(/name/);
    expect(check({ kind: 'budget', limit: 1, period: 'day' })).toMatch(/name/);
    for (const limit of [0, -1, 1.5, 2 ** 53, '5', null])
      expect(check({ name: 'x', kind: 'budget', limit, period: 'day' })).toMatch(/"x": limit must be an integer/);
    for (const period_ms of [0, 1.5, 31_622_400_001, undefined]) expect(check({ name: 'x', kind: 'rate', limit: 1, period_ms })).toMatch(/period_ms/);
    for (const burst of [0, 0.5, 2 ** 53]) expect(check({ name: 'x', kind: 'rate', limit: 1, period_ms: 1, burst })).toMatch(/burst/);
    for (const window_ms of [0, 2.5, 31_622_400_001]) expect(check({ name: 'x', kind: 'window', limit: 1, window_ms })).toMatch(/window_ms/);
    expect(check({ name: 'x', kind: 'budget', limit: 1, period: 'week' })).toMatch(/period/);
    for (const resource of ['', 'r'.repeat(65), 5]) expect(check({ name: 'x', kind: 'budget', limit: 1, period: 'day', resource })).toMatch(/resource/);
    expect(check({ name: 'x', kind: 'leaky', limit: 1 })).toMatch(/unknown kind "leaky"/);
    expect(check({ name: 'x', limit: 1 })).toMatch(/unknown kind/);
  });

  it('does not throw on what is not a list of objects', () => {
    expect(validateLimits(null as unknown as Limit[])).toMatch(/list/);
    expect(validateLimits([null, 3] as unknown as Limit[])).toMatch(/object/);
  });
});
