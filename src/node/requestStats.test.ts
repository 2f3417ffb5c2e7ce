import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { RequestStats } from './requestStats.js';

describe('RequestStats', () => {
  it('renders counts by route and status and a cumulative duration histogram', async () => {
    const registry = new Registry();
    const stats = new RequestStats();
    stats.register(registry);
    stats.observe('POST /v1/quota/consume', 200, 0.05); // 50 µs: first bucket
    stats.observe('POST /v1/quota/consume', 200, 0.3); // 300 µs: le 0.0005
    stats.observe('POST /v1/quota/consume', 429, 3_000); // 3 s: only +Inf
    stats.observe('GET /v1/quota', 401, 1);
    const text = await registry.metrics();
    expect(text).toContain('# TYPE tally_http_requests_total counter');
    expect(text).toContain('tally_http_requests_total{route="POST /v1/quota/consume",status="200"} 2');
    expect(text).toContain('tally_http_requests_total{route="POST /v1/quota/consume",status="429"} 1');
    expect(text).toContain('tally_http_requests_total{route="GET /v1/quota",status="401"} 1');
    expect(text).toContain('# TYPE tally_http_request_duration_seconds histogram');
    expect(text).toContain('tally_http_request_duration_seconds_bucket{le="0.0001",route="POST /v1/quota/consume"} 1');
    expect(text).toContain('tally_http_request_duration_seconds_bucket{le="0.00025",route="POST /v1/quota/consume"} 1');
    expect(text).toContain('tally_http_request_duration_seconds_bucket{le="0.0005",route="POST /v1/quota/consume"} 2');
    expect(text).toContain('tally_http_request_duration_seconds_bucket{le="2",route="POST /v1/quota/consume"} 2');
    expect(text).toContain('tally_http_request_duration_seconds_bucket{le="+Inf",route="POST /v1/quota/consume"} 3');
    expect(text).toContain('tally_http_request_duration_seconds_count{route="POST /v1/quota/consume"} 3');
    expect(text).toMatch(/tally_http_request_duration_seconds_sum\{route="POST \/v1\/quota\/consume"\} 3\.00035/);
    expect(text).toContain('tally_http_request_duration_seconds_bucket{le="0.001",route="GET /v1/quota"} 1');
  });
});
