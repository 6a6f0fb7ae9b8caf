// The PostgreSQL DeviceStateFeed: one connection LISTENs on migration 6's channel, so an
// unchanged heartbeat costs no query at all, on every replica.
//
// NOTIFY arrives after the commit, asynchronously. For other replicas' writes that is the
// usual propagation delay (milliseconds). For this process's own writes it would let a
// heartbeat that follows an operator's request read the old answer; so every transaction
// this process commits ends with a fence (a NOTIFY of our own, its last statement before
// COMMIT), and the feed is not caught up until each fence has come back: a transaction's
// notifications arrive in the order it sent them, so by then the write's own have too.
//
// A fence holds back only the devices its transaction announced (migration 7 records them in
// a transaction-local setting, read by the fence's statement): while a batch of status reports
// commits, the rest of the fleet's heartbeats keep using their kept answers. A transaction
// that announced nothing sends no fence at all.
import * as crypto from 'node:crypto';
import pg from 'pg';
import type { PostgresDb, WriteWatcher } from './db-postgres.js';
import { DEVICE_STATE_CHANNEL } from './migration-6.js';
import { DEVICE_STATE_CHANGED_SETTING } from './migration-7.js';
import type { DeviceStateChangeListener, DeviceStateFeed, DeviceStateFeedOptions } from './store.js';

/** A fence not back after this long (its query failed silently): treated as a change of every device. */
const FENCE_TIMEOUT_MS = 10_000;
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 30_000;
const FENCE_PREFIX = 'fence:';

/** The fence on its own, after an autocommit write. The token is ours (a UUID and a counter): nothing to quote. */
function fenceSql(token: string): string {
  return `SELECT pg_notify('${DEVICE_STATE_CHANNEL}', '${FENCE_PREFIX}${token}')`;
}

/**
 * The fence as a committing transaction's last statement: it returns the devices the
 * transaction announced (',id,id', '*' or '') and notifies only when there are any.
 */
function committingFenceSql(token: string): string {
  return `SELECT s.changed, CASE WHEN s.changed <> '' THEN pg_notify('${DEVICE_STATE_CHANNEL}', '${FENCE_PREFIX}${token}') END AS fence
    FROM (SELECT coalesce(current_setting('${DEVICE_STATE_CHANGED_SETTING}', true), '') AS changed) AS s`;
}

/** Which devices an unsettled fence holds back. */
type FenceScope = '*' | ReadonlySet<string>;
const NO_DEVICE: FenceScope = new Set<string>();

interface Unsettled {
  timeout: NodeJS.Timeout;
  /**
   * A committing transaction's fence holds back no device until COMMIT has returned: until
   * then its write has not finished, and a heartbeat meanwhile may get the answer from before
   * it. An autocommit write's fence, sent after the write, holds back every device.
   */
  scope: FenceScope;
  /** From fence() until committed() or unsent(): its transaction's COMMIT may be in flight. */
  committing: boolean;
}

export class PostgresDeviceStateFeed implements DeviceStateFeed, WriteWatcher {
  private client: pg.Client | undefined;
  private following = false;
  private closed = false;
  private readonly instance = crypto.randomUUID();
  private fences = 0;
  /** Fences sent (or about to be) and not yet back, with their timeouts and scopes. */
  private readonly unsettled = new Map<string, Unsettled>();
  /** Fences given up (timed out, connection lost) while their COMMIT was in flight. */
  private readonly abandoned = new Set<string>();
  private reconnectMs = RECONNECT_MIN_MS;
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: PostgresDb,
    private readonly onChange: DeviceStateChangeListener,
    private readonly options: DeviceStateFeedOptions = {},
  ) {}

  /** Connects and LISTENs; a failure is reported and retried in the background, never thrown. */
  async start(): Promise<void> {
    this.db.setWriteWatcher(this);
    await this.connect();
  }

  caughtUp(deviceId?: string): boolean {
    if (!this.following) return false;
    for (const { scope } of this.unsettled.values()) {
      if (scope === '*' || (scope.size > 0 && (deviceId === undefined || scope.has(deviceId)))) return false;
    }
    return true;
  }

  // --- WriteWatcher (called by PostgresDb around every commit of this process)

  fence(): { token: string; sql: string } | undefined {
    // Not following: nothing cached is used until following again, which resets everything.
    if (!this.following) return undefined;
    const token = `${this.instance}:${++this.fences}`;
    const timeout = setTimeout(() => this.settle(token, true), FENCE_TIMEOUT_MS);
    timeout.unref();
    this.unsettled.set(token, { timeout, scope: NO_DEVICE, committing: true });
    return { token, sql: committingFenceSql(token) };
  }

  committed(token: string, changed: string): void {
    const fence = this.unsettled.get(token);
    if (fence === undefined) {
      // Back already: the LISTEN connection can read the fence before this one reads COMMIT's
      // answer, and the transaction's notifications came before it. Given up while COMMIT was
      // in flight (timed out, connection lost): the devices' notifications may still be on
      // their way, so nothing kept can be trusted.
      if (this.abandoned.delete(token) && changed !== '') this.onChange(null);
      return;
    }
    fence.committing = false;
    // Nothing announced: no fence was sent, nothing to wait for.
    if (changed === '') this.settle(token, false);
    else fence.scope = changed === '*' ? '*' : new Set(changed.split(',').filter((id) => id !== ''));
  }

  unsent(token: string, afterwards: boolean): void {
    this.abandoned.delete(token);
    const fence = this.unsettled.get(token);
    if (fence) fence.committing = false;
    if (!afterwards) {
      // The commit failed, or its outcome is unknown: assume it changed anything.
      this.settle(token, true);
      return;
    }
    // After an autocommit write, sent on its own: it commits after the write, so it arrives
    // after the write's notifications. Not flushed to disk first (it records nothing). What
    // the write announced is unknown here: every device waits for it.
    if (fence) fence.scope = '*';
    this.db.pool.query(`BEGIN; SET LOCAL synchronous_commit = off; ${fenceSql(token)}; COMMIT`).catch(() => this.settle(token, true));
  }

  private settle(token: string, lost: boolean): void {
    const fence = this.unsettled.get(token);
    if (fence === undefined) return;
    clearTimeout(fence.timeout);
    this.unsettled.delete(token);
    if (lost && fence.committing) this.abandoned.add(token);
    if (lost) this.onChange(null);
  }

  // --- the LISTEN connection

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.db.connectionString });
    client.on('notification', (msg) => this.notified(msg));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, undefined));
    this.client = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${DEVICE_STATE_CHANNEL}`);
    } catch (err) {
      this.lost(client, err);
      return;
    }
    if (this.closed || this.client !== client) return;
    // Whatever changed while nobody listened is unknown: everything cached goes.
    this.onChange(null);
    this.following = true;
    this.reconnectMs = RECONNECT_MIN_MS;
    this.options.onStatus?.({ following: true });
  }

  private notified(msg: pg.Notification): void {
    if (msg.channel !== DEVICE_STATE_CHANNEL) return;
    const payload = msg.payload ?? '*';
    if (payload.startsWith(FENCE_PREFIX)) {
      // Other replicas' fences come by too; only ours are waited for.
      this.settle(payload.slice(FENCE_PREFIX.length), false);
      return;
    }
    this.onChange(payload === '*' ? null : payload);
  }

  private lost(client: pg.Client, error: unknown): void {
    if (this.client !== client) return;
    this.client = undefined;
    const wasFollowing = this.following;
    this.following = false;
    for (const token of [...this.unsettled.keys()]) this.settle(token, true);
    this.onChange(null);
    client.removeAllListeners('end');
    client.on('error', () => undefined);
    void client.end().catch(() => undefined);
    if (this.closed) return;
    if (wasFollowing || error !== undefined) this.options.onStatus?.({ following: false, error });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connect(); // a failure comes back through lost(), which schedules the next attempt
    }, this.reconnectMs);
    this.reconnectTimer.unref();
    this.reconnectMs = Math.min(this.reconnectMs * 2, RECONNECT_MAX_MS);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.following = false;
    this.db.setWriteWatcher(undefined);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    for (const { timeout } of this.unsettled.values()) clearTimeout(timeout);
    this.unsettled.clear();
    this.abandoned.clear();
    const client = this.client;
    this.client = undefined;
    if (client) {
      client.removeAllListeners('end');
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
    }
  }
}
