// The SQLite DeviceStateFeed: migration 6's triggers append every change to
// device_state_changes; caughtUp() reads what was appended since it last looked (one indexed
// range read, a few microseconds, made on every cached heartbeat). Its own connection, so the
// poll is synchronous and sees what any process committed, the CLI's writes included.
import Database from 'better-sqlite3';
import type { SqliteDb } from './db-sqlite.js';
import type { DeviceStateChangeListener, DeviceStateFeed } from './store.js';

/** Changes read per statement; a longer backlog is read page by page in the same look. */
const PAGE_SIZE = 1000;
/**
 * More unread changes than this at one look: treated as a change of every device. A wave's
 * start writes one change per device of the wave, and treating its 6,000 as "every device"
 * threw away the answers of the 4,000 devices it did not touch (2026-12-04: heartbeat cache
 * hits 45 % on SQLite during rollouts, 65 % on PostgreSQL, whose feed has no such bound).
 * Reading 20,000 rows and dropping as many entries takes a few milliseconds; beyond that,
 * starting over is cheaper than holding the event loop.
 */
const MAX_CHANGES_PER_LOOK = 20_000;
const PRUNE_INTERVAL_MS = 60_000;
/** Read rows are kept this long, for another process following the same file. */
const KEEP_MS = 10 * 60_000;

interface ChangeRow {
  seq: number;
  device_id: string | null;
}

export class SqliteDeviceStateFeed implements DeviceStateFeed {
  private readonly conn: Database.Database;
  private readonly poll: Database.Statement<[number], ChangeRow>;
  private readonly newest: Database.Statement<[], { seq: number }>;
  private lastSeq: number;
  private readonly pruneTimer: NodeJS.Timeout;
  private pruning: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly db: SqliteDb,
    private readonly onChange: DeviceStateChangeListener,
  ) {
    this.conn = new Database(db.raw.name, { fileMustExist: true });
    // A locked database (WAL recovery) answers at once; caughtUp() then says false.
    this.conn.pragma('busy_timeout = 0');
    this.poll = this.conn.prepare(`SELECT seq, device_id FROM device_state_changes WHERE seq > ? ORDER BY seq LIMIT ${PAGE_SIZE}`);
    this.newest = this.conn.prepare('SELECT COALESCE(MAX(seq), 0) AS seq FROM device_state_changes');
    // Nothing is cached yet: what came before the feed concerns nobody.
    this.lastSeq = this.newest.get()!.seq;
    this.pruneTimer = setInterval(() => {
      this.pruning = this.prune().catch(() => undefined);
    }, PRUNE_INTERVAL_MS);
    this.pruneTimer.unref();
  }

  /** The same for every device: the poll delivers every change, whichever device it concerns. */
  caughtUp(_deviceId?: string): boolean {
    if (this.closed) return false;
    for (let read = 0; ;) {
      let rows: ChangeRow[];
      try {
        rows = this.poll.all(this.lastSeq);
      } catch {
        // Pages already delivered stay delivered (lastSeq moved past them).
        return false;
      }
      if (rows.length === 0) return true;
      read += rows.length;
      // seq has no gaps (AUTOINCREMENT, serialized writers): a gap means rows this feed never
      // read were pruned (another process pruned, or this one slept past KEEP_MS).
      if (read > MAX_CHANGES_PER_LOOK || rows[0]!.seq !== this.lastSeq + 1) {
        this.onChange(null);
        this.lastSeq = Math.max(rows.at(-1)!.seq, this.newest.get()!.seq);
        return true;
      }
      for (const row of rows) this.onChange(row.device_id);
      this.lastSeq = rows.at(-1)!.seq;
      if (rows.length < PAGE_SIZE) return true;
    }
  }

  /** Drops rows this feed has read that are older than KEEP_MS. */
  async prune(now = Date.now()): Promise<number> {
    const cutoff = new Date(now - KEEP_MS).toISOString();
    const { changes } = await this.db.run('DELETE FROM device_state_changes WHERE seq <= ? AND at < ?', [this.lastSeq, cutoff]);
    return changes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pruneTimer);
    await this.pruning;
    this.conn.close();
  }
}
