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
import type { Logger } from '../observability/log.js';
import { installedDigest, type InstalledSetWrite, type Store } from '../store/index.js';

export const DEFAULT_HEARTBEAT_FLUSH_MS = 1000;

/** The installed set a heartbeat listed, and the stored digest it was compared with. */
export interface HeartbeatInstalled {
  set: InstalledSetWrite['installed'];
  digest: string;
  storedDigest: string | null;
}

export class HeartbeatBatcher {
  private seen = new Map<string, string>();
  private installedSets = new Map<string, InstalledSetWrite>();
  /** The sets of the flush under way, until it is done. */
  private writing = new Map<string, InstalledSetWrite>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly intervalMs = DEFAULT_HEARTBEAT_FLUSH_MS,
  ) {}

  /** Records a heartbeat of `deviceId` received at `at` (ISO 8601) and the set it listed. */
  record(deviceId: string, at: string, installed: HeartbeatInstalled): void {
    this.see(deviceId, at);
    const queued = this.installedSets.get(deviceId);
    // Of two heartbeats of one device, the one received last decides.
    if (queued === undefined || queued.at <= at) {
      if (installed.digest !== installed.storedDigest) {
        this.installedSets.set(deviceId, { deviceId, installed: installed.set, expectedDigest: installed.storedDigest, at });
      } else {
        // The device lists the stored set again: a set it queued before must not overwrite
        // it. The compare-and-set cannot tell (the stored digest is still the one the older
        // heartbeat saw), so the older set is withdrawn, or, when its write is already under
        // way, followed by this one, which applies only if that write went through.
        this.installedSets.delete(deviceId);
        const inFlight = this.writing.get(deviceId);
        if (inFlight && inFlight.at <= at) {
          this.installedSets.set(deviceId, { deviceId, installed: installed.set, expectedDigest: installedDigest(inFlight.installed), at });
        }
      }
    }
    this.schedule();
  }

  /** Devices waiting for the next flush (liveness, installed sets). */
  get size(): { seen: number; installed: number } {
    return { seen: this.seen.size, installed: this.installedSets.size };
  }

  private see(deviceId: string, at: string): void {
    const seen = this.seen.get(deviceId);
    if (seen === undefined || seen < at) this.seen.set(deviceId, at);
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush(); // logs its own failures and keeps the batch for the next one: never rejects
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
    this.writing = installedSets;
    this.flushing = (async () => {
      // After shutdown nothing is retried: the devices' next heartbeats (to whichever server
      // answers them) are compared with what is stored and write both again.
      const retry = this.stopped ? 'lost at shutdown; the next heartbeats write them again' : 'retrying with the next batch';
      // Each half is retried on its own: a failure of one delays neither.
      if (installedSets.size > 0) {
        try {
          const written = await this.store.replaceInstalledSets([...installedSets.values()]);
          if (written.length < installedSets.size) {
            this.logger.info(
              { skipped: installedSets.size - written.length, written: written.length },
              "installed sets not written: the stored set changed after the heartbeat read it (a status report); the devices' next heartbeats are compared again",
            );
          }
        } catch (err) {
          this.logger.error({ err, devices: installedSets.size }, `writing installed sets failed; ${retry}`);
          if (!this.stopped) {
            // A set is kept unless a later heartbeat of its device already decided otherwise.
            for (const entry of installedSets.values())
              if (!this.installedSets.has(entry.deviceId) && !this.seen.has(entry.deviceId)) this.installedSets.set(entry.deviceId, entry);
            this.schedule();
          }
        } finally {
          this.writing = new Map();
        }
      }
      if (seen.size > 0) {
        try {
          await this.store.touchLastSeen([...seen].map(([deviceId, at]) => ({ deviceId, at })));
        } catch (err) {
          this.logger.error({ err, devices: seen.size }, `writing last-seen times failed; ${retry}`);
          if (!this.stopped) {
            for (const [deviceId, at] of seen) this.see(deviceId, at);
            this.schedule();
          }
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
