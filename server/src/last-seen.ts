// Heartbeat liveness in batches. A heartbeat used to cost one write transaction (and, on
// SQLite with synchronous = FULL, one fsync) on the event loop; now it records the time in
// memory and a flush writes every device seen since the last one in a single transaction,
// at most `intervalMs` later (issue #8: "flushed within 1 s") and once more on shutdown.
// Only liveness is batched: status reports are committed before they are acknowledged.
import type { Logger } from './log.js';
import type { Store } from './store/index.js';

export const DEFAULT_LAST_SEEN_FLUSH_MS = 1000;

export class LastSeenBatcher {
  private pending = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly intervalMs = DEFAULT_LAST_SEEN_FLUSH_MS,
  ) {}

  /** Records that `deviceId` was seen at `at` (ISO 8601); the latest time wins. */
  touch(deviceId: string, at: string): void {
    const previous = this.pending.get(deviceId);
    if (previous === undefined || previous < at) this.pending.set(deviceId, at);
    if (!this.timer && !this.stopped) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.intervalMs);
      this.timer.unref();
    }
  }

  /** Devices waiting for the next flush. */
  get size(): number {
    return this.pending.size;
  }

  /** Writes everything recorded so far. A failed batch is kept and merged into the next one. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    this.flushing = (async () => {
      try {
        await this.store.touchLastSeen([...batch].map(([deviceId, at]) => ({ deviceId, at })));
      } catch (err) {
        this.logger.error({ err, devices: batch.size }, 'writing last-seen times failed; retrying with the next batch');
        for (const [deviceId, at] of batch) this.touch(deviceId, at);
      }
    })();
    try {
      await this.flushing;
    } finally {
      this.flushing = undefined;
    }
  }

  /** Flushes what is pending and stops scheduling flushes (shutdown). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}
