// Schema migrations applied at open (migrations.ts for SQLite, migrations-postgres.ts for PostgreSQL).
import { MeshError } from '../errors.js';
import type { Db } from './db.js';
import { MIGRATIONS, type Migration } from './migrations.js';
import { num } from './sql-rows.js';

/** Applies the migrations `db` lacks, in version order, under the write lock. */
export async function migrate(db: Db, migrations: readonly Migration[] = MIGRATIONS): Promise<void> {
  // Under the write lock so two processes (or replicas) opening a fresh database at once
  // cannot both apply v1.
  await db.writeTransaction(async () => {
    await db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
    const applied = new Set((await db.all('SELECT version FROM schema_migrations')).map((r) => num(r.version)));
    const known = new Set(migrations.map((m) => m.version));
    const unknown = [...applied].filter((v) => !known.has(v));
    if (unknown.length > 0) {
      throw new MeshError('MESH_ERR_STORE_SCHEMA_TOO_NEW', `database has migrations ${unknown.join(', ')} that this server does not know; upgrade the server`);
    }
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (applied.has(m.version)) continue;
      try {
        await db.exec(db.dialect === 'postgres' ? m.postgresSql : m.sql);
        await m.up?.(db);
      } catch (err) {
        throw new MeshError('MESH_ERR_STORE_MIGRATION_FAILED', `migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, {
          cause: err,
        });
      }
      await db.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [m.version, m.name, new Date().toISOString()]);
    }
  });
}
