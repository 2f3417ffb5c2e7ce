/** Storage: postgres.js to Postgres or to embedded PGlite, migrations, and every query. */
export { openDatabase, type Database, type DatabaseOptions, type Sql } from './database.js';
export { defaultMigrationsDir, migrate } from './migrations.js';
export { Store, type TierRow } from './store.js';
