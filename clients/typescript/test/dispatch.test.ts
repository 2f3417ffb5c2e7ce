/**
 * The dispatcher's rules for sending again, against a scripted transport (the real cluster is
 * in cluster.test.ts, where a `moved` answer depends on timing): an item answered `moved` is
 * resent unchanged, idempotency key and all, to the owner of a map fetched again, and after
 * two tries to any node; a call that reached no node is resent; a call whose answer did not
 * come in time is resent only when that is safe; and no call outlives its timeout.
 */
import { describe, expect, it } from 'vitest';
import { type Call, Dispatcher } from '../src/dispatch.js';
import { TimeoutError, UnavailableError } from '../src/errors.js';
import { ShardMap, type WireShardMap } from '../src/shardMap.js';
import type { Operation, Transport } from '../src/transport.js';

interface Sent {
  operation: Operation;
  body: { items?: Record<string, unknown>[] } & Record<string, unknown>;
  node: string | undefined;
}

/** A map that gives every shard to `owner`. */
const everything = (owner: string): WireShardMap => ({
  shard_count: 1024,
  hash: 'xxh64',
  limiter_prefix: 'limiter:service:',
  direct_prefix: 'tally.v1.node.',
  nodes: [owner],
  owners: new Array(1024).fill(0),
});

/** A transport whose answers `answer` scripts, recording every request. */
async function scripted(maps: WireShardMap[], answer: (sent: Sent, count: number) => Promise<unknown>) {
  const sent: Sent[] = [];
  let fetches = 0;
  const map = await ShardMap.load(async () => maps[Math.min(fetches++, maps.length - 1)]!);
  const transport: Transport = {
    maxItems: 1000,
    map,
    request(operation, body, _timeoutMs, node) {
      const one = { operation, body: body as Sent['body'], node };
      sent.push(one);
      return answer(one, sent.length);
    },
    close: async () => {},
  };
  return { sent, dispatcher: new Dispatcher(transport, 0, 1000) };
}

const consume = (overrides: Partial<Call> = {}): Call => ({
  operation: 'quota.consume',
  item: { user_id: 'uaaaaaaaaaaaaaaaaaaaa', idempotency_key: 'once' },
  routeKey: 'uaaaaaaaaaaaaaaaaaaaa',
  timeoutMs: 1000,
  safe: true,
  ...overrides,
});

const allowed = (items: number) => ({ results: Array.from({ length: items }, () => ({ allowed: true, limits: [] })) });

describe('the dispatcher', () => {
  it('resends an item answered `moved` to the owner of the map fetched again, unchanged', async () => {
    const { sent, dispatcher } = await scripted([everything('a'), everything('b')], async ({ node }) =>
      node === 'a' ? { results: [{ moved: true }] } : allowed(1),
    );
    expect(await dispatcher.call(consume())).toEqual({ allowed: true, limits: [] });
    expect(sent.map((one) => one.node)).toEqual(['a', 'b']);
    expect(sent[1]!.body.items).toEqual([{ user_id: 'uaaaaaaaaaaaaaaaaaaaa', idempotency_key: 'once' }]);
    expect(dispatcher.stats).toMatchObject({ messages: 2, moved: 1 });
  });

  it('sends an item that keeps being answered `moved` to any node after two tries', async () => {
    const { sent, dispatcher } = await scripted([everything('a')], async ({ node }) => (node === undefined ? allowed(1) : { results: [{ moved: true }] }));
    await dispatcher.call(consume());
    expect(sent.map((one) => one.node)).toEqual(['a', 'a', undefined]);
  });

  it('answers each call of a batch on its own: a moved item is resent alone, the others resolve at once', async () => {
    const { sent, dispatcher } = await scripted([everything('a'), everything('b')], async ({ node, body }) =>
      node === 'a'
        ? { results: body.items!.map((item) => (item.user_id === 'ubbbbbbbbbbbbbbbbbbbb' ? { moved: true } : { allowed: true, limits: [] })) }
        : allowed(1),
    );
    const calls = ['uaaaaaaaaaaaaaaaaaaaa', 'ubbbbbbbbbbbbbbbbbbbb', 'ucccccccccccccccccccc'].map((user) =>
      dispatcher.call(consume({ item: { user_id: user }, routeKey: user })),
    );
    await Promise.all(calls);
    expect(sent.map((one) => one.body.items!.length)).toEqual([3, 1]);
    expect(sent[1]!.body.items).toEqual([{ user_id: 'ubbbbbbbbbbbbbbbbbbbb' }]);
  });

  it('resends a call that reached no node; a timeout only when sending twice is safe', async () => {
    const unreached = await scripted([everything('a')], async (_sent, count) => {
      if (count === 1) throw new UnavailableError('unavailable', 0, 'no responders');
      return allowed(1);
    });
    await unreached.dispatcher.call(consume({ safe: false }));
    expect(unreached.sent).toHaveLength(2);

    const timedOut = () =>
      scripted([everything('a')], async (_sent, count) => {
        if (count === 1) throw new TimeoutError('timeout', 0, 'no answer');
        return allowed(1);
      });
    const safe = await timedOut();
    await safe.dispatcher.call(consume({ safe: true }));
    expect(safe.sent).toHaveLength(2);
    const unsafe = await timedOut();
    await expect(unsafe.dispatcher.call(consume({ safe: false }))).rejects.toBeInstanceOf(TimeoutError);
    expect(unsafe.sent).toHaveLength(1);
  });

  it('fails a call at its timeout when every node keeps answering `moved` or nothing', async () => {
    const { dispatcher } = await scripted([everything('a')], () => new Promise((resolve) => setTimeout(() => resolve({ results: [{ moved: true }] }), 40)));
    const started = performance.now();
    await expect(dispatcher.call(consume({ timeoutMs: 100 }))).rejects.toBeInstanceOf(UnavailableError);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});
