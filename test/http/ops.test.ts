import { readFile } from 'node:fs/promises';
import { beforeEach, describe, expect, it } from 'vitest';
import { createUser, type StartedNode, useTestNode } from '../support/tally.js';

const node = useTestNode();
let t: StartedNode;
beforeEach(() => {
  t = node();
});

describe('operations', () => {
  it('is live and ready, with the checks listed', async () => {
    const live = await t.api('GET', '/health/live');
    expect(live.status).toBe(200);
    // Written by uWebSockets.js itself and not removable at run time: operations.md says how
    // to strip it at the load balancer. Should a build drop it, that page must change.
    expect(live.headers.get('uwebsockets')).toBe('20');
    const ready = await t.api('GET', '/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.body.checks).toMatchObject({ database: { ok: true }, shards: { ok: true }, accepting: { ok: true } });
  });

  it('serves Prometheus metrics with the tally_ prefix and no user ids', async () => {
    const user = await createUser(t.api);
    await t.api('POST', '/v1/quota/consume', { token: user.token });
    const res = await t.api('GET', '/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    expect(res.text).toMatch(/^tally_http_requests_total\{route="POST \/v1\/quota\/consume",status="200"\} \d+/m);
    expect(res.text).toContain('tally_actors_active');
    expect(res.text).not.toContain(user.id);
  });

  it('lists every exported metric in the operations guide, and nothing it does not export', async () => {
    const exported = [...(await t.api('GET', '/metrics')).text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!).sort();
    const guide = await readFile(new URL('../../docs/operations.md', import.meta.url), 'utf8');
    const section = guide.slice(guide.indexOf('## Metrics'), guide.indexOf('\n## ', guide.indexOf('## Metrics') + 1));
    const documented = section
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .flatMap((line) => [...line.split('|')[1]!.matchAll(/`([a-z0-9_]+)`/g)].map((m) => m[1]!))
      .sort();
    // This node has no REDIS_URL: the replica's metrics are held to the guide in replica.test.ts.
    expect(documented.filter((name) => !name.startsWith('tally_replica_'))).toEqual(exported);
    // The stock Node.js dashboards find the standard names.
    expect(exported).toEqual(
      expect.arrayContaining(['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_heap_size_used_bytes']),
    );
    expect(exported.filter((name) => !/^(tally|process|nodejs)_/.test(name))).toEqual([]);
  });

  it('serves an OpenAPI 3.1 document that covers every route', async () => {
    const res = await t.api('GET', '/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
    const expected = [
      ['post', '/v1/users'],
      ['get', '/v1/user/profile'],
      ['patch', '/v1/user/profile'],
      ['get', '/v1/user/preferences'],
      ['patch', '/v1/user/preferences'],
      ['put', '/v1/user/preferences'],
      ['post', '/v1/sessions'],
      ['get', '/v1/sessions'],
      ['delete', '/v1/sessions/{id}'],
      ['post', '/v1/sessions/logout-all'],
      ['post', '/v1/keys'],
      ['get', '/v1/keys'],
      ['delete', '/v1/keys/{id}'],
      ['post', '/v1/quota/consume'],
      ['post', '/v1/quota/reservations'],
      ['post', '/v1/quota/reservations/{id}/settle'],
      ['delete', '/v1/quota/reservations/{id}'],
      ['get', '/v1/quota'],
      ['post', '/v1/limiter/check'],
      ['get', '/v1/admin/tiers'],
      ['put', '/v1/admin/tiers/{name}'],
      ['get', '/v1/admin/users/{id}'],
      ['patch', '/v1/admin/users/{id}'],
      ['get', '/v1/admin/cluster'],
      ['get', '/health/live'],
      ['get', '/health/ready'],
      ['get', '/metrics'],
      ['get', '/openapi.json'],
    ];
    for (const [method, path] of expected) expect(res.body.paths[path!]?.[method!], `${method} ${path}`).toBeDefined();
    expect(res.body.paths['/v1/quota/consume'].post.requestBody.content['application/json'].schema.properties.cost.type).toBe('integer');
  });

  it('answers unknown routes with 404 and wrong methods with 405, as problems', async () => {
    const missing = await t.api('GET', '/v1/nothing');
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toBe('application/problem+json');
    const wrong = await t.api('DELETE', '/v1/quota');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('GET');
  });

  it('refuses bodies over 64 KiB with 413 and non-JSON bodies with 415', async () => {
    const big = await t.api('POST', '/v1/users', { raw: JSON.stringify({ email: 'a@b.c', password: 'x'.repeat(70_000) }) });
    expect(big.status).toBe(413);
    const text = await t.api('POST', '/v1/users', { raw: 'email=a', headers: { 'content-type': 'text/plain' } });
    expect(text.status).toBe(415);
  });
});
