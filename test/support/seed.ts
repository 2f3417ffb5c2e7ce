/**
 * Users with one API key each, written straight into a migrated database with COPY (or, on
 * embedded PGlite, batched inserts): a hundred thousand in seconds, where signing each up
 * through the API would cost an scrypt hash apiece. The keys are issued under `keySecret`,
 * so a node started with the same TALLY_KEY_SECRET accepts them. Used by the scale
 * benchmark and the large-flush tests.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type postgres from 'postgres';
import { deriveKeys } from '../../src/credentials/index.js';
import { issueApiKey, newUserId } from '../../src/shards/index.js';

export interface SeedOptions {
  keySecret: string;
  users: number;
  /** A tier created for them with these limits. */
  tier: { name: string; limits: readonly unknown[] };
  /** `insert` for embedded PGlite, whose socket does not take COPY. */
  via?: 'copy' | 'insert';
}

/** Users (and their keys) per statement when seeding without COPY. */
const INSERT_BATCH = 5_000;

export interface SeededUsers {
  ids: string[];
  /** Each user's API key, in the order of `ids`. */
  keys: string[];
}

/** COPY text format: the values here never hold a tab, a newline or a backslash. */
function copyLine(values: (string | null)[]): string {
  return `${values.map((value) => (value === null ? '\\N' : value)).join('\t')}\n`;
}

export async function seedUsers(sql: postgres.Sql, { keySecret, users, tier, via = 'copy' }: SeedOptions): Promise<SeededUsers> {
  const macKey = deriveKeys(keySecret).apiKeyMac;
  await sql`insert into tiers (name, limits, fail_open) values (${tier.name}, ${sql.json(tier.limits as never)}, false)`;
  const ids: string[] = Array.from({ length: users }, () => newUserId());
  const keys = ids.map((id) => issueApiKey(id, macKey));
  // A fixed, valid scrypt string: nobody logs in as these users.
  const passwordHash = `scrypt$16384$8$1$${randomBytes(16).toString('base64')}$${randomBytes(32).toString('base64')}`;
  const created = new Date().toISOString();
  // Keys are signed, as the node marks every key it issues: an unsigned key is one from
  // before keys carried a MAC, and the node holds all of those in memory from its start.
  if (via === 'insert') {
    // PGlite's socket does not take COPY: batches of rows as arrays instead.
    for (let from = 0; from < users; from += INSERT_BATCH) {
      const part = ids.slice(from, from + INSERT_BATCH);
      const numbers = part.map((_, i) => from + i);
      await sql`
        insert into users (id, email, name, tier, password_hash, created_at)
        select id, 'seeded-' || n || '@example.com', 'User ' || n, ${tier.name}::text, ${passwordHash}::text, ${created}::timestamptz
        from unnest(${sql.array(part)}::text[], ${sql.array(numbers)}::int[]) as u(id, n)`;
      const partKeys = keys.slice(from, from + INSERT_BATCH);
      await sql`
        insert into api_keys (id, user_id, prefix, hash, name, scopes, created_at, signed)
        select id, user_id, prefix, hash, 'seeded', '{quota}', ${created}::timestamptz, true
        from unnest(${sql.array(partKeys.map((key) => key.keyId))}::text[], ${sql.array(partKeys.map((key) => key.userId))}::text[],
                    ${sql.array(partKeys.map((key) => key.prefix))}::text[], ${sql.array(partKeys.map((key) => key.hash))}::text[])
          as k(id, user_id, prefix, hash)`;
    }
  } else {
    await pipeline(
      Readable.from(
        (function* () {
          for (let i = 0; i < users; i++) yield copyLine([ids[i]!, `seeded-${i}@example.com`, `User ${i}`, tier.name, passwordHash, created]);
        })(),
      ),
      await sql`copy users (id, email, name, tier, password_hash, created_at) from stdin`.writable(),
    );
    await pipeline(
      Readable.from(
        (function* () {
          for (const key of keys) yield copyLine([key.keyId, key.userId, key.prefix, key.hash, 'seeded', '{quota}', created, 't']);
        })(),
      ),
      await sql`copy api_keys (id, user_id, prefix, hash, name, scopes, created_at, signed) from stdin`.writable(),
    );
  }
  // The seeded tables only. Analyzing `actor_state` while it is empty would tell the planner
  // it stays empty: the node's load statement, prepared at its first activations, would keep a
  // plan that scans it in full for every user loaded, until autovacuum analyzes it again (up to
  // a minute later, with the scale bench's cold pass over by then: 270 µs of Postgres per
  // activation instead of 35). docs/architecture.md, "Activation".
  await sql`analyze users, api_keys, tiers`;
  return { ids, keys: keys.map((key) => key.key) };
}
