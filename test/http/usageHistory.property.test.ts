/**
 * The usage history equals a model kept by the test, hour by hour: random consumes (with
 * amounts, through a key or a session), reservations settled or released or left to expire,
 * idempotent retries and refusals, on one node whose clock the test drives across hours and
 * across the end of a month (2026-11-30 → 2026-12-01, so the November partition is made on
 * demand). The node's clock is days behind the real one, so its actors look idle to the
 * sweep and are passivated between requests: closed hours roll into the history both when
 * the hour ends and when an actor leaves memory, and reloaded actors go on counting.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createUser, startTestNode, type TestNode } from '../support/tally.js';
import { sleep } from '../support/wait.js';

const HOUR = 3_600_000;
const START = Date.parse('2026-11-30T19:40:00Z');
const TIER = [
  { name: 'requests', kind: 'window', limit: 6, window_ms: 60_000 },
  { name: 'tokens', kind: 'budget', limit: 40_000, period: 'month', resource: 'tokens' },
] as const;
const HOLD_TTL_MS = 30 * 60_000;

type UsagePage = { data: { start: string; results: any[] }[]; next_page: string | null };
type UsageAnswer = { status: number; text: string; body: UsagePage };

let now = START;
let t: TestNode & { dropDatabase(): Promise<void> };

beforeAll(async () => {
  t = await startTestNode({ clock: () => now });
  expect((await t.api('PUT', '/v1/admin/tiers/property', { token: t.adminToken, body: { limits: TIER } })).status).toBe(200);
});
afterAll(async () => {
  await t.stop();
  await t.dropDatabase();
});

type Operation =
  | { kind: 'consume'; viaKey: boolean; cost: number; resource: string; tokens: number; idempotent: boolean }
  | { kind: 'retry' }
  | { kind: 'reserve'; cost: number; tokens: number }
  | { kind: 'settle'; hold: number; tokens: number }
  | { kind: 'release'; hold: number }
  | { kind: 'advance'; ms: number }
  /** Real time passes: a flush and a sweep run, and the actor, idle to the sweep, leaves memory. */
  | { kind: 'idle' };

const operation: fc.Arbitrary<Operation> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('consume' as const),
      viaKey: fc.boolean(),
      cost: fc.integer({ min: 1, max: 3 }),
      resource: fc.constantFrom('default', 'images'),
      tokens: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 9000 }), fc.constant(50_000)),
      idempotent: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'retry' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('reserve' as const), cost: fc.integer({ min: 1, max: 2 }), tokens: fc.integer({ min: 1, max: 5000 }) }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('settle' as const), hold: fc.nat(5), tokens: fc.integer({ min: 0, max: 8000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('release' as const), hold: fc.nat(5) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 50 * 60_000 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'idle' as const }) },
);

interface Counts {
  amount: number;
  requests: number;
  denied: number;
}

/** hour → "resource/key" → counts */
type Model = Map<number, Map<string, Counts>>;

function count(model: Model, resource: string, key: string, change: Partial<Counts>): void {
  const hour = now - (now % HOUR);
  const rows = model.get(hour) ?? new Map<string, Counts>();
  model.set(hour, rows);
  const id = `${resource}/${key}`;
  const counts = rows.get(id) ?? { amount: 0, requests: 0, denied: 0 };
  counts.amount += change.amount ?? 0;
  counts.requests += change.requests ?? 0;
  counts.denied += change.denied ?? 0;
  rows.set(id, counts);
}

/** The resource a refusal is counted under: that of the first limit that could not admit its amount. */
function refusedResource(body: { limit?: string; limits?: { name: string; remaining: number }[] }, resource: string, cost: number, tokens: number): string {
  const limitResource = (name: string) => TIER.find((limit) => limit.name === name)!;
  if (body.limit !== undefined) return (limitResource(body.limit) as { resource?: string }).resource ?? resource;
  for (const state of body.limits ?? []) {
    const limit = limitResource(state.name) as { resource?: string };
    const amount = limit.resource === 'tokens' ? tokens : cost;
    if (state.remaining < amount) return limit.resource ?? resource;
  }
  throw new Error(`no limit explains the refusal: ${JSON.stringify(body)}`);
}

describe('usage history', () => {
  it('equals the model hour by hour, through rolls at the hour and on passivation', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(operation, { minLength: 10, maxLength: 45 }), async (operations) => {
        now = START;
        const user = await createUser(t.api, { tier: 'property', adminToken: t.adminToken });
        const key = await createKey(t.api, user);
        const model: Model = new Map();
        const holds: { id: string; cost: number; expiresAt: number }[] = [];
        let lastIdempotent: { token: string; body: unknown; key: string; id: string } | null = null;
        let serial = 0;
        for (const op of operations) {
          switch (op.kind) {
            case 'advance':
              now += op.ms;
              break;
            case 'idle':
              await sleep(350);
              break;
            case 'consume': {
              const token = op.viaKey ? key.key : user.token;
              const credential = op.viaKey ? key.id : user.sessionId;
              const body = { cost: op.cost, resource: op.resource, ...(op.tokens > 0 ? { amounts: { tokens: op.tokens } } : {}) };
              const idempotencyKey = `idem-${serial++}`;
              const res = await t.api('POST', '/v1/quota/consume', {
                token,
                body,
                ...(op.idempotent ? { headers: { 'idempotency-key': idempotencyKey } } : {}),
              });
              if (res.status === 200) {
                count(model, op.resource, credential, { amount: op.cost, requests: 1 });
                if (op.tokens > 0) count(model, 'tokens', credential, { amount: op.tokens, requests: 1 });
                if (op.idempotent) lastIdempotent = { token, body, key: idempotencyKey, id: credential };
              } else {
                expect([422, 429], res.text).toContain(res.status);
                count(model, refusedResource(res.body, op.resource, op.cost, op.tokens), credential, { denied: 1 });
              }
              break;
            }
            case 'retry': {
              if (lastIdempotent === null) break;
              const res = await t.api('POST', '/v1/quota/consume', {
                token: lastIdempotent.token,
                body: lastIdempotent.body,
                headers: { 'idempotency-key': lastIdempotent.key },
              });
              // The first answer again; nothing counted.
              expect(res.status, res.text).toBe(200);
              break;
            }
            case 'reserve': {
              const res = await t.api('POST', '/v1/quota/reservations', {
                token: key.key,
                body: { cost: op.cost, amounts: { tokens: op.tokens }, ttl_ms: HOLD_TTL_MS },
              });
              if (res.status === 201) holds.push({ id: res.body.id, cost: op.cost, expiresAt: now + HOLD_TTL_MS });
              else count(model, refusedResource(res.body, 'default', op.cost, op.tokens), key.id, { denied: 1 });
              break;
            }
            case 'settle':
            case 'release': {
              const hold = holds[op.hold % Math.max(1, holds.length)];
              if (hold === undefined) break;
              holds.splice(holds.indexOf(hold), 1);
              const res =
                op.kind === 'settle'
                  ? await t.api('POST', `/v1/quota/reservations/${hold.id}/settle`, { token: key.key, body: { amounts: { tokens: op.tokens } } })
                  : await t.api('DELETE', `/v1/quota/reservations/${hold.id}`, { token: key.key });
              if (hold.expiresAt <= now) {
                expect(res.status).toBe(404);
                break;
              }
              expect(res.status, res.text).toBe(op.kind === 'settle' ? 200 : 204);
              if (op.kind === 'settle') {
                count(model, 'default', key.id, { amount: hold.cost, requests: 1 });
                if (op.tokens > 0) count(model, 'tokens', key.id, { amount: op.tokens, requests: 1 });
              }
              break;
            }
          }
        }

        // Everything written behind (flushes run every 100 ms), then the history as the API reads it.
        for (let waited = 0; t.node.runtime.unwrittenCount > 0 && waited < 5000; waited += 20) await sleep(20);
        await sleep(150);
        expect(t.node.runtime.unwrittenCount).toBe(0);
        const recorded: Model = new Map();
        let page: string | null = null;
        const end = new Date(now + 2 * HOUR).toISOString();
        do {
          const res: UsageAnswer = await t.api<UsagePage>(
            'GET',
            `/v1/quota/usage?start=${new Date(START).toISOString()}&end=${end}&bucket=1h&group_by=key&limit=3${page === null ? '' : `&page=${page}`}`,
            {
              token: user.token,
            },
          );
          expect(res.status, res.text).toBe(200);
          for (const bucket of res.body.data) {
            // A bucket may go on on the next page.
            const rows = recorded.get(Date.parse(bucket.start)) ?? new Map<string, Counts>();
            for (const result of bucket.results) {
              rows.set(`${result.resource}/${result.key_id ?? ''}`, { amount: result.amount, requests: result.requests, denied: result.denied });
            }
            recorded.set(Date.parse(bucket.start), rows);
          }
          page = res.body.next_page;
        } while (page !== null);
        const sorted = (model: Model) =>
          [...model]
            .sort(([a], [b]) => a - b)
            .map(([hour, rows]) => [new Date(hour).toISOString(), Object.fromEntries([...rows].sort(([a], [b]) => a.localeCompare(b)))]);
        expect(sorted(recorded)).toEqual(sorted(model));
      }),
      { numRuns: 8, endOnFailure: true },
    );
  }, 120_000);
});
