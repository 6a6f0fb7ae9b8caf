// Group commit: writes that arrive while one batch is being committed are committed together
// in the next one, by one call of `apply` with all of them (status reports: a few statements
// for the whole batch, store.recordStatusReports). Every caller still gets its answer only
// after the transaction holding its write has committed (a status report is never
// acknowledged before it is durable), but a wave of thousands of reports costs one commit
// (one fsync, one lock round trip) and a few statements per batch instead of per report.
// The transaction is a withRowLocks one: on PostgreSQL it waits only for the rows (devices,
// rollouts) its writes lock, not for every other replica's writes.
//
// A batch whose writes fail is rare (a statement failed); then it is rolled back and each of
// its writes is applied again in a transaction of its own, so one failing write takes nothing
// else with it. The writes must therefore be safe to apply twice (status reports are: their
// sequence number makes a replay a no-op).
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Store } from './store.js';

interface Pending<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
}

export class WriteBatcher<I, O> {
  private queue: Array<Pending<I, O>> = [];
  private committing = false;

  constructor(
    private readonly store: Pick<Store, 'withRowLocks'>,
    /** Writes the items inside the write transaction; one result per item, in order. */
    private readonly apply: (items: I[]) => Promise<O[]>,
    /**
     * At most this many writes per transaction. SQLite runs a transaction body without
     * yielding to the event loop (every statement is synchronous), so a batch is also how
     * long calls wait: 32 reports are a few milliseconds.
     */
    private readonly maxBatch = 32,
  ) {}

  /** Writes `item` in a transaction shared with the writes queued beside it; resolves after its commit. */
  write(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      // Fire-and-forget: drain() settles every write's own promise and never rejects.
      if (!this.committing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.committing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        let results: O[] | undefined;
        let applyFailed = false;
        try {
          results = await this.store.withRowLocks(() =>
            this.applyChecked(batch.map((p) => p.item)).catch((err: unknown) => {
              applyFailed = true;
              throw err;
            }),
          );
        } catch (err) {
          // Only a write that failed is worth trying alone; a transaction that could not begin
          // or commit (the database is gone) fails every write of the batch the same way.
          if (applyFailed && batch.length > 1) await this.oneByOne(batch);
          else for (const p of batch) p.reject(err);
        }
        if (results) batch.forEach((p, i) => p.resolve(results[i]!));
        // Let the calls waiting for I/O (heartbeats) run before the next batch.
        if (this.queue.length > 0) await yieldToEventLoop();
      }
    } finally {
      this.committing = false;
    }
  }

  private async applyChecked(items: I[]): Promise<O[]> {
    const results = await this.apply(items);
    if (results.length !== items.length) throw new Error(`write batch: ${results.length} results for ${items.length} writes`);
    return results;
  }

  /** After a failed batch: each write alone, so only the failing one fails. */
  private async oneByOne(batch: Array<Pending<I, O>>): Promise<void> {
    for (const p of batch) {
      try {
        p.resolve((await this.store.withRowLocks(() => this.applyChecked([p.item])))[0]!);
      } catch (err) {
        p.reject(err);
      }
    }
  }
}
