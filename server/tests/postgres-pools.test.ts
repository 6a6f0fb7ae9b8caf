// The PostgreSQL driver's two pools (db-postgres.ts): reads outside a transaction never wait
// for a connection that write transactions hold. A rollout's report and liveness batches hold
// writer connections across round trips and row-lock waits; heartbeats that miss the cache
// read while they do. PostgreSQL only: SQLite has one connection per role by design.
import { afterEach, describe, expect, it } from 'vitest';
import { PostgresDb } from '../src/store/db-postgres.js';
import { freshPostgresDatabase, IN_CI, postgresUnavailable } from './engines.js';

const unavailable = await postgresUnavailable();
if (unavailable !== undefined && !IN_CI) console.warn(`skipping: ${unavailable}`);

const opened: PostgresDb[] = [];
afterEach(async () => {
  for (const db of opened.splice(0)) await db.close();
});

/** Settles with 'timed out' after `ms`: the read below must not depend on the writers ending. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timed out'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timed out'>((resolve) => (timer = setTimeout(() => resolve('timed out'), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe.skipIf(unavailable !== undefined && !IN_CI)('PostgreSQL connection pools', () => {
  it('answers a read while write transactions hold every writer connection', async () => {
    const seen: string[] = [];
    const db = new PostgresDb(await freshPostgresDatabase(), (operation) => seen.push(operation), { writers: 2, readers: 1 });
    opened.push(db);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let inside = 0;
    const writers = [0, 1].map(() =>
      db.writeTransaction(
        async () => {
          inside++;
          await db.get('SELECT 1 AS one');
          await held;
        },
        { lock: 'rows' },
      ),
    );
    await expect.poll(() => inside).toBe(2);
    seen.length = 0;
    // With one shared pool this read would wait for a writer to end, which never happens
    // before `release`: the 5 s are a bound on a deadlock, not a speed target.
    const read = await within(db.get('SELECT 42 AS answer'), 5000);
    release();
    await Promise.all(writers);
    expect(read).toEqual({ answer: 42 });
    expect(seen).toContain('read_pool_wait');
    expect(seen).not.toContain('pool_wait');
  });

  it('writes outside a transaction on the writers pool, so a held reader never blocks them', async () => {
    const seen: string[] = [];
    const db = new PostgresDb(await freshPostgresDatabase(), (operation) => seen.push(operation), { writers: 1, readers: 1 });
    opened.push(db);
    await db.exec('CREATE TABLE t (v INTEGER)');
    // The only reader connection, held by a slow read.
    const slowRead = db.get('SELECT pg_sleep(4) AS slept');
    await expect.poll(() => seen.includes('read_pool_wait')).toBe(true);
    seen.length = 0;
    const written = await within(db.run('INSERT INTO t (v) VALUES (?)', [7]), 3000);
    expect(written).toEqual({ changes: 1 });
    expect(seen).toContain('pool_wait');
    await slowRead;
    expect(await db.all('SELECT v FROM t')).toEqual([{ v: 7 }]);
  });

  it('is ready only when both pools reach the database, and closes both', async () => {
    const location = await freshPostgresDatabase();
    const db = new PostgresDb(location, undefined, { writers: 1, readers: 1 });
    await db.ping();
    await db.close();
    expect([db.pool.ending, db.readPool.ending]).toEqual([true, true]);
    // Either pool unable to reach the database is not ready.
    for (const broken of ['pool', 'readPool'] as const) {
      const other = new PostgresDb(location, undefined, { writers: 1, readers: 1 });
      await other[broken].end();
      await expect(other.ping()).rejects.toThrow();
      await other.close().catch(() => undefined);
    }
  });

  it('does not reuse a writer connection whose prepared statement a migration made stale', async () => {
    // A rolling upgrade: another replica's migration adds a column to a table this one reads
    // with SELECT *. PostgreSQL then fails the statement prepared before on every use of that
    // connection; with one writer connection, reusing it would fail every transaction after.
    const location = await freshPostgresDatabase();
    const db = new PostgresDb(location, undefined, { writers: 1, readers: 1 });
    opened.push(db);
    await db.exec('CREATE TABLE t (v INTEGER)');
    await db.run('INSERT INTO t (v) VALUES (?)', [1]);
    const read = () => db.writeTransaction(() => db.all('SELECT * FROM t WHERE v = ?', [1]), { lock: 'rows' });
    expect(await read()).toEqual([{ v: 1 }]);
    const other = new PostgresDb(location, undefined, { writers: 1, readers: 1 });
    try {
      await other.exec('ALTER TABLE t ADD COLUMN w INTEGER');
    } finally {
      await other.close();
    }
    await expect(read()).rejects.toThrow(/cached plan must not change result type/);
    expect(await read()).toEqual([{ v: 1, w: null }]);
  });
});
