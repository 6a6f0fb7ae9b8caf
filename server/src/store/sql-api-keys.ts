// API keys and the operator read models, for SqlStore (migration 4). Single statements;
// callers group writes that must go together under Store.withWriteLock.
import type { Db, Dialect } from './db.js';
import { artifactFromRow, deviceFromRow, json, num, str, strOrNull, type Row } from './sql-rows.js';
import type { ApiKeyRecord, ApiKeyStore, DeviceHistoryRecord, DeviceListFilter, DeviceListRow, OperatorViewStore, Page } from './store-api.js';
import type { ArtifactRecord } from './store.js';

function apiKeyFromRow(r: Row): ApiKeyRecord {
  return {
    id: str(r.id),
    name: str(r.name),
    keySha256: str(r.key_sha256),
    fleet: str(r.fleet),
    permissions: json(r.permissions, []),
    approve: num(r.approve) === 1,
    createdAt: str(r.created_at),
    createdBy: str(r.created_by),
    revokedAt: strOrNull(r.revoked_at),
    revokedBy: strOrNull(r.revoked_by),
  };
}

export class SqlApiKeys implements ApiKeyStore {
  constructor(private readonly db: Db) {}

  async insert(k: ApiKeyRecord): Promise<boolean> {
    // The partial unique index on live names decides; DO NOTHING turns a clash into "false".
    const { changes } = await this.db.run(
      `INSERT INTO api_keys (id, name, key_sha256, fleet, permissions, approve, created_at, created_by, revoked_at, revoked_by)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      [k.id, k.name, k.keySha256, k.fleet, JSON.stringify(k.permissions), k.approve ? 1 : 0, k.createdAt, k.createdBy, k.revokedAt, k.revokedBy],
    );
    return changes === 1;
  }

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    const r = await this.db.get('SELECT * FROM api_keys WHERE id = ?', [id]);
    return r ? apiKeyFromRow(r) : undefined;
  }

  async getByHash(keySha256: string): Promise<ApiKeyRecord | undefined> {
    const r = await this.db.get('SELECT * FROM api_keys WHERE key_sha256 = ?', [keySha256]);
    return r ? apiKeyFromRow(r) : undefined;
  }

  async list(): Promise<ApiKeyRecord[]> {
    return (await this.db.all('SELECT * FROM api_keys ORDER BY created_at, rowid')).map(apiKeyFromRow);
  }

  async revoke(id: string, now: string, actor: string): Promise<boolean> {
    return (await this.db.run('UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL', [now, actor, id])).changes === 1;
  }

  async countLive(): Promise<number> {
    return num((await this.db.get('SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL'))!.n);
  }
}

// A device is online when it is not decommissioned and its last contact is within three of
// its heartbeat intervals (its own, or the server's default). Timestamps are ISO 8601 UTC
// text, which SQLite's julianday() and PostgreSQL's timestamptz both read. 1 or 0 on both.
function onlineSql(dialect: Dialect): string {
  const age =
    dialect === 'sqlite' ? '(julianday(@now) - julianday(d.last_seen_at)) * 86400.0' : 'EXTRACT(EPOCH FROM (CAST(@now AS timestamptz) - CAST(d.last_seen_at AS timestamptz)))';
  return `(CASE WHEN d.decommissioned_at IS NULL AND d.last_seen_at IS NOT NULL AND
  ${age} <= 3 * COALESCE(d.heartbeat_interval_seconds, CAST(@defaultInterval AS INTEGER)) THEN 1 ELSE 0 END)`;
}

/** The device's tag `key` is `value` (tags are a JSON object in a text column). */
function tagSql(dialect: Dialect, key: string, value: string): string {
  return dialect === 'sqlite'
    ? `EXISTS (SELECT 1 FROM json_each(d.tags) t WHERE t.key = @${key} AND t.value = @${value})`
    : `(CAST(d.tags AS jsonb) ->> CAST(@${key} AS TEXT)) = CAST(@${value} AS TEXT)`;
}

export class SqlOperatorViews implements OperatorViewStore {
  private readonly online: string;

  constructor(private readonly db: Db) {
    this.online = onlineSql(db.dialect);
  }

  async listDevices(filter: DeviceListFilter, page: Page): Promise<{ rows: DeviceListRow[]; total: number }> {
    const ONLINE_SQL = this.online;
    const params: Record<string, unknown> = {
      now: filter.now,
      defaultInterval: filter.defaultHeartbeatIntervalSeconds,
      fleet: filter.fleet ?? null,
      online: filter.online === undefined ? null : filter.online ? 1 : 0,
      limit: page.limit,
      offset: page.offset,
    };
    const tagClauses = (filter.tags ?? []).map(([k, v], i) => {
      params[`tagKey${i}`] = k;
      params[`tagValue${i}`] = v;
      return `AND ${tagSql(this.db.dialect, `tagKey${i}`, `tagValue${i}`)}`;
    });
    const where = `WHERE (CAST(@fleet AS TEXT) IS NULL OR d.fleet = @fleet) ${tagClauses.join(' ')}
      AND (CAST(@online AS INTEGER) IS NULL OR ${ONLINE_SQL} = @online)`;
    const { limit: _l, offset: _o, ...countParams } = params;
    const total = num((await this.db.get(`SELECT COUNT(*) AS n FROM devices d ${where}`, countParams))!.n);
    const rows = await this.db.all(`SELECT d.*, ${ONLINE_SQL} AS online FROM devices d ${where} ORDER BY d.fleet, d.name LIMIT @limit OFFSET @offset`, params);
    return { rows: rows.map((r) => ({ device: deviceFromRow(r), online: num(r.online) === 1 })), total };
  }

  async isOnline(deviceId: string, defaultHeartbeatIntervalSeconds: number, now: string): Promise<boolean> {
    const r = await this.db.get(`SELECT ${this.online} AS online FROM devices d WHERE d.id = @id`, {
      id: deviceId,
      now,
      defaultInterval: defaultHeartbeatIntervalSeconds,
    });
    return r !== undefined && num(r.online) === 1;
  }

  async listDeviceHistory(deviceId: string, limit: number): Promise<DeviceHistoryRecord[]> {
    const rows = await this.db.all(
      `SELECT s.*, a.rollout_id AS rollout_id, ar.name AS artifact_name, ar.version AS artifact_version
       FROM status_reports s JOIN assignments a ON a.id = s.assignment_id JOIN artifacts ar ON ar.id = a.artifact_id
       WHERE s.device_id = ? ORDER BY s.sequence DESC LIMIT ?`,
      [deviceId, limit],
    );
    return rows.map((r) => ({
      sequence: num(r.sequence),
      assignmentId: str(r.assignment_id),
      rolloutId: strOrNull(r.rollout_id),
      artifactName: str(r.artifact_name),
      artifactVersion: str(r.artifact_version),
      state: str(r.state),
      reason: str(r.reason),
      bytesDone: num(r.bytes_done),
      bytesTotal: num(r.bytes_total),
      deviceTime: str(r.device_time),
      receivedAt: str(r.received_at),
    }));
  }

  async listArtifacts(filter: { name?: string; kind?: string; fleet?: string; visibleTo?: string }, page: Page): Promise<{ rows: ArtifactRecord[]; total: number }> {
    const params = { name: filter.name ?? null, kind: filter.kind ?? null, fleet: filter.fleet ?? null, visibleTo: filter.visibleTo ?? null };
    const where = `WHERE withdrawn_at IS NULL AND (CAST(@name AS TEXT) IS NULL OR name = @name) AND (CAST(@kind AS TEXT) IS NULL OR kind = @kind)
      AND (CAST(@fleet AS TEXT) IS NULL OR fleet = @fleet) AND (CAST(@visibleTo AS TEXT) IS NULL OR fleet = @visibleTo OR fleet = '*')`;
    const total = num((await this.db.get(`SELECT COUNT(*) AS n FROM artifacts ${where}`, params))!.n);
    const rows = await this.db.all(`SELECT * FROM artifacts ${where} ORDER BY name, created_at DESC, rowid DESC LIMIT @limit OFFSET @offset`, {
      ...params,
      limit: page.limit,
      offset: page.offset,
    });
    return { rows: rows.map((r) => artifactFromRow(r)), total };
  }
}
