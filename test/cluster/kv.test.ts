/**
 * A bucket watch on a real nats-server that loses its consumer (deleted here, as a dead
 * server's would be) is made anew and delivers what was written since, even when the first
 * try at making it anew is never answered (a consumer placed on a dead server).
 */
import type { KV, KvEntry } from '@nats-io/kv';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { BucketWatch, openBucket } from '../../src/node/cluster/index.js';
import { useNatsServer } from '../support/natsServer.js';
import { waitFor } from '../support/wait.js';

const log = pino({ level: 'silent' });
const nats = useNatsServer();

describe('a bucket watch', () => {
  it('is made anew after its consumer is gone, trying again when a try is never answered', async () => {
    const kv = await openBucket(nats.nc, 'watch_test');
    await kv.put('a', '1');
    // The first watch and the first remake pass through; the second call hangs, as a create
    // request for a consumer placed on a dead server does.
    let calls = 0;
    const flaky = new Proxy(kv, {
      get(target, property, receiver) {
        if (property !== 'watch') return Reflect.get(target, property, receiver);
        return (options?: Parameters<KV['watch']>[0]) => {
          calls++;
          return calls === 2 ? new Promise(() => {}) : target.watch(options);
        };
      },
    });
    const seen: string[] = [];
    const watch = await BucketWatch.start(flaky, (entry: KvEntry) => seen.push(`${entry.key}=${entry.string()}`), {
      name: 'watch_test',
      log,
      probeMs: 200,
    });
    try {
      await waitFor(async () => seen.includes('a=1'));
      await kv.put('b', '2');
      await waitFor(async () => seen.includes('b=2'));
      expect(calls).toBe(1);

      const { consumers } = (await nats.nc.request('$JS.API.CONSUMER.NAMES.KV_watch_test')).json<{ consumers: string[] }>();
      expect(consumers).toHaveLength(1);
      await nats.nc.request(`$JS.API.CONSUMER.DELETE.KV_watch_test.${consumers[0]}`);
      await kv.put('c', '3');
      await kv.put('a', '4');
      await waitFor(async () => seen.includes('a=4'), 6000);
      // The hanging try was given up, and the next one resumed after `b`: nothing twice.
      expect(calls).toBe(3);
      expect(seen).toEqual(['a=1', 'b=2', 'c=3', 'a=4']);
    } finally {
      watch.stop();
    }
  });
});
