// Group commit: write transactions that arrive while one is being committed are committed
// together in the next one. Every caller still gets its answer only after the transaction
// holding its write has committed (a status report is never acknowledged before it is
// durable), but a wave of thousands of reports costs one commit (and one fsync, one lock
// round trip) per batch instead of one per report.
//
// The writes of a batch share the transaction without a savepoint each: on PostgreSQL a
// savepoint is two more round trips per write, under the global write lock, and during a
// 6,000-device wave those round trips were what made reports queue past their deadline
// (docs/benchmarks.md). A write that fails is rare (its database call failed); then the batch
// is rolled back and each of its writes runs again in a transaction of its own, so one failing
// write still takes nothing else with it. The writes must therefore be safe to run twice
// (status reports are: their sequence number makes a replay a no-op).
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Store } from './store.js';

interface Pending<T> {
  fn: () => Promise<T>;
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
}

export class WriteBatcher {
  private queue: Array<Pending<unknown>> = [];
  private committing = false;

  constructor(
    private readonly store: Pick<Store, 'withWriteLock'>,
    /**
     * At most this many writes per transaction. SQLite runs a transaction body without
     * yielding to the event loop (every statement is synchronous), so a batch is also how
     * long calls wait: 32 reports are a few milliseconds.
     */
    private readonly maxBatch = 32,
  ) {}

  /** Runs `fn` inside a write transaction shared with the writes queued beside it. */
  write<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve, reject } as Pending<unknown>);
      if (!this.committing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.committing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        let values: unknown[] | undefined;
        try {
          values = await this.store.withWriteLock(async () => {
            const results: unknown[] = [];
            for (const item of batch) results.push(await item.fn());
            return results;
          });
        } catch (err) {
          if (batch.length === 1) batch[0]!.reject(err);
          else await this.oneByOne(batch);
        }
        if (values) batch.forEach((item, i) => item.resolve(values[i]));
        // Let the calls waiting for I/O (heartbeats) run before the next batch.
        if (this.queue.length > 0) await yieldToEventLoop();
      }
    } finally {
      this.committing = false;
    }
  }

  /** After a failed batch: each write alone, so only the failing one fails. */
  private async oneByOne(batch: Array<Pending<unknown>>): Promise<void> {
    for (const item of batch) {
      try {
        item.resolve(await this.store.withWriteLock(item.fn));
      } catch (err) {
        item.reject(err);
      }
    }
  }
}
