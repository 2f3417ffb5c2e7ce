/**
 * Storage: postgres.js to Postgres or to embedded PGlite, migrations, every query, the
 * epoch fence.
 */

/** The domain's errors that `Store` throws for a taken email and a missing tier. */
export { EmailTakenError, UnknownTierError } from '../shards/index.js';
export type { EncodedStateRow } from './actorState.js';
export { type Database, openDatabase } from './database.js';
export { DataDirInUseError, MigrationError, SQLSTATE } from './errors.js';
export { defaultMigrationsDir, migrate, readIncarnation } from './migrations.js';
export { chooseCopy, emptyReplicaStats, openReplica, RedisReplica, type ReplicaStats } from './replica.js';
export type { ActorStateRow, ApiKeyRow, SessionRow, UserRow } from './rows.js';
export { Store } from './store.js';
export { type FlushMetrics, WriteBehind } from './writeBehind.js';
