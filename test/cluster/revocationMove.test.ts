/**
 * A revocation racing a move, on two node processes, a real nats-server and Postgres. The
 * users of one shard revoke sessions while the shard moves back and forth between the nodes
 * (`tally cluster move`), and each user's remaining session is used all the while, so that
 * whichever node serves the user next loads it at once. Right before each move every user
 * starts a revocation that takes 5 s in Postgres (a trigger sleeps): far longer than the
 * fixed 2 s a hand-off used to wait before it flushed and handed the shard over anyway. The new
 * owner then loaded the user before the revocation committed, and the revoked session kept
 * working there. Quick revocations go on meanwhile through either node.
 *
 * Every revocation answered 204 must be in force afterwards, through either node; every
 * other answer must be a retryable 503 (with Retry-After).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SessionTokens } from '../../src/credentials/index.js';
import { targetPlacement } from '../../src/node/cluster/index.js';
import { newSessionId, newUserId, shardOf } from '../../src/shards/index.js';
import { createTestCluster, type TestCluster } from '../support/cluster.js';
import { runClusterCli, stopClusterClis } from '../support/clusterCli.js';
import { apiClient } from '../support/http.js';
import { sleep, waitFor } from '../support/wait.js';

const ids = ['v1', 'v2'];
const JWT_SECRET = randomBytes(24).toString('hex');
const USERS = 8;
const MOVES = 6;
/** Sessions each user revokes quickly, one after another, while the moves go on. */
const QUICK = 40;
const SLOW_REVOCATION_S = 5;
let cluster: TestCluster;

beforeAll(async () => {
  // A lease longer than a slow revocation: a hand-off waits for it rather than giving up.
  cluster = await createTestCluster({ leaseMs: 8000, heartbeatMs: 100, env: { TALLY_JWT_SECRET: JWT_SECRET } });
  await cluster.startAll(ids);
}, 60_000);
afterAll(async () => {
  await stopClusterClis();
  await cluster?.stop();
});

const api = (id: string) => apiClient(cluster.nodes.get(id)!.baseUrl);
const anyNode = () => ids[Math.floor(Math.random() * ids.length)]!;

interface Session {
  id: string;
  token: string;
}

interface SeededUser {
  id: string;
  keeper: Session;
  /** One per move, revoked just before it, slowly. */
  slow: Session[];
  quick: Session[];
}

/** Users of `shard` written straight into the database, with sessions whose tokens the test signs itself. */
async function seedUsersOf(shard: number): Promise<SeededUser[]> {
  const tokens = new SessionTokens(JWT_SECRET);
  const expiresAt = Date.now() + 3_600_000;
  const users: SeededUser[] = [];
  while (users.length < USERS) {
    const id = newUserId();
    if (shardOf(id) !== shard) continue;
    await cluster.sql`
      insert into users (id, email, name, tier, password_hash)
      values (${id}, ${`${id}@example.com`}, 'racer', 'free', 'scrypt$16384$8$1$AAAA$AAAA')`;
    const session = async (device: string): Promise<Session> => {
      const sessionId = newSessionId();
      await cluster.sql`
        insert into sessions (id, user_id, device_name, created_at, expires_at, last_active_at)
        values (${sessionId}, ${id}, ${device}, now(), ${new Date(expiresAt)}, now())`;
      return { id: sessionId, token: await tokens.sign({ userId: id, sessionId, expiresAt }) };
    };
    const keeper = await session('keeper');
    const slow: Session[] = [];
    for (let i = 0; i < MOVES; i++) slow.push(await session('slow'));
    const quick: Session[] = [];
    for (let i = 0; i < QUICK; i++) quick.push(await session('quick'));
    users.push({ id, keeper, slow, quick });
  }
  return users;
}

describe('a revocation racing a move', () => {
  it('is in force on the new owner whenever it was answered 204, and is otherwise refused with a retryable 503', async () => {
    // A shard of v1's, whose users this test creates.
    const placement = targetPlacement(ids);
    const shard = [...Array(1024).keys()].find((s) => placement.get(s) === 'v1')!;
    const users = await seedUsersOf(shard);
    await cluster.sql.unsafe(`
      create function slow_revocation() returns trigger language plpgsql as $$
      begin
        if new.revoked_at is not null and old.device_name = 'slow' then perform pg_sleep(${SLOW_REVOCATION_S}); end if;
        return new;
      end $$`);
    await cluster.sql.unsafe('create trigger slow_revocation before update on sessions for each row execute function slow_revocation()');

    let done = false;
    // Each user's other session, used all the time through both nodes: the next owner loads
    // the user as soon as it serves the shard.
    const reads = new Map<number, number>();
    const readers = users.map(async (user) => {
      while (!done) {
        const answer = await api(anyNode())('GET', '/v1/sessions', { token: user.keeper.token });
        reads.set(answer.status, (reads.get(answer.status) ?? 0) + 1);
        await sleep(10);
      }
    });
    const answers: { session: Session; status: number; retryAfter: string | null }[] = [];
    const revoke = async (via: string, session: Session) => {
      const answer = await api(via)('DELETE', `/v1/sessions/${session.id}`, { token: session.token });
      answers.push({ session, status: answer.status, retryAfter: answer.headers.get('retry-after') });
    };
    // Each user revokes sessions quickly, one after another, through either node, until the moves are over.
    const quick = users.map(async (user) => {
      for (const session of user.quick) {
        if (done) break;
        await revoke(anyNode(), session);
      }
    });
    // Before each move, every user starts a slow revocation on the owner; the shard moves while they run.
    const moves: { code: number; out: string; ms: number }[] = [];
    const slow: Promise<void>[] = [];
    try {
      await sleep(500);
      for (let i = 0; i < MOVES; i++) {
        const [from, to] = i % 2 === 0 ? ['v1', 'v2'] : ['v2', 'v1'];
        for (const user of users) slow.push(revoke(from!, user.slow[i]!));
        // The move reaches the owner once the CLI has started, well within the revocations' 5 s.
        await sleep(50);
        const started = performance.now();
        moves.push({
          ...(await runClusterCli(cluster.nats.url, ['move', String(shard), to!, '--json', '--timeout', '30'])),
          ms: Math.round(performance.now() - started),
        });
        await sleep(200);
      }
    } finally {
      done = true;
      await Promise.all([...readers, ...quick, ...slow]);
    }
    expect(moves.map((move) => move.code)).toEqual(moves.map(() => 0));
    await waitFor(async () => (await cluster.view(cluster.nodes.get('v1')!)).shards.moving.length === 0, 10_000);

    const succeeded = answers.filter((answer) => answer.status === 204);
    const refused = answers.filter((answer) => answer.status !== 204);
    console.log(
      `revocations: ${answers.length}, answered 204: ${succeeded.length}, refused: ${refused.length} (${[...new Set(refused.map((a) => a.status))]}); ` +
        `reads: ${JSON.stringify(Object.fromEntries(reads))}; moves took ${moves.map((move) => move.ms).join(', ')} ms`,
    );
    expect(succeeded.length).toBeGreaterThan(USERS);
    // Every refusal is one the caller may retry.
    for (const answer of refused) expect({ status: answer.status, retryAfter: answer.retryAfter !== null }).toEqual({ status: 503, retryAfter: true });
    // Every revocation that answered 204 is in force, whichever node serves the user now.
    const stillWorking: { session: string; via: string; status: number }[] = [];
    for (const { session } of succeeded) {
      for (const id of ids) {
        const answer = await api(id)('GET', '/v1/sessions', { token: session.token });
        if (answer.status !== 401) stillWorking.push({ session: session.id, via: id, status: answer.status });
      }
    }
    expect(stillWorking).toEqual([]);
    // The sessions nobody revoked still work.
    for (const user of users) expect((await api('v2')('GET', '/v1/sessions', { token: user.keeper.token })).status).toBe(200);
  }, 120_000);
});
