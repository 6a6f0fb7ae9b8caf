// The SQLite driver of the Db seam (better-sqlite3: synchronous). Statements are prepared
// once per SQL text and cached. One connection writes: a statement issued while another
// async context holds a write transaction waits for it to end, as it would otherwise run
// inside (and be committed or rolled back with) somebody else's transaction. A second
// connection serves the reads made outside any transaction (a heartbeat's): in WAL mode they
// see the last committed state and never wait behind the writer's transactions, which during
// a rollout of thousands of devices queue up one per status report.
// Waiting for another connection's lock (another process, or another store in this process)
// is done asynchronously: busy_timeout would block the event loop, and with transaction
// bodies that await, the holder may be this very process, which then could never finish.
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { Mutex, READ_ONLY_SQL, TxContext, TxScope, type Db, type Params, type QueryObserver, type Row, type TransactionOptions } from './db.js';

/** Page cache per connection, KiB (two connections). */
const PAGE_CACHE_KIB = 64 * 1024;

export class SqliteDb implements Db {
  readonly dialect = 'sqlite' as const;
  readonly raw: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly reader: Database.Database;
  private readonly readStatements = new Map<string, Database.Statement>();
  private readonly mutex = new Mutex();
  private readonly scope = new TxScope<Database.Database>();

  constructor(
    file: string,
    private readonly observe?: QueryObserver,
  ) {
    this.raw = new Database(file);
    // busy_timeout first: switching to WAL and migrating may wait for another process.
    this.raw.pragma('busy_timeout = 5000');
    this.raw.pragma('journal_mode = WAL');
    // FULL: a committed catalog row must not vanish after the TUF metadata that it follows
    // has been fsynced (publishing signs first, then commits the catalog).
    this.raw.pragma('synchronous = FULL');
    this.raw.pragma('foreign_keys = ON');
    // From here on a locked database answers SQLITE_BUSY at once; retry() waits without blocking.
    this.raw.pragma('busy_timeout = 0');
    // Opened after the writer switched the file to WAL; only ever given SELECTs (readStatement).
    this.reader = new Database(file);
    this.reader.pragma('busy_timeout = 0');
    // SQLite's default page cache (2 MB) is far smaller than a fleet's working set: a rollout
    // step's count over 10,000 devices re-read its pages from the OS on every run, taking
    // 150+ ms of the event loop at a time in the 10,000-device benchmark. Pages are cached
    // as they are read, so a small database never uses more than its size.
    for (const conn of [this.raw, this.reader]) conn.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
  }

  /** Runs `fn` again (after a growing pause, up to BUSY_WAIT_MS) while the database is locked. */
  private async retry<T>(fn: () => T): Promise<T> {
    const deadline = Date.now() + BUSY_WAIT_MS;
    for (let pause = 2; ; pause = Math.min(pause * 2, 50)) {
      try {
        return fn();
      } catch (err) {
        if (!isBusy(err) || Date.now() > deadline) throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  private statement(sql: string): Database.Statement {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      stmt = this.raw.prepare(sql);
      this.statements.set(sql, stmt);
    }
    return stmt;
  }

  /** A SELECT outside our transactions: on the reader connection (see the top of this file). */
  private readStatement(sql: string): Database.Statement | undefined {
    if (this.scope.current() || !READ_ONLY_SQL.test(sql)) return undefined;
    let stmt = this.readStatements.get(sql);
    if (!stmt) {
      stmt = this.reader.prepare(sql);
      this.readStatements.set(sql, stmt);
    }
    return stmt;
  }

  /** A read on the reader connection: no mutex; waits (asynchronously) only during WAL recovery. */
  private read<T>(fn: () => T): Promise<T> {
    try {
      return Promise.resolve(this.timed(fn));
    } catch (err) {
      if (!isBusy(err)) return Promise.reject(err);
      return this.retry(() => this.timed(fn));
    }
  }

  /** Runs a synchronous step now when nobody holds a transaction (or we are inside it), else after. */
  private async step<T>(fn: () => T): Promise<T> {
    // Inside our own write transaction the database lock is already ours.
    if (this.scope.current()) return this.timed(fn);
    if (!this.mutex.isLocked) {
      try {
        return this.timed(fn);
      } catch (err) {
        if (!isBusy(err)) throw err;
        // Waiting must hold the mutex: a transaction of ours must not start in between and
        // swallow this statement.
      }
    }
    return this.mutex.run(async () => this.retry(() => this.timed(fn)));
  }

  private timed<T>(fn: () => T): T {
    if (!this.observe) return fn();
    const start = performance.now();
    try {
      return fn();
    } finally {
      this.observe('query', (performance.now() - start) / 1000);
    }
  }

  all(sql: string, params: Params = []): Promise<Row[]> {
    const read = this.readStatement(sql);
    if (read) return this.read(() => read.all(...bind(params)) as Row[]);
    return this.step(() => {
      const stmt = this.statement(sql);
      const args = bind(params);
      if (!stmt.reader) {
        stmt.run(...args);
        return [];
      }
      return stmt.all(...args) as Row[];
    });
  }

  get(sql: string, params: Params = []): Promise<Row | undefined> {
    const read = this.readStatement(sql);
    if (read) return this.read(() => read.get(...bind(params)) as Row | undefined);
    return this.step(() => this.statement(sql).get(...bind(params)) as Row | undefined);
  }

  run(sql: string, params: Params = []): Promise<{ changes: number }> {
    return this.step(() => ({ changes: this.statement(sql).run(...bind(params)).changes }));
  }

  exec(sql: string): Promise<void> {
    return this.step(() => {
      this.raw.exec(sql);
      // A script may change the schema: statements prepared before it may be stale.
      this.statements.clear();
      this.readStatements.clear();
    });
  }

  beforeCommit(): boolean {
    // One writer at a time: work done now is already in commit order.
    return false;
  }

  inTransaction(): boolean {
    return this.scope.current() !== undefined;
  }

  async writeTransaction<T>(fn: () => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    const outer = this.scope.current();
    if (outer) return this.scope.savepoint(outer, async (sql) => void this.raw.exec(sql), fn);
    // Timed from here: like PostgreSQL's, a transaction's latency includes waiting for its turn.
    const start = performance.now();
    return this.mutex.run(async () => {
      // A connection-wide setting, safe to flip here: the mutex keeps every other statement
      // and transaction of this connection out until it is restored.
      if (options.relaxedDurability) this.raw.pragma('synchronous = NORMAL');
      try {
        // IMMEDIATE takes the database write lock now (waiting up to busy_timeout for another
        // process), so a read-then-write body cannot be overtaken by another writer.
        await this.retry(() => this.raw.exec('BEGIN IMMEDIATE'));
        const ctx = new TxContext(this.raw);
        try {
          const result = await this.scope.run(ctx, fn);
          ctx.done = true;
          this.raw.exec('COMMIT');
          return result;
        } catch (err) {
          ctx.done = true;
          if (this.raw.inTransaction) this.raw.exec('ROLLBACK');
          throw err;
        }
      } finally {
        if (options.relaxedDurability) this.raw.pragma('synchronous = FULL');
        this.observe?.('transaction', (performance.now() - start) / 1000);
      }
    });
  }

  async ping(): Promise<void> {
    await this.get('SELECT 1 AS ok');
  }

  async close(): Promise<void> {
    // Let a running transaction finish before closing the connection under it.
    await this.mutex.run(async () => {
      if (this.raw.open) this.raw.close();
      if (this.reader.open) this.reader.close();
    });
  }
}

/** Statements that only read, whatever their results: what the reader connection may run. */

/** How long a statement waits for another connection's lock (was busy_timeout = 5000). */
const BUSY_WAIT_MS = 5000;

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}

function bind(params: Params): unknown[] {
  return Array.isArray(params) ? (params as unknown[]) : [params];
}
