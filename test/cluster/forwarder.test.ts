/**
 * Forwarding over a real nats-server: items for one owner sent in one turn of the event
 * loop travel in batches of at most 100, each answered on its own and in order, and an owner
 * that is not there is an answer (`moved`, or owner_unavailable), never a hang. An owner has
 * one flush in flight at most: a lone item goes at once, what is sent meanwhile waits and
 * goes together when the flush ends, however it ends, and `close` answers what still waits.
 * A batch from a stranger is read as one: a malformed item is answered with an error, an
 * unreadable or oversized batch is not answered, and neither reaches `decide` nor throws.
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
const keyOf = (got: ForwardItem): string => (got.kind === 'limiter' ? got.request.key : '');
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The size of every batch published to `nodeId`, as the wire carries it: read by a second
 * subscriber with a MAC of its own (a MAC takes each batch once, and the owner's must too).
 */
async function watchBatches(nodeId: string): Promise<{ sizes: number[]; stop(): void }> {
  const watcher = new ClusterMac(new Uint8Array(32).fill(7), log);
  const packr = new Packr({ useRecords: false, moreTypes: false });
  const sizes: number[] = [];
  const subscription = nats.nc.subscribe(`tally.node.${nodeId}`, {
    callback: (error, msg) => {
      const payload = error === null && msg.reply !== undefined ? watcher.openBatch(msg.subject, msg.reply, msg.data) : null;
      if (payload !== null) sizes.push((packr.unpack(payload) as { items: unknown[] }).items.length);
    },
  });
  await nats.nc.flush();
  return { sizes, stop: () => subscription.unsubscribe() };
}

/** An owner answering each item `decided <key>` after `delayMs`. */
function slowOwner(nodeId: string, delayMs: number): Forwarder {
  const owner = new Forwarder(nats.nc, log, mac);
  owner.serve(nodeId, async (got) => {
    await sleep(delayMs);
    return { ok: `decided ${keyOf(got)}` };
  });
  return owner;
}

describe('the forwarder', () => {
  it('batches what one turn sends to an owner, up to 100 an item, and answers each in order', async () => {
    const owner = new Forwarder(nats.nc, log, mac);
    owner.serve('owner-1', async (got) => {
      const key = keyOf(got);
      if (key === 'bad') return { err: { code: 'invalid_request', detail: 'bad key' } };
      return { ok: `decided ${key}` };
    });
    const wire = await watchBatches('owner-1');
    const sender = new Forwarder(nats.nc, log, mac);
    const keys = Array.from({ length: 250 }, (_, i) => (i === 17 ? 'bad' : `k${i}`));
    const results = await Promise.all(keys.map((key) => sender.send('owner-1', item(key))));
    expect(wire.sizes).toEqual([100, 100, 50]);
    expect(results[0]).toEqual({ ok: 'decided k0' });
    expect(results[249]).toEqual({ ok: 'decided k249' });
    expect(results[17]).toEqual({ err: { code: 'invalid_request', detail: 'bad key' } });
    expect(sender.stats).toMatchObject({ batches: 3, items: 250, failures: 0 });
    wire.stop();
    owner.stop();
  });

  it('sends a lone item at once, each in its own batch when nothing else waits', async () => {
    const owner = slowOwner('owner-lone', 0);
    const sender = new Forwarder(nats.nc, log, mac);
    const started = performance.now();
    for (let i = 0; i < 20; i++) expect(await sender.send('owner-lone', item(`k${i}`))).toEqual({ ok: `decided k${i}` });
    // Twenty round trips on one host, with no timer waited on before any of them.
    expect(performance.now() - started).toBeLessThan(500);
    expect(sender.stats).toMatchObject({ batches: 20, items: 20, failures: 0 });
    owner.stop();
    sender.close();
  });

  it('holds what arrives while a batch is out, and sends it together when the answer comes', async () => {
    const owner = slowOwner('owner-slow', 50);
    const wire = await watchBatches('owner-slow');
    const sender = new Forwarder(nats.nc, log, mac);
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    const answers: Promise<unknown>[] = [];
    for (const key of keys) {
      answers.push(sender.send('owner-slow', item(key)));
      await nextTurn();
    }
    expect(await Promise.all(answers)).toEqual(keys.map((key) => ({ ok: `decided ${key}` })));
    // One batch per turn would be 200 (the forwarder before this one sent exactly that).
    expect(wire.sizes[0]).toBe(1);
    expect(wire.sizes.length).toBeLessThanOrEqual(10);
    expect(wire.sizes.reduce((sum, size) => sum + size, 0)).toBe(200);
    expect(sender.stats).toMatchObject({ batches: wire.sizes.length, items: 200, failures: 0 });
    wire.stop();
    owner.stop();
    sender.close();
  });

  it('sends nothing more while a batch is fresh (out under 50 ms), then all that waited, in batches of at most 100', async () => {
    const owner = slowOwner('owner-busy', 200);
    const wire = await watchBatches('owner-busy');
    const sender = new Forwarder(nats.nc, log, mac);
    const started = performance.now();
    const first = sender.send('owner-busy', item('first'));
    await sleep(10);
    const keys = Array.from({ length: 250 }, (_, i) => `k${i}`);
    const burst = Promise.all(keys.map((key) => sender.send('owner-busy', item(key))));
    await sleep(15);
    expect(wire.sizes).toEqual([1]);
    expect(await first).toEqual({ ok: 'decided first' });
    expect(await burst).toEqual(keys.map((key) => ({ ok: `decided ${key}` })));
    expect(wire.sizes).toEqual([1, 100, 100, 50]);
    // The burst did not wait for the slow answer: it went once the batch ahead was 50 ms old.
    expect(performance.now() - started).toBeLessThan(380);
    wire.stop();
    owner.stop();
    sender.close();
  });

  it('does not hold items behind a batch out for 50 ms: they go on their own and are answered before it expires', async () => {
    const owner = new Forwarder(nats.nc, log, mac);
    // An item this owner never answers, as a frozen owner would not.
    owner.serve('owner-stuck', (got) => (keyOf(got) === 'frozen' ? new Promise(() => {}) : Promise.resolve({ ok: `decided ${keyOf(got)}` })));
    const sender = new Forwarder(nats.nc, log, mac, 300);
    const started = performance.now();
    const settled: string[] = [];
    const frozen = sender.send('owner-stuck', item('frozen')).then((result) => {
      settled.push('frozen');
      return result;
    });
    // Queued once the frozen batch has been out 150 ms, past the 50 ms it holds what follows.
    await sleep(150);
    const behind = Promise.all(['k1', 'k2'].map((key) => sender.send('owner-stuck', item(key)))).then((results) => {
      settled.push('behind');
      return results;
    });
    expect(await frozen).toMatchObject({ err: { code: 'owner_unavailable', detail: expect.stringContaining('no answer within 300 ms') } });
    expect(await behind).toEqual([{ ok: 'decided k1' }, { ok: 'decided k2' }]);
    expect(settled).toEqual(['behind', 'frozen']);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(sender.stats).toMatchObject({ batches: 2, items: 3, failures: 1 });
    owner.stop();
    sender.close();
  });

  it('costs a caller queued behind a frozen owner at most its own deadline, counted from when it was queued', async () => {
    const frozen = nats.nc.subscribe('tally.node.owner-frozen', { callback: () => {} });
    await nats.nc.flush();
    const sender = new Forwarder(nats.nc, log, mac, 500);
    const ahead = sender.send('owner-frozen', item('ahead'));
    await sleep(250);
    const queuedAt = performance.now();
    const behind = await sender.send('owner-frozen', item('behind'));
    // Counted from when its batch went, the wait would be what was left of the batch ahead's
    // deadline and then a whole one of its own: about 800 ms.
    expect(performance.now() - queuedAt).toBeLessThan(650);
    const unreachable = { err: { code: 'owner_unavailable', detail: expect.stringContaining('no answer within 500 ms') } };
    expect(behind).toMatchObject(unreachable);
    expect(await ahead).toMatchObject(unreachable);
    expect(sender.stats).toMatchObject({ batches: 2, items: 2, failures: 2 });
    frozen.unsubscribe();
    sender.close();
  });

  it('releases an owner whose answer is forged, or who has no subscriber: what waited behind gets the same answer', async () => {
    const sender = new Forwarder(nats.nc, log, mac);
    // Answers every batch, late, with bytes that are no sealed reply.
    const forger = nats.nc.subscribe('tally.node.owner-forged', {
      callback: (_, msg) => {
        setTimeout(() => msg.respond(new Uint8Array([1, 2, 3])), 50);
      },
    });
    await nats.nc.flush();
    const forged = sender.send('owner-forged', item('k1'));
    await sleep(10);
    const forgedBehind = sender.send('owner-forged', item('k2'));
    const notFromANode = { err: { code: 'owner_unavailable', detail: expect.stringContaining('did not come from a node holding the key secret') } };
    expect(await forged).toMatchObject(notFromANode);
    expect(await forgedBehind).toMatchObject(notFromANode);
    expect(forger.getProcessed()).toBe(2);
    forger.unsubscribe();
    const gone = sender.send('owner-gone', item('k1'));
    await nextTurn();
    const goneBehind = sender.send('owner-gone', item('k2'));
    expect(await Promise.all([gone, goneBehind])).toEqual([
      { moved: true, unheard: true },
      { moved: true, unheard: true },
    ]);
    sender.close();
  });

  it('answers every item on close, sent or still queued, as unreachable, and any sent after it at once', async () => {
    const owner = slowOwner('owner-closing', 200);
    const sender = new Forwarder(nats.nc, log, mac);
    const sent = sender.send('owner-closing', item('sent'));
    await sleep(20);
    // Queued behind the batch out, and queued for an owner with nothing in flight (this turn's flush).
    const waiting = [sender.send('owner-closing', item('behind')), sender.send('owner-idle', item('idle'))];
    sender.close();
    const shuttingDown = { err: { code: 'owner_unavailable', detail: expect.stringContaining('shutting down') } };
    const results = await Promise.race([Promise.all([sent, ...waiting]), sleep(1000).then(() => 'hung')]);
    expect(results).toMatchObject([shuttingDown, shuttingDown, shuttingDown]);
    expect(await sender.send('owner-closing', item('after'))).toMatchObject(shuttingDown);
    owner.stop();
  });

  it('sends the batches of one turn for several owners, each to its owner', async () => {
    const owners = ['owner-a', 'owner-b'].map((id) => {
      const forwarder = new Forwarder(nats.nc, log, mac);
      forwarder.serve(id, async (got) => ({ ok: `${id} decided ${keyOf(got)}` }));
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
    // No responders: the owner has not subscribed yet, has left or died; the router asks the map again, for less long than after a `moved`.
    expect(await sender.send('nobody', item('k'))).toEqual({ moved: true, unheard: true });
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
