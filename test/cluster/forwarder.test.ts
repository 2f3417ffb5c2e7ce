/**
 * Forwarding over a real nats-server: items for one owner sent in one turn of the event
 * loop travel in batches of at most 100, each answered on its own and in order, and an owner
 * that is not there is an answer (`moved`, or owner_unavailable), never a hang. A batch from
 * a stranger is read as one: a malformed item is answered with an error, an unreadable or
 * oversized batch is not answered, and neither reaches `decide` nor throws.
 */
import { createInbox } from '@nats-io/transport-node';
import { Packr } from 'msgpackr';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { ForwardItem } from '../../src/node/cluster/index.js';
import { ClusterMac, Forwarder } from '../../src/node/cluster/index.js';
import type { LimiterRequest } from '../../src/shards/index.js';
import { useNatsServer } from '../support/natsServer.js';
import { sleep } from '../support/wait.js';

const log = pino({ level: 'silent' });
const mac = new ClusterMac(new Uint8Array(32).fill(7), log);
const nats = useNatsServer();

const item = (key: string): ForwardItem => ({ kind: 'limiter', request: { op: 'check', namespace: 'service', key, cost: 1 } as unknown as LimiterRequest });

describe('the forwarder', () => {
  it('batches what one turn sends to an owner, up to 100 an item, and answers each in order', async () => {
    const owner = new Forwarder(nats.nc, log, mac);
    const sizes: number[] = [];
    owner.serve('owner-1', async (got) => {
      const key = got.kind === 'limiter' ? got.request.key : '';
      if (key === 'bad') return { err: { code: 'invalid_request', detail: 'bad key' } };
      return { ok: `decided ${key}` };
    });
    const sender = new Forwarder(nats.nc, log, mac);
    const originalFlush = (sender as unknown as { flush(owner: string): void }).flush.bind(sender);
    (sender as unknown as { flush(owner: string): void }).flush = (to: string) => {
      const queue = (sender as unknown as { queues: Map<string, unknown[]> }).queues.get(to);
      if (queue !== undefined && queue.length > 0) sizes.push(queue.length);
      originalFlush(to);
    };
    const keys = Array.from({ length: 250 }, (_, i) => (i === 17 ? 'bad' : `k${i}`));
    const results = await Promise.all(keys.map((key) => sender.send('owner-1', item(key))));
    expect(sizes).toEqual([100, 100, 50]);
    expect(results[0]).toEqual({ ok: 'decided k0' });
    expect(results[249]).toEqual({ ok: 'decided k249' });
    expect(results[17]).toEqual({ err: { code: 'invalid_request', detail: 'bad key' } });
    expect(sender.stats).toMatchObject({ batches: 3, items: 250, failures: 0 });
    owner.stop();
  });

  it('sends the batches of one turn for several owners, each to its owner', async () => {
    const owners = ['owner-a', 'owner-b'].map((id) => {
      const forwarder = new Forwarder(nats.nc, log, mac);
      forwarder.serve(id, async (got) => ({ ok: `${id} decided ${got.kind === 'limiter' ? got.request.key : ''}` }));
      return forwarder;
    });
    const sender = new Forwarder(nats.nc, log, mac);
    const results = await Promise.all([sender.send('owner-a', item('k1')), sender.send('owner-b', item('k2')), sender.send('owner-a', item('k3'))]);
    expect(results).toEqual([{ ok: 'owner-a decided k1' }, { ok: 'owner-b decided k2' }, { ok: 'owner-a decided k3' }]);
    expect(sender.stats).toMatchObject({ batches: 2, items: 3, failures: 0 });
    for (const owner of owners) owner.stop();
  });

  it('answers `moved` for an owner nobody listens for, and owner_unavailable for a silent one within its deadline', async () => {
    const sender = new Forwarder(nats.nc, log, mac, 300);
    const started = performance.now();
    // No responders: the owner has not subscribed yet, or has left; the router asks the map again.
    expect(await sender.send('nobody', item('k'))).toEqual({ moved: true });
    expect(performance.now() - started).toBeLessThan(250);
    // A subscriber that never answers: the deadline ends the wait.
    const silent = nats.nc.subscribe('tally.node.silent', { callback: () => {} });
    const slow = performance.now();
    expect(await sender.send('silent', item('k'))).toMatchObject({ err: { code: 'owner_unavailable', retryAfterMs: 1000 } });
    expect(performance.now() - slow).toBeGreaterThanOrEqual(250);
    expect(performance.now() - slow).toBeLessThan(1500);
    silent.unsubscribe();
  });

  it('answers malformed items with an error, leaves unreadable and oversized batches unanswered, and never throws', async () => {
    const owner = new Forwarder(nats.nc, log, mac);
    const decided: unknown[] = [];
    owner.serve('owner-x', async (got) => {
      decided.push(got);
      // A decide that throws (as a domain service does on a request it cannot read).
      if (got.kind === 'limiter' && got.request.key === 'throws') throw new TypeError('cannot read it');
      return { ok: 'fine' };
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const packr = new Packr({ useRecords: false, moreTypes: false });
    const ask = async (batch: unknown, seal: ClusterMac | null = mac) => {
      const payload = packr.pack(batch);
      const reply = createInbox();
      const answers = nats.nc.subscribe(reply, { max: 1 });
      nats.nc.publish('tally.node.owner-x', seal === null ? payload : seal.sealBatch('tally.node.owner-x', reply, payload), { reply });
      const answer = await Promise.race([
        (async () => {
          for await (const msg of answers) return msg;
          return null;
        })(),
        sleep(500).then(() => null),
      ]);
      answers.unsubscribe();
      return answer === null ? 'no answer' : (packr.unpack(mac.openReply(reply, answer.data)!) as { results: unknown[] });
    };
    const malformed = { err: { code: 'invalid_request', detail: 'a forwarded item of an unknown shape' } };
    try {
      const answer = await ask({
        v: 2,
        items: [
          null,
          7,
          { kind: 'user' },
          { kind: 'user', request: { userId: 'u', credential: null, op: 'quota.get', args: {} } },
          { kind: 'nonsense', request: {} },
          { kind: 'limiter', request: { namespace: 'service', key: 'throws', op: 'check' } },
          { kind: 'limiter', request: { namespace: 'service', key: 'good', op: 'check' } },
        ],
      });
      expect(answer).toEqual({
        results: [
          malformed,
          malformed,
          malformed,
          malformed,
          malformed,
          { err: { code: 'internal', detail: 'the owner failed to answer this request' } },
          { ok: 'fine' },
        ],
      });
      expect(decided).toHaveLength(2);
      expect(await ask({ v: 1, items: [] })).toBe('no answer');
      expect(await ask([null])).toBe('no answer');
      expect(await ask({ v: 2, items: Array.from({ length: 1001 }, () => null) })).toBe('no answer');
      expect((await ask({ v: 2, items: Array.from({ length: 1000 }, () => null) })) as { results: unknown[] }).toMatchObject({ results: { length: 1000 } });
      expect(owner.stats.refusedBatches).toBe(3);
      expect(decided).toHaveLength(2);
      // Not from a node holding the key secret: no MAC, or another key's. Never decided, never answered.
      const refusedBefore = mac.refused.batch;
      const good = { v: 2, items: [{ kind: 'limiter', request: { namespace: 'service', key: 'good', op: 'check' } }] };
      expect(await ask(good, null)).toBe('no answer');
      expect(await ask(good, new ClusterMac(new Uint8Array(32).fill(8), log))).toBe('no answer');
      expect(mac.refused.batch - refusedBefore).toBe(2);
      expect(decided).toHaveLength(2);
      expect(await ask(good)).toEqual({ results: [{ ok: 'fine' }] });
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      owner.stop();
    }
  });
});
