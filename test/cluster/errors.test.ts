/**
 * Cluster failures are classified by JetStream's error code, not by message text: checked
 * against the errors a real nats-server's KV gives for a lost compare-and-set.
 */
import { describe, expect, it } from 'vitest';
import { isRevisionConflict } from '../../src/node/cluster/errors.js';
import { openBucket } from '../../src/node/cluster/index.js';
import { useNatsServer } from '../support/natsServer.js';

const nats = useNatsServer();

describe('isRevisionConflict', () => {
  it('recognises a lost compare-and-set on update, create and delete, and nothing else', async () => {
    const kv = await openBucket(nats.nc, 'cas_test');
    const first = await kv.create('k', 'a');
    await kv.update('k', 'b', first);
    const refusals = await Promise.all([
      kv.update('k', 'c', first).then(
        () => null,
        (error: unknown) => error,
      ),
      kv.create('k', 'd').then(
        () => null,
        (error: unknown) => error,
      ),
      kv.delete('k', { previousSeq: first }).then(
        () => null,
        (error: unknown) => error,
      ),
    ]);
    for (const error of refusals) expect(isRevisionConflict(error)).toBe(true);
    // Other failures are not conflicts, whatever their text says.
    expect(isRevisionConflict(new Error('wrong last sequence: 10071'))).toBe(false);
    const invalidKey = await kv.put('bad key with spaces', 'x').then(
      () => null,
      (error: unknown) => error,
    );
    expect(invalidKey).toBeInstanceOf(Error);
    expect(isRevisionConflict(invalidKey)).toBe(false);
    expect((await kv.get('k'))?.string()).toBe('b');
  });
});
