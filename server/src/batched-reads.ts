// Heartbeats that are not answered from memory go to the database together. A wave start or
// a burst of HEALTHY reports drops thousands of kept answers at once; read one by one, each of
// those heartbeats cost two statements and a pooled connection, and on PostgreSQL they queued
// for the pool behind the wave's reports (docs/benchmarks.md: pool waits over 100 ms were most
// heartbeats over 100 ms). Here the reads that arrive while earlier ones are in flight wait for
// the next batch, a few statements for up to MAX_BATCH callers: at a trickle a batch holds one
// read and costs what a single read did; under a burst the number of statements stops growing
// with the number of callers. (Status reports read this way too made heartbeats slower in the
// 10,000-device benchmark, docs/benchmarks.md, night; they keep their limit of four reads.)
import DataLoader from 'dataloader';

export interface BatchedReadsOptions {
  /** Batches reading at once (default 2). */
  concurrency?: number;
  /** Most callers in one batch (default MAX_BATCH). */
  maxBatch?: number;
  /** Called with the number of callers each batch read for (metrics). */
  observeBatch?: (size: number) => void;
}

/** Keeps a batch's row set (one text array per column on PostgreSQL) and its answer small. */
const MAX_BATCH = 200;

export class BatchedReads<K, V> {
  private readonly loader: DataLoader<K, V | undefined>;
  private readonly concurrency: number;
  /** Batches reading now, or dispatched and about to. */
  private running = 0;
  /** Dispatches of batches that are still taking callers, in order. */
  private readonly queued: Array<() => void> = [];

  /** `read` answers for each key, in the order of the keys (undefined: nothing found). */
  constructor(read: (keys: readonly K[]) => Promise<ReadonlyArray<V | undefined>>, options: BatchedReadsOptions = {}) {
    this.concurrency = Math.max(1, options.concurrency ?? 2);
    const observe = options.observeBatch;
    this.loader = new DataLoader<K, V | undefined>(
      async (keys) => {
        try {
          observe?.(keys.length);
          return await read(keys);
        } finally {
          this.finished();
        }
      },
      {
        // Every caller gets a read made at or after its call: the heartbeat cache's ticket rule
        // relies on it, and a cache here would answer from a read the feed no longer vouches for.
        cache: false,
        maxBatchSize: options.maxBatch ?? MAX_BATCH,
        batchScheduleFn: (dispatch) => this.schedule(dispatch),
      },
    );
  }

  /** What the database holds for `key`, read at or after this call. */
  read(key: K): Promise<V | undefined> {
    return this.loader.load(key);
  }

  /**
   * Called by DataLoader when a new batch opens. It reads at once (after the callers of this
   * turn of the event loop joined it) when a slot is free; otherwise it goes on taking callers
   * until a running batch finishes.
   */
  private schedule(dispatch: () => void): void {
    if (this.running < this.concurrency) {
      this.running++;
      setImmediate(dispatch);
    } else {
      this.queued.push(dispatch);
    }
  }

  private finished(): void {
    const next = this.queued.shift();
    // The slot passes to the next batch, or is given back.
    if (next) next();
    else this.running--;
  }
}
