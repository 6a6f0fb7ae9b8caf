// The seam between the store's SQL and a database engine. The repositories write their SQL
// once against this interface; the two drivers (db-sqlite.ts, db-postgres.ts) differ only in
// how a statement reaches the engine and how a write transaction is serialized:
//   SQLite:     one connection; BEGIN IMMEDIATE (serializes every process on the file), and
//               an in-process mutex so two async transaction bodies never share the connection.
//   PostgreSQL: a pool client per transaction. A transaction takes either the global write
//               advisory lock (lock: 'global', the default: serialized against every other
//               global one, as SQLite's are) or only the row and advisory locks its statements
//               take (lock: 'rows': status reports, liveness, rollout steps), in the order
//               row-locks.ts documents.
// Placeholders: `?` (positional, array params) or `@name` (named, object params).
import { AsyncLocalStorage } from 'node:async_hooks';

export type Row = Record<string, unknown>;
export type Params = readonly unknown[] | Readonly<Record<string, unknown>>;
export type Dialect = 'sqlite' | 'postgres';

/**
 * Statements that cannot write: SQLite reads them on its reader connection, PostgreSQL on its
 * readers' pool; on PostgreSQL the rest, outside a transaction, are commits of their own. Told
 * by the leading SELECT alone, so a SELECT that takes a lock (FOR UPDATE / FOR SHARE) or calls
 * pg_notify or pg_advisory_* must run inside a write transaction (they all do).
 */
export const READ_ONLY_SQL = /^\s*SELECT\b/i;

export interface Db {
  readonly dialect: Dialect;
  all(sql: string, params?: Params): Promise<Row[]>;
  get(sql: string, params?: Params): Promise<Row | undefined>;
  /** A statement that returns no rows; `changes` is the number of rows it touched. */
  run(sql: string, params?: Params): Promise<{ changes: number }>;
  /** A script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /**
   * Runs `fn` in a write transaction serialized against every other one (all processes and
   * replicas on this database). A call made inside `fn` (same async context) joins the outer
   * transaction as a savepoint. Commits when `fn` resolves, rolls back when it rejects.
   */
  writeTransaction<T>(fn: () => Promise<T>, options?: TransactionOptions): Promise<T>;
  /** True when the caller runs inside a write transaction of this database. */
  inTransaction(): boolean;
  /**
   * Runs `hook` inside the current write transaction after its body, just before COMMIT
   * (hooks in the order registered; one registered in a savepoint that rolls back is
   * dropped). False, and nothing registered, when there is no transaction or the engine has
   * no use for it (SQLite: one writer at a time anyway): the caller then does the work now.
   * PostgreSQL uses it so the audit chain's lock is the last one a transaction takes.
   */
  beforeCommit(hook: () => Promise<void>): boolean;
  /** Round trip to the engine (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface TransactionOptions {
  /**
   * The commit returns before it is flushed to disk (SQLite: synchronous = NORMAL for this
   * transaction; PostgreSQL: synchronous_commit = off). Only for data whose loss on power
   * failure is harmless and that is rewritten soon anyway (heartbeat liveness); the database
   * stays consistent, and the next durable commit flushes it too. Ignored when joining an
   * outer transaction, whose own durability applies.
   */
  relaxedDurability?: boolean;
  /**
   * PostgreSQL: 'global' (default) takes the global write advisory lock first; 'rows' takes
   * none, and the body must take the row locks its read-then-write steps need, in the order
   * of row-locks.ts (rollouts, then devices by id, then other rows; the audit head last, at
   * commit). SQLite: ignored (BEGIN IMMEDIATE). Ignored when joining an outer transaction.
   */
  lock?: 'global' | 'rows';
}

/**
 * Called with each statement's duration (seconds), for the database latency histogram.
 * `query`: a statement, its wait for a connection included; `transaction`: a write transaction,
 * its wait for its turn and the lock included; `pool_wait` (PostgreSQL): the part of either
 * spent waiting for a connection of the writers' pool; `read_pool_wait` (PostgreSQL): a read's
 * wait for a connection of the readers' pool.
 */
export type QueryObserver = (operation: 'query' | 'transaction' | 'pool_wait' | 'read_pool_wait', seconds: number) => void;

/** A FIFO mutex: transaction bodies are async, so holding the lock spans awaits. */
export class Mutex {
  private locked = false;
  private readonly waiters: Array<() => void> = [];

  get isLocked(): boolean {
    return this.locked;
  }

  async acquire(): Promise<void> {
    if (!this.locked) {
      this.locked = true;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.locked = false;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}

/**
 * A transaction's async context. `done` is set when it ends, so a promise the body started
 * but did not await (it still carries this context) does not mistake itself for being inside.
 * Nested write transactions of one body are serialized by `nested` (savepoints are a stack).
 */
export class TxContext<C> {
  done = false;
  readonly nested = new Mutex();
  /** Db.beforeCommit hooks registered in this context (a savepoint's move to its outer context on release). */
  readonly beforeCommit: Array<() => Promise<void>> = [];
  private savepoints = 0;

  constructor(readonly connection: C) {}

  nextSavepoint(): string {
    this.savepoints += 1;
    return `meshanics_sp_${this.savepoints}`;
  }
}

export class TxScope<C> {
  private readonly storage = new AsyncLocalStorage<TxContext<C>>();
  private active = 0;

  current(): TxContext<C> | undefined {
    if (this.active === 0) return undefined;
    const ctx = this.storage.getStore();
    return ctx && !ctx.done ? ctx : undefined;
  }

  async run<T>(ctx: TxContext<C>, fn: () => Promise<T>): Promise<T> {
    this.active += 1;
    try {
      return await this.storage.run(ctx, fn);
    } finally {
      this.active -= 1;
      // On Node 20 an enabled AsyncLocalStorage keeps a promise hook on for every promise in
      // the process (grpc-js's included): about a tenth of the server's CPU per heartbeat. Off
      // while no transaction runs; a continuation of a finished transaction had ctx.done set,
      // so losing its store changes nothing.
      if (this.active === 0) this.storage.disable();
    }
  }

  /**
   * A nested write transaction: a savepoint on the outer transaction's connection, so a
   * failure the caller catches undoes only the inner work (as better-sqlite3 did).
   */
  async savepoint<T>(outer: TxContext<C>, exec: (sql: string) => Promise<void>, fn: () => Promise<T>): Promise<T> {
    return outer.nested.run(async () => {
      const name = outer.nextSavepoint();
      const inner = new TxContext(outer.connection);
      await exec(`SAVEPOINT ${name}`);
      try {
        const result = await this.run(inner, fn);
        inner.done = true;
        await exec(`RELEASE SAVEPOINT ${name}`);
        outer.beforeCommit.push(...inner.beforeCommit);
        return result;
      } catch (err) {
        inner.done = true;
        await exec(`ROLLBACK TO SAVEPOINT ${name}`);
        await exec(`RELEASE SAVEPOINT ${name}`);
        throw err;
      }
    });
  }
}
