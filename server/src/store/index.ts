// store/ owns persistence: every SQL statement of the server, behind the Store interface (store.ts), written once
// (sql-store.ts, sql-*.ts) over the Db seam (db.ts) with a SQLite and a PostgreSQL driver (db-sqlite.ts,
// db-postgres.ts), the migrations, group commit (write-batcher.ts) and the DeviceStateFeed (state-feed-*.ts).
// May import: better-sqlite3, pg, ../errors.ts, @meshanics/core/contract, and audit/chain.ts (the chain's hash, which
// the store computes inside its write transaction). Nothing else of the server: every other folder builds on it.

import { SqliteDb } from './db-sqlite.js';
import { PostgresDb } from './db-postgres.js';
import type { Db, QueryObserver } from './db.js';
import { MIGRATIONS, type Migration } from './migrations.js';
import { migrate } from './migrate.js';
import { SqlStore } from './sql-store.js';
import type { Store } from './store.js';

export type * from './store.js';
export type { Db, Dialect, QueryObserver, Row } from './db.js';
export { MIGRATIONS, type Migration } from './migrations.js';
export { SqlStore } from './sql-store.js';
export { installedDigest } from './installed-digest.js';
export { SqliteDb } from './db-sqlite.js';
export { PostgresDb } from './db-postgres.js';

export interface OpenStoreOptions {
  /** Only these migrations (tests of upgrades). */
  migrations?: readonly Migration[];
  observe?: QueryObserver;
  /** PostgreSQL: connections in each of the readers' and the writers' pools (default 10). */
  connections?: number;
}

/** True for a `postgres://` or `postgresql://` URL. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//.test(location);
}

/**
 * Opens (creating and migrating if needed) the server database: a PostgreSQL URL, or the path
 * of the SQLite file.
 */
export async function openStore(location: string, options: OpenStoreOptions = {}): Promise<Store> {
  const db: Db = isPostgresUrl(location)
    ? new PostgresDb(location, options.observe, { readers: options.connections, writers: options.connections })
    : new SqliteDb(location, options.observe);
  try {
    await migrate(db, options.migrations ?? MIGRATIONS);
  } catch (err) {
    await db.close();
    throw err;
  }
  return new SqlStore(db);
}
