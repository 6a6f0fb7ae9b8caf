// Device log requests, for SqlStore.
import type { Db } from './db.js';
import { flatTable, num, numOrNull, str, strOrNull } from './sql-rows.js';
import type { LogRequestRecord, LogRequestStore, LogRequestWithDevice } from './store.js';

const logRequests = flatTable<LogRequestRecord>('log_requests', {
  id: str,
  deviceId: str,
  since: strOrNull,
  until: strOrNull,
  maxBytes: num,
  requestedAt: str,
  requestedBy: str,
  fulfilledAt: strOrNull,
  sizeBytes: numOrNull,
  sha256: strOrNull,
});

export class SqlLogRequests implements LogRequestStore {
  constructor(private readonly db: Db) {}

  async insert(q: LogRequestRecord): Promise<void> {
    await logRequests.insert(this.db, q);
  }

  async get(id: string): Promise<LogRequestRecord | undefined> {
    const r = await this.db.get('SELECT * FROM log_requests WHERE id = ?', [id]);
    return r ? logRequests.fromRow(r) : undefined;
  }

  async list(filter: { fleet?: string; deviceName?: string } = {}): Promise<LogRequestWithDevice[]> {
    const rows = await this.db.all(
      `SELECT l.*, d.fleet AS fleet, d.name AS device_name FROM log_requests l JOIN devices d ON d.id = l.device_id
       WHERE (CAST(@fleet AS TEXT) IS NULL OR d.fleet = @fleet) AND (CAST(@deviceName AS TEXT) IS NULL OR d.name = @deviceName)
       ORDER BY l.requested_at, l.rowid`,
      { fleet: filter.fleet ?? null, deviceName: filter.deviceName ?? null },
    );
    return rows.map((r) => ({ ...logRequests.fromRow(r), fleet: str(r.fleet), deviceName: str(r.device_name) }));
  }

  async listPending(deviceId: string): Promise<LogRequestRecord[]> {
    return (await this.db.all('SELECT * FROM log_requests WHERE device_id = ? AND fulfilled_at IS NULL ORDER BY requested_at, rowid', [deviceId])).map(logRequests.fromRow);
  }

  async fulfill(id: string, result: { sizeBytes: number; sha256: string; now: string }): Promise<boolean> {
    const { changes } = await this.db.run('UPDATE log_requests SET fulfilled_at = ?, size_bytes = ?, sha256 = ? WHERE id = ? AND fulfilled_at IS NULL', [
      result.now,
      result.sizeBytes,
      result.sha256,
      id,
    ]);
    return changes === 1;
  }
}
