/**
 * nats.js 3.4 pulls in @nats-io/nuid 3, which declares Node >= 22 (npm install warns
 * EBADENGINE). It needs nothing newer than Node 20 has (crypto.getRandomValues, BigInt); this
 * shows it working here, on the Node the project supports, against the real NATS server:
 * ids, inboxes and request/reply, which is what the cluster is built on.
 */
import { connect, createInbox, nuid } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

describe(`nats.js on Node ${process.versions.node}`, () => {
  it('makes unique 22-character ids and inboxes', () => {
    expect(Number(process.versions.node.split('.')[0])).toBeGreaterThanOrEqual(20);
    // nuid takes its random prefix from here; without it, it would fall back to Math.random.
    expect(typeof globalThis.crypto?.getRandomValues).toBe('function');
    const ids = new Set<string>();
    for (let i = 0; i < 100_000; i++) ids.add(nuid.next());
    expect(ids.size).toBe(100_000);
    for (const id of [...ids].slice(0, 1000)) expect(id).toMatch(/^[0-9A-Za-z]{22}$/);
    expect(createInbox()).toMatch(/^_INBOX\.[0-9A-Za-z]{22}$/);
  });

  it('answers requests through the real server', async () => {
    const nc = await connect({ servers: NATS_URL, name: 'tally-test' });
    try {
      const subject = `tally.test.${nuid.next()}`;
      const sub = nc.subscribe(subject);
      void (async () => {
        for await (const message of sub) message.respond(`echo ${message.string()}`);
      })();
      const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => nc.request(subject, `ping ${i}`, { timeout: 5000 })));
      expect(answers.map((answer) => answer.string())).toEqual(Array.from({ length: 100 }, (_, i) => `echo ping ${i}`));
    } finally {
      await nc.drain();
    }
  });
});
