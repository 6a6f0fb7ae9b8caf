// Heartbeat answers kept in memory. Almost every heartbeat of a settled fleet gets the same
// answer as the one before, and reading it (the device row, its desired assignments) was most
// of a heartbeat's cost beyond gRPC itself: on PostgreSQL two round trips of node-postgres at
// 110-150 us of CPU each (docs/benchmarks.md). The database says when an answer may have
// changed (DeviceStateFeed: migration 6's triggers, whoever wrote), so an answer is used only
// while the feed is caught up and no change to its device has been seen since it was read.
import type { AssignmentMessage, HeartbeatResponse } from '@meshanics/core/contract';
import { DEFAULT_HEARTBEAT_CACHE_SIZE } from '../config/defaults.js';
import type { DeviceStateFeed } from '../store/index.js';

/** What a heartbeat of a registered, not decommissioned device is answered from. */
export interface HeartbeatView {
  deviceId: string;
  /** Digest of the installed set on the device row, compared with what the device reports. */
  installedDigest: string | null;
  assignments: AssignmentMessage[];
  logRequests: HeartbeatResponse['logRequests'];
  nextHeartbeatSeconds: number;
}

export interface HeartbeatCacheOptions {
  /** Most answers kept (the oldest go first). Default DEFAULT_HEARTBEAT_CACHE_SIZE. */
  maxEntries?: number;
  /**
   * An answer is read again after this long even without a change seen (default 10 min): a
   * bound on how long a write the triggers do not cover could go unnoticed.
   */
  maxAgeMs?: number;
  now?: () => number;
}

/**
 * A lookup's result. `view` when the cache had a usable answer; otherwise `ticket`, to give
 * back to store() with the answer read from the database (undefined: do not store it).
 */
export interface Lookup {
  view?: HeartbeatView;
  ticket?: number;
  /** The certificate's device when known (from an answer kept before): its reads can start together. */
  deviceId?: string;
}

interface Entry {
  deviceId: string;
  /** Undefined once its device changed: the entry still says which device the certificate is. */
  view?: HeartbeatView;
  readAt: number;
}

export interface HeartbeatCacheStats {
  hits: number;
  misses: number;
  /** Lookups made while the feed was not caught up (answered from the database). */
  bypassed: number;
  entries: number;
}

/**
 * Changes remembered one by one: a read that began before the oldest of them is not kept.
 * Reads take milliseconds, so this covers every read in flight but under extreme churn.
 */
const CHANGES_REMEMBERED = 4096;

export class HeartbeatCache {
  /** SPIFFE ID -> entry, oldest first. Lookups name certificates, changes name devices. */
  private readonly entries = new Map<string, Entry>();
  private readonly byDevice = new Map<string, string>();
  /** Advances on every change seen; a lookup's ticket is the epoch it was made at. */
  private epoch = 0;
  /** The epoch of each device's latest change seen, oldest first, at most CHANGES_REMEMBERED. */
  private readonly changedAt = new Map<string, number>();
  /** Changes up to this epoch are no longer remembered one by one (or concerned every device). */
  private forgottenUpTo = 0;
  private feed: DeviceStateFeed | undefined;
  private readonly maxEntries: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  private readonly counts = { hits: 0, misses: 0, bypassed: 0 };
  /** Entries holding an answer (the others only remember their certificate's device). */
  private views = 0;

  constructor(options: HeartbeatCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? DEFAULT_HEARTBEAT_CACHE_SIZE;
    this.maxAgeMs = options.maxAgeMs ?? 10 * 60_000;
    this.now = options.now ?? Date.now;
  }

  /** The feed this cache trusts; until then every lookup is bypassed. */
  follow(feed: DeviceStateFeed): void {
    this.feed = feed;
  }

  /** The feed's listener: the answer of `deviceId` (null: of every device) may have changed. */
  readonly changed = (deviceId: string | null): void => {
    this.epoch++;
    if (deviceId === null) {
      this.entries.clear();
      this.byDevice.clear();
      this.changedAt.clear();
      this.views = 0;
      this.forgottenUpTo = this.epoch;
      return;
    }
    this.changedAt.delete(deviceId);
    this.changedAt.set(deviceId, this.epoch);
    if (this.changedAt.size > CHANGES_REMEMBERED) {
      const [oldest, at] = this.changedAt.entries().next().value!;
      this.changedAt.delete(oldest);
      this.forgottenUpTo = at;
    }
    const spiffeId = this.byDevice.get(deviceId);
    const entry = spiffeId === undefined ? undefined : this.entries.get(spiffeId);
    if (entry?.view) {
      delete entry.view;
      this.views--;
    }
  };

  lookup(spiffeId: string): Lookup {
    const entry = this.entries.get(spiffeId);
    // Delivers every change committed so far to changed() before anything is trusted. Only
    // the device's own changes matter when the certificate's device is known (PostgreSQL then
    // need not wait for another device's write to come back).
    if (!this.feed?.caughtUp(entry?.deviceId)) {
      this.counts.bypassed++;
      return {};
    }
    // Read again: caughtUp() may just have delivered changes that dropped it.
    const current = this.entries.get(spiffeId);
    const view = current?.view;
    if (view && this.now() - current.readAt < this.maxAgeMs) {
      this.counts.hits++;
      return { view };
    }
    this.counts.misses++;
    return current ? { ticket: this.epoch, deviceId: current.deviceId } : { ticket: this.epoch };
  }

  /** Keeps `view` unless its device (or every device) changed since the lookup that gave `ticket`. */
  store(ticket: number | undefined, spiffeId: string, view: HeartbeatView): void {
    if (ticket === undefined || ticket < this.forgottenUpTo || (this.changedAt.get(view.deviceId) ?? 0) > ticket) return;
    this.remove(spiffeId);
    // One certificate per device in here: changes name devices, so a second certificate of the
    // same device (its row's SPIFFE ID rewritten by hand) must not keep an entry of its own.
    const other = this.byDevice.get(view.deviceId);
    if (other !== undefined) this.remove(other);
    this.entries.set(spiffeId, { deviceId: view.deviceId, view, readAt: this.now() });
    this.byDevice.set(view.deviceId, spiffeId);
    this.views++;
    if (this.entries.size > this.maxEntries) this.remove(this.entries.keys().next().value!);
  }

  private remove(spiffeId: string): void {
    const entry = this.entries.get(spiffeId);
    if (!entry) return;
    this.entries.delete(spiffeId);
    if (entry.view) this.views--;
    if (this.byDevice.get(entry.deviceId) === spiffeId) this.byDevice.delete(entry.deviceId);
  }

  stats(): HeartbeatCacheStats {
    return { ...this.counts, entries: this.views };
  }
}
