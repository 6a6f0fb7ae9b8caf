// Group commit: write transactions that arrive while one is being committed are committed
// together in the next one, each in its own savepoint. Every caller still gets its answer
// only after the transaction holding its write has committed (a status report is never
// acknowledged before it is durable), but a wave of thousands of reports costs one commit
// (and one fsync, one lock round trip) per batch instead of one per report.
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
        const outcomes: Array<{ ok: true; value: unknown } | { ok: false; err: unknown }> = [];
        try {
          await this.store.withWriteLock(async () => {
            for (const item of batch) {
              try {
                // Nested: a savepoint, so one failing write leaves the others of its batch.
                outcomes.push({ ok: true, value: await this.store.withWriteLock(item.fn) });
              } catch (err) {
                outcomes.push({ ok: false, err });
              }
            }
          });
        } catch (err) {
          // The commit itself failed: nothing of the batch is stored.
          for (const item of batch) item.reject(err);
          continue;
        }
        batch.forEach((item, i) => {
          const o = outcomes[i]!;
          if (o.ok) item.resolve(o.value);
          else item.reject(o.err);
        });
        // Let the calls waiting for I/O (heartbeats) run before the next batch.
        if (this.queue.length > 0) await yieldToEventLoop();
      }
    } finally {
      this.committing = false;
    }
  }
}
