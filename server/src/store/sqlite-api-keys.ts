// API keys and the operator read models, for SqliteStore (migration 4). Single statements;
// callers group writes that must go together under Store.withWriteLock.
import type Database from 'better-sqlite3';
import { json, num, str, strOrNull, type Row } from './sqlite-rows.js';
import type {
  ApiKeyRecord,
  ApiKeyStore,
  DeviceHistoryRecord,
  DeviceListFilter,
  DeviceListRow,
  OperatorViewStore,
  Page,
} from './store-api.js';
import type { ArtifactRecord, DeviceRecord } from './store.js';

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

export class SqliteApiKeys implements ApiKeyStore {
  constructor(private readonly db: Database.Database) {}

  insert(k: ApiKeyRecord): boolean {
    // The partial unique index on live names decides; OR IGNORE turns a clash into "false".
    return (
      this.db
        .prepare(
          `INSERT OR IGNORE INTO api_keys (id, name, key_sha256, fleet, permissions, approve, created_at, created_by, revoked_at, revoked_by)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(k.id, k.name, k.keySha256, k.fleet, JSON.stringify(k.permissions), k.approve ? 1 : 0, k.createdAt, k.createdBy, k.revokedAt, k.revokedBy)
        .changes === 1
    );
  }

  get(id: string): ApiKeyRecord | undefined {
    const r = this.db.prepare('SELECT * FROM api_keys WHERE id = ?').get(id) as Row | undefined;
    return r ? apiKeyFromRow(r) : undefined;
  }

  getByHash(keySha256: string): ApiKeyRecord | undefined {
    const r = this.db.prepare('SELECT * FROM api_keys WHERE key_sha256 = ?').get(keySha256) as Row | undefined;
    return r ? apiKeyFromRow(r) : undefined;
  }

  list(): ApiKeyRecord[] {
    return (this.db.prepare('SELECT * FROM api_keys ORDER BY created_at, rowid').all() as Row[]).map(apiKeyFromRow);
  }

  revoke(id: string, now: string, actor: string): boolean {
    return this.db.prepare('UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL').run(now, actor, id).changes === 1;
  }

  countLive(): number {
    return num((this.db.prepare('SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL').get() as Row).n);
  }
}

// Duplicated from sqlite-store.ts on purpose (kept private there): the listing decodes the
// same columns.
function deviceFromRow(r: Row): DeviceRecord {
  return {
    id: str(r.id),
    spiffeId: str(r.spiffe_id),
    fleet: str(r.fleet),
    name: str(r.name),
    hardware: json(r.hardware, null),
    agentVersion: strOrNull(r.agent_version),
    tags: json(r.tags, {}),
    capabilities: json(r.capabilities, []),
    heartbeatIntervalSeconds: r.heartbeat_interval_seconds === null ? null : num(r.heartbeat_interval_seconds),
    createdAt: str(r.created_at),
    registeredAt: strOrNull(r.registered_at),
    lastSeenAt: strOrNull(r.last_seen_at),
    lastReportSeq: num(r.last_report_seq),
    decommissionedAt: strOrNull(r.decommissioned_at),
    offboardNotifiedAt: strOrNull(r.offboard_notified_at),
  };
}

function artifactFromRow(r: Row): ArtifactRecord {
  return {
    id: str(r.id),
    name: str(r.name),
    version: str(r.version),
    kind: str(r.kind),
    fileName: str(r.file_name),
    targetPath: str(r.target_path),
    sha256: str(r.sha256),
    length: num(r.length),
    spec: json(r.spec, {}),
    manifest: json(r.manifest, null),
    createdAt: str(r.created_at),
  };
}

// A device is online when it is not decommissioned and its last contact is within three of
// its heartbeat intervals (its own, or the server's default). Timestamps are ISO 8601 UTC,
// which julianday() reads (PostgreSQL: now() - last_seen_at <= interval).
const ONLINE_SQL = `(d.decommissioned_at IS NULL AND d.last_seen_at IS NOT NULL AND
  (julianday(@now) - julianday(d.last_seen_at)) * 86400.0 <= 3 * COALESCE(d.heartbeat_interval_seconds, @defaultInterval))`;

export class SqliteOperatorViews implements OperatorViewStore {
  constructor(private readonly db: Database.Database) {}

  listDevices(filter: DeviceListFilter, page: Page): { rows: DeviceListRow[]; total: number } {
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
      return `AND EXISTS (SELECT 1 FROM json_each(d.tags) t WHERE t.key = @tagKey${i} AND t.value = @tagValue${i})`;
    });
    const where = `WHERE (@fleet IS NULL OR d.fleet = @fleet) ${tagClauses.join(' ')}
      AND (@online IS NULL OR ${ONLINE_SQL} = @online)`;
    const total = num((this.db.prepare(`SELECT COUNT(*) AS n FROM devices d ${where}`).get(params) as Row).n);
    const rows = this.db
      .prepare(`SELECT d.*, ${ONLINE_SQL} AS online FROM devices d ${where} ORDER BY d.fleet, d.name LIMIT @limit OFFSET @offset`)
      .all(params) as Row[];
    return { rows: rows.map((r) => ({ device: deviceFromRow(r), online: num(r.online) === 1 })), total };
  }

  isOnline(deviceId: string, defaultHeartbeatIntervalSeconds: number, now: string): boolean {
    const r = this.db
      .prepare(`SELECT ${ONLINE_SQL} AS online FROM devices d WHERE d.id = @id`)
      .get({ id: deviceId, now, defaultInterval: defaultHeartbeatIntervalSeconds }) as Row | undefined;
    return r !== undefined && num(r.online) === 1;
  }

  listDeviceHistory(deviceId: string, limit: number): DeviceHistoryRecord[] {
    const rows = this.db
      .prepare(
        `SELECT s.*, a.rollout_id AS rollout_id, ar.name AS artifact_name, ar.version AS artifact_version
         FROM status_reports s JOIN assignments a ON a.id = s.assignment_id JOIN artifacts ar ON ar.id = a.artifact_id
         WHERE s.device_id = ? ORDER BY s.sequence DESC LIMIT ?`,
      )
      .all(deviceId, limit) as Row[];
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

  listArtifacts(filter: { name?: string; kind?: string }, page: Page): { rows: ArtifactRecord[]; total: number } {
    const params = { name: filter.name ?? null, kind: filter.kind ?? null, limit: page.limit, offset: page.offset };
    const where = 'WHERE (@name IS NULL OR name = @name) AND (@kind IS NULL OR kind = @kind)';
    const total = num((this.db.prepare(`SELECT COUNT(*) AS n FROM artifacts ${where}`).get(params) as Row).n);
    const rows = this.db
      .prepare(`SELECT * FROM artifacts ${where} ORDER BY name, created_at DESC, rowid DESC LIMIT @limit OFFSET @offset`)
      .all(params) as Row[];
    return { rows: rows.map(artifactFromRow), total };
  }
}
