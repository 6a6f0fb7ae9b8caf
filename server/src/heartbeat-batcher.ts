// What heartbeats write, in batches. A heartbeat used to cost one write transaction (and, on
// SQLite with synchronous = FULL, one fsync) on the event loop; now it records liveness, and
// an installed set that differs from the stored one, in memory, and a flush writes everything
// seen since the last one, at most `intervalMs` later (issue #8: "flushed within 1 s") and
// once more on shutdown. A changed installed set used to be written before the heartbeat was
// answered, under the write lock: during a wave those heartbeats waited behind status-report
// batches (p50 250 ms, 40-295 per 10,000-device rollout; docs/benchmarks.md).
// Both are safe to defer: every heartbeat carries the whole installed set and is compared with
// the digest stored at that time, so a lost or skipped write is made by the next heartbeat.
// Status reports are not batched here: they are committed before they are acknowledged.
import type { Logger } from './log.js';
import type { InstalledSetWrite, Store } from './store/index.js';

export const DEFAULT_HEARTBEAT_FLUSH_MS = 1000;

export class HeartbeatBatcher {
  private seen = new Map<string, string>();
  private installedSets = new Map<string, InstalledSetWrite>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly intervalMs = DEFAULT_HEARTBEAT_FLUSH_MS,
  ) {}

  /** Records that `deviceId` was seen at `at` (ISO 8601); the latest time wins. */
  touch(deviceId: string, at: string): void {
    const previous = this.seen.get(deviceId);
    if (previous === undefined || previous < at) this.seen.set(deviceId, at);
    this.schedule();
  }

  /**
   * Queues the installed set a heartbeat listed; `expectedDigest` is the stored digest it was
   * compared with. The latest heartbeat of a device wins.
   */
  installed(entry: InstalledSetWrite): void {
    const previous = this.installedSets.get(entry.deviceId);
    if (previous === undefined || previous.at <= entry.at) this.installedSets.set(entry.deviceId, entry);
    this.schedule();
  }

  /** Devices waiting for the next flush (liveness, installed sets). */
  get size(): { seen: number; installed: number } {
    return { seen: this.seen.size, installed: this.installedSets.size };
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Writes everything recorded so far. A failed batch is kept and merged into the next one. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.seen.size === 0 && this.installedSets.size === 0) return;
    const seen = this.seen;
    const installedSets = this.installedSets;
    this.seen = new Map();
    this.installedSets = new Map();
    this.flushing = (async () => {
      // Each half is retried on its own: a failure of one delays neither.
      if (installedSets.size > 0) {
        try {
          await this.store.replaceInstalledSets([...installedSets.values()]);
        } catch (err) {
          this.logger.error({ err, devices: installedSets.size }, 'writing installed sets failed; retrying with the next batch');
          for (const entry of installedSets.values()) if (!this.installedSets.has(entry.deviceId)) this.installed(entry);
        }
      }
      if (seen.size > 0) {
        try {
          await this.store.touchLastSeen([...seen].map(([deviceId, at]) => ({ deviceId, at })));
        } catch (err) {
          this.logger.error({ err, devices: seen.size }, 'writing last-seen times failed; retrying with the next batch');
          for (const [deviceId, at] of seen) this.touch(deviceId, at);
        }
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
