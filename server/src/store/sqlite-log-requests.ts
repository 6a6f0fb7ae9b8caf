import type Database from 'better-sqlite3';
import { num, numOrNull, str, strOrNull, type Row } from './sqlite-rows.js';
import type { LogRequestRecord, LogRequestStore, LogRequestWithDevice } from './store.js';

function logRequestFromRow(r: Row): LogRequestRecord {
  return {
    id: str(r.id),
    deviceId: str(r.device_id),
    since: strOrNull(r.since),
    until: strOrNull(r.until),
    maxBytes: num(r.max_bytes),
    requestedAt: str(r.requested_at),
    requestedBy: str(r.requested_by),
    fulfilledAt: strOrNull(r.fulfilled_at),
    sizeBytes: numOrNull(r.size_bytes),
    sha256: strOrNull(r.sha256),
  };
}

export class SqliteLogRequests implements LogRequestStore {
  constructor(private readonly db: Database.Database) {}

  insert(q: LogRequestRecord): void {
    this.db
      .prepare(
        `INSERT INTO log_requests (id, device_id, since, until, max_bytes, requested_at, requested_by, fulfilled_at, size_bytes, sha256)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(q.id, q.deviceId, q.since, q.until, q.maxBytes, q.requestedAt, q.requestedBy, q.fulfilledAt, q.sizeBytes, q.sha256);
  }

  get(id: string): LogRequestRecord | undefined {
    const r = this.db.prepare('SELECT * FROM log_requests WHERE id = ?').get(id) as Row | undefined;
    return r ? logRequestFromRow(r) : undefined;
  }

  list(filter: { fleet?: string; deviceName?: string } = {}): LogRequestWithDevice[] {
    const rows = this.db
      .prepare(
        `SELECT l.*, d.fleet AS fleet, d.name AS device_name FROM log_requests l JOIN devices d ON d.id = l.device_id
         WHERE (@fleet IS NULL OR d.fleet = @fleet) AND (@deviceName IS NULL OR d.name = @deviceName)
         ORDER BY l.requested_at, l.rowid`,
      )
      .all({ fleet: filter.fleet ?? null, deviceName: filter.deviceName ?? null }) as Row[];
    return rows.map((r) => ({ ...logRequestFromRow(r), fleet: str(r.fleet), deviceName: str(r.device_name) }));
  }

  listPending(deviceId: string): LogRequestRecord[] {
    return (
      this.db.prepare('SELECT * FROM log_requests WHERE device_id = ? AND fulfilled_at IS NULL ORDER BY requested_at, rowid').all(deviceId) as Row[]
    ).map(logRequestFromRow);
  }

  fulfill(id: string, result: { sizeBytes: number; sha256: string; now: string }): boolean {
    return (
      this.db
        .prepare('UPDATE log_requests SET fulfilled_at = ?, size_bytes = ?, sha256 = ? WHERE id = ? AND fulfilled_at IS NULL')
        .run(result.now, result.sizeBytes, result.sha256, id).changes === 1
    );
  }
}
