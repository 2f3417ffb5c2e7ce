import { describe, expect, it } from 'vitest';
import type { LimitState } from '../shards/index.js';
import { rateLimitHeaders, tightest } from './rateLimitHeaders.js';

const now = Date.UTC(2026, 10, 22, 12, 0, 0);
const rate = (over: Partial<LimitState> = {}): LimitState => ({
  name: 'requests',
  kind: 'rate',
  limit: 60,
  remaining: 45,
  reset_at: now + 14_500,
  window_ms: 60_000,
  ...over,
});
const budget = (over: Partial<LimitState> = {}): LimitState => ({
  name: 'tokens',
  kind: 'budget',
  limit: 1_000_000,
  remaining: 900_000,
  reset_at: Date.UTC(2026, 11, 1),
  window_ms: 30 * 86_400_000,
  ...over,
});

describe('rateLimitHeaders', () => {
  it('describes the limit with the smallest share left', () => {
    expect(tightest([budget(), rate()])?.name).toBe('requests');
    expect(rateLimitHeaders([budget(), rate()], now)).toEqual({
      'RateLimit-Policy': '"requests";q=60;w=60',
      RateLimit: '"requests";r=45;t=15',
      'X-RateLimit-Limit': '60',
      'X-RateLimit-Remaining': '45',
      'X-RateLimit-Reset': String(Math.ceil((now + 14_500) / 1000)),
    });
  });

  it('follows a limit whose size or window changed under the same name', () => {
    expect(rateLimitHeaders([rate()], now)['RateLimit-Policy']).toBe('"requests";q=60;w=60');
    expect(rateLimitHeaders([rate({ limit: 120, remaining: 100 })], now)).toMatchObject({
      'RateLimit-Policy': '"requests";q=120;w=60',
      'X-RateLimit-Limit': '120',
    });
    expect(rateLimitHeaders([rate({ window_ms: 1_500 })], now)['RateLimit-Policy']).toBe('"requests";q=60;w=2');
  });

  it('keeps tiers that share a limit name apart when their answers interleave', () => {
    for (let i = 0; i < 3; i++) {
      expect(rateLimitHeaders([rate({ limit: 60 })], now)['RateLimit-Policy']).toBe('"requests";q=60;w=60');
      expect(rateLimitHeaders([rate({ limit: 600, remaining: 500 })], now)['X-RateLimit-Limit']).toBe('600');
      expect(rateLimitHeaders([rate({ limit: 600, window_ms: 3_600_000 })], now)['RateLimit-Policy']).toBe('"requests";q=600;w=3600');
    }
  });

  it('sends nothing when no limit applies', () => {
    expect(rateLimitHeaders([], now)).toEqual({});
  });
});
