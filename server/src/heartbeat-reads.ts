// Heartbeats that are not answered from memory read their device's state together. A wave
// start or a burst of HEALTHY reports drops thousands of kept answers at once; read one by one,
// each of those heartbeats cost two statements and a pooled connection, and on PostgreSQL they
// queued for the pool behind the wave's reports (docs/benchmarks.md: pool waits over 100 ms
// were most heartbeats over 100 ms). Here the reads that arrive while earlier ones are in
// flight wait for the next batch, two statements for up to MAX_BATCH devices: at a trickle a
// batch holds one heartbeat and costs what a single read did; under a burst the number of
// statements stops growing with the number of heartbeats.
import DataLoader from 'dataloader';
import type { HeartbeatState } from './store/index.js';

export interface HeartbeatReadsOptions {
  /** Batches reading at once (default 2: each holds two pooled connections on PostgreSQL). */
  concurrency?: number;
  /** Most devices in one batch (default MAX_BATCH). */
  maxBatch?: number;
  /** Called with the number of heartbeats each batch read for (metrics). */
  observeBatch?: (size: number) => void;
}

/** Keeps a batch's row set (one text array per column on PostgreSQL) and its answer small. */
const MAX_BATCH = 200;

export class HeartbeatReads {
  private readonly loader: DataLoader<string, HeartbeatState | undefined>;
  private readonly concurrency: number;
  /** Batches reading now, or dispatched and about to. */
  private running = 0;
  /** Dispatches of batches that are still taking heartbeats, in order. */
  private readonly queued: Array<() => void> = [];

  constructor(read: (spiffeIds: readonly string[]) => Promise<Map<string, HeartbeatState>>, options: HeartbeatReadsOptions = {}) {
    this.concurrency = Math.max(1, options.concurrency ?? 2);
    const observe = options.observeBatch;
    this.loader = new DataLoader<string, HeartbeatState | undefined>(
      async (spiffeIds) => {
        try {
          observe?.(spiffeIds.length);
          const states = await read(spiffeIds);
          return spiffeIds.map((id) => states.get(id));
        } finally {
          this.finished();
        }
      },
      {
        // Each heartbeat's answer is kept (or not) by the heartbeat cache under its own rule;
        // a second cache here would answer from a read the feed no longer vouches for.
        cache: false,
        maxBatchSize: options.maxBatch ?? MAX_BATCH,
        batchScheduleFn: (dispatch) => this.schedule(dispatch),
      },
    );
  }

  /**
   * The state of the certificate's device, read at or after this call (what the cache's
   * ticket, taken before, relies on); undefined when no device has that certificate.
   */
  read(spiffeId: string): Promise<HeartbeatState | undefined> {
    return this.loader.load(spiffeId);
  }

  /**
   * Called by DataLoader when a new batch opens. It reads at once (after the heartbeats of this
   * turn of the event loop joined it) when a slot is free; otherwise it goes on taking
   * heartbeats until a running batch finishes.
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
