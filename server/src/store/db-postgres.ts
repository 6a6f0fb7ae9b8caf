// The PostgreSQL driver of the Db seam (node-postgres). Two pools: reads outside a transaction
// (heartbeats that miss the cache, REST reads, rollout steps' glances) take a connection from `readPool`; write
// transactions and autocommit writes from `pool`, one client for a transaction's whole body.
// Kept apart because a write transaction holds its connection across several round trips and
// row-lock waits: sharing one pool, a rollout's report and liveness batches left the
// heartbeats' reads queued for a connection (18,000-device fleet on PostgreSQL, 2026-12-06:
// 375-1,103 waits over 100 ms per run). A 'global' write
// transaction (the default) takes the global write advisory lock first, so those of every
// replica are serialized the way SQLite's BEGIN IMMEDIATE serializes processes (TUF
// publishing, enrollment, operator actions rely on that). A 'rows' one (status reports,
// liveness, rollout steps) takes only the row locks its statements need, in the order
// row-locks.ts documents; what must be serialized and at which granularity is tabled in
// docs/architecture.md ("Write locks on PostgreSQL").
import * as crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { READ_ONLY_SQL, TxContext, TxScope, type Db, type Params, type QueryObserver, type Row, type TransactionOptions } from './db.js';

/** Advisory lock keys, (namespace, key) pairs; the namespace is "MESH". */
export const LOCK_NAMESPACE = 0x4d455348;
export const WRITE_LOCK_KEY = 1;
/** The audit chain's head (row-locks.ts): taken at commit, the last lock of any transaction. */
export const AUDIT_LOCK_KEY = 2;

interface Translated {
  name: string;
  text: string;
  /** For named params: the name of each $n in order. */
  names: string[] | undefined;
}

/** `?` and `@name` placeholders become `$n` (the SQL never has either inside a literal). */
export function translatePlaceholders(sql: string): { text: string; names: string[] | undefined } {
  if (/@[a-zA-Z_]/.test(sql)) {
    const names: string[] = [];
    const text = sql.replace(/@([a-zA-Z_][a-zA-Z0-9_]*)/g, (_m, name: string) => {
      let index = names.indexOf(name);
      if (index < 0) {
        names.push(name);
        index = names.length - 1;
      }
      return `$${index + 1}`;
    });
    return { text, names };
  }
  let n = 0;
  return { text: sql.replace(/\?/g, () => `$${++n}`), names: undefined };
}

/**
 * Told around every commit this process makes (the device-state feed's fences,
 * state-feed-postgres.ts). `fence` is called before a commit is sent and gives the statement
 * to run in the committing transaction just before COMMIT (so the fence costs no commit of
 * its own: each commit that notifies takes PostgreSQL's global notify lock and, with an XID,
 * a WAL flush), or undefined. `committed` gives back the `changed` column that statement
 * returned, once COMMIT has succeeded. `unsent` reports a fence whose commit failed or whose
 * outcome is unknown, or, with `afterwards`, asks for it to be sent on its own (autocommit writes).
 */
export interface WriteWatcher {
  fence(): { token: string; sql: string } | undefined;
  committed(token: string, changed: string): void;
  unsent(token: string, afterwards: boolean): void;
}

/** Connections per pool; each replica opens up to the sum (PostgreSQL's max_connections bounds all replicas' together). */
export interface PostgresPoolSizes {
  /** Write transactions and autocommit writes (default CONNECTIONS_PER_POOL). */
  writers?: number;
  /** Reads outside a transaction (default CONNECTIONS_PER_POOL). */
  readers?: number;
}

/** Each pool's default size (config/defaults.ts says the same for the CLI, which must not load pg to print its help). */
const CONNECTIONS_PER_POOL = 10;

export class PostgresDb implements Db {
  readonly dialect = 'postgres' as const;
  /** Writes: transactions and autocommit statements. */
  readonly pool: pg.Pool;
  /** Reads outside a transaction. */
  readonly readPool: pg.Pool;
  private readonly translated = new Map<string, Translated>();
  private readonly scope = new TxScope<pg.PoolClient>();
  private writeWatcher: WriteWatcher | undefined;
  /**
   * This process's global write transactions, one at a time. They are serialized anyway (the
   * global advisory lock), but one waiting for the lock holds a pooled connection while it
   * waits: a burst of them would take the whole writers' pool and leave the report and
   * liveness batches queued behind them. Waiting here costs no connection. 'rows' transactions do not queue here: their
   * callers are few and bounded (one report batch, one liveness flush and one step per
   * rollout at a time per process) and they wait only for the rows they touch.
   */
  private writerQueue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly connectionString: string,
    private readonly observe?: QueryObserver,
    sizes: PostgresPoolSizes = {},
  ) {
    this.pool = new pg.Pool({ connectionString, max: sizes.writers ?? CONNECTIONS_PER_POOL });
    this.readPool = new pg.Pool({ connectionString, max: sizes.readers ?? CONNECTIONS_PER_POOL });
    // An idle client's error (the server restarted) must not crash the process; the next
    // query on the pool gets a fresh connection.
    this.pool.on('error', () => undefined);
    this.readPool.on('error', () => undefined);
  }

  private translate(sql: string): Translated {
    let t = this.translated.get(sql);
    if (!t) {
      const { text, names } = translatePlaceholders(sql);
      // Named: prepared once per connection and reused (pg keeps prepared statements by name).
      t = { name: `m_${crypto.createHash('sha1').update(text).digest('hex').slice(0, 20)}`, text, names };
      this.translated.set(sql, t);
    }
    return t;
  }

  setWriteWatcher(watcher: WriteWatcher | undefined): void {
    this.writeWatcher = watcher;
  }

  /** An autocommit write: its fence follows it in a transaction of its own. */
  private async autocommitWrite<T>(write: () => Promise<T>): Promise<T> {
    const fence = this.writeWatcher?.fence();
    if (fence === undefined) return write();
    try {
      return await write();
    } finally {
      this.writeWatcher?.unsent(fence.token, true);
    }
  }

  private async query(sql: string, params: Params): Promise<pg.QueryResult> {
    const t = this.translate(sql);
    const values = t.names ? t.names.map((n) => normalize((params as Record<string, unknown>)[n])) : (params as unknown[]).map(normalize);
    const tx = this.scope.current();
    const start = performance.now();
    try {
      if (tx) return await tx.connection.query({ name: t.name, text: t.text, values });
      if (READ_ONLY_SQL.test(sql)) return await this.pooled(this.readPool, 'read_pool_wait', (client) => client.query({ name: t.name, text: t.text, values }));
      return await this.autocommitWrite(() => this.pooled(this.pool, 'pool_wait', (client) => client.query({ name: t.name, text: t.text, values })));
    } finally {
      this.observe?.('query', (performance.now() - start) / 1000);
    }
  }

  /** What pool.query does, with the wait for a connection measured on its own. */
  private async pooled<T>(pool: pg.Pool, wait: 'pool_wait' | 'read_pool_wait', use: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.connect(pool, wait);
    let failed: Error | undefined;
    try {
      return await use(client);
    } catch (err) {
      failed = err instanceof Error ? err : new Error(String(err));
      throw err;
    } finally {
      // Like pool.query: a connection that saw an error is not reused.
      client.release(failed);
    }
  }

  private async connect(pool: pg.Pool, wait: 'pool_wait' | 'read_pool_wait'): Promise<pg.PoolClient> {
    const start = performance.now();
    const client = await pool.connect();
    this.observe?.(wait, (performance.now() - start) / 1000);
    return client;
  }

  async all(sql: string, params: Params = []): Promise<Row[]> {
    return (await this.query(sql, params)).rows as Row[];
  }

  async get(sql: string, params: Params = []): Promise<Row | undefined> {
    return (await this.query(sql, params)).rows[0] as Row | undefined;
  }

  async run(sql: string, params: Params = []): Promise<{ changes: number }> {
    return { changes: (await this.query(sql, params)).rowCount ?? 0 };
  }

  async exec(sql: string): Promise<void> {
    const tx = this.scope.current();
    if (tx) await tx.connection.query(sql);
    else await this.autocommitWrite(() => this.pool.query(sql));
  }

  inTransaction(): boolean {
    return this.scope.current() !== undefined;
  }

  beforeCommit(hook: () => Promise<void>): boolean {
    const tx = this.scope.current();
    if (!tx) return false;
    tx.beforeCommit.push(hook);
    return true;
  }

  async writeTransaction<T>(fn: () => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    const outer = this.scope.current();
    if (outer) return this.scope.savepoint(outer, async (sql) => void (await outer.connection.query(sql)), fn);
    const queuedAt = performance.now();
    if (options.lock === 'rows') return this.topLevelWriteTransaction(fn, options, queuedAt);
    const turn = this.writerQueue.then(() => this.topLevelWriteTransaction(fn, options, queuedAt));
    // The next writer waits for this one to end, however it ends.
    this.writerQueue = turn.catch(() => undefined);
    return turn;
  }

  private async topLevelWriteTransaction<T>(fn: () => Promise<T>, options: TransactionOptions, start: number): Promise<T> {
    const client = await this.connect(this.pool, 'pool_wait');
    const ctx = new TxContext(client);
    let broken = false;
    try {
      // One round trip (simple protocol, constants only): writers take turns, so every round
      // trip before the lock is granted lengthens every writer's wait. SET LOCAL ends with the
      // transaction: the pooled connection goes back with the default.
      const relaxed = options.relaxedDurability ? ' SET LOCAL synchronous_commit = off;' : '';
      const global = options.lock === 'rows' ? '' : ` SELECT pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${WRITE_LOCK_KEY})`;
      await client.query(`BEGIN;${relaxed}${global}`);
      const result = await this.scope.run(ctx, fn);
      // The hooks may register more (none do today): run until none is left.
      for (let i = 0; i < ctx.beforeCommit.length; i++) await this.scope.run(ctx, ctx.beforeCommit[i]!);
      ctx.done = true;
      const watcher = this.writeWatcher;
      const fence = watcher?.fence();
      let committed: pg.QueryResult<{ changed?: unknown }> | pg.QueryResult<{ changed?: unknown }>[];
      try {
        // One simple-protocol query: the fence is sent by the committing transaction itself.
        committed = await client.query(fence ? `${fence.sql}; COMMIT` : 'COMMIT');
      } catch (err) {
        if (fence) watcher?.unsent(fence.token, false);
        throw err;
      }
      if (fence) {
        // Two statements: pg answers with an array of results, the fence's first.
        const changed = [committed].flat()[0]?.rows[0]?.changed;
        // Unreadable (cannot happen with the fence's own statement): assume every device.
        watcher?.committed(fence.token, typeof changed === 'string' ? changed : '*');
      }
      return result;
    } catch (err) {
      ctx.done = true;
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true;
      }
      // A statement this connection prepared before a migration changed its table's columns
      // fails on every use of the connection, not once: such a connection is not reused (a
      // read's connection never is after an error, see pooled()).
      if (stalePreparedStatement(err)) broken = true;
      throw err;
    } finally {
      client.release(broken);
      this.observe?.('transaction', (performance.now() - start) / 1000);
    }
  }

  /** Both pools: readiness means reads and writes can each get a connection. */
  async ping(): Promise<void> {
    await Promise.all([this.pool.query('SELECT 1'), this.readPool.query('SELECT 1')]);
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.end(), this.readPool.end()]);
  }
}

function normalize(v: unknown): unknown {
  // The schema keeps booleans as 0/1 integers on both engines.
  if (typeof v === 'boolean') return v ? 1 : 0;
  return v === undefined ? null : v;
}

/**
 * PostgreSQL's answer to a prepared statement whose result columns changed since it was
 * prepared (an ALTER TABLE of a later migration, applied by another replica during a rolling
 * upgrade): "cached plan must not change result type", SQLSTATE 0A000.
 */
function stalePreparedStatement(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  return e?.code === '0A000' && typeof e.message === 'string' && e.message.includes('cached plan must not change result type');
}
