import * as crypto from 'node:crypto';
import Database from 'better-sqlite3';
import { MeshError } from '../errors.js';
import { MIGRATIONS, type Migration } from './migrations.js';
import { SqliteCertificates, SqliteEnrollmentTokens } from './sqlite-enrollment.js';
import { SqliteLogRequests } from './sqlite-log-requests.js';
import { SqliteApiKeys, SqliteOperatorViews } from './sqlite-api-keys.js';
import { SqliteAudit } from './sqlite-audit.js';
import { SqliteGroups } from './sqlite-groups.js';
import { SqliteRollouts } from './sqlite-rollouts.js';
import { json, num, str, strOrNull, type Row } from './sqlite-rows.js';
import type {
  ArtifactRecord,
  AssignmentRecord,
  AuditEventRecord,
  AuditListFilter,
  DesiredArtifact,
  DeviceRecord,
  InstalledRecord,
  NewAuditEvent,
  NewStatusReport,
  StatusReportRecord,
  Store,
  DeviceProfile,
} from './store.js';

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

function artifactFromRow(r: Row, prefix = ''): ArtifactRecord {
  return {
    id: str(r[`${prefix}id`]),
    name: str(r[`${prefix}name`]),
    version: str(r[`${prefix}version`]),
    kind: str(r[`${prefix}kind`]),
    fileName: str(r[`${prefix}file_name`]),
    targetPath: str(r[`${prefix}target_path`]),
    sha256: str(r[`${prefix}sha256`]),
    length: num(r[`${prefix}length`]),
    spec: json(r[`${prefix}spec`], {}),
    manifest: json(r[`${prefix}manifest`], null),
    createdAt: str(r[`${prefix}created_at`]),
  };
}

function assignmentFromRow(r: Row): AssignmentRecord {
  return {
    id: str(r.id),
    deviceId: str(r.device_id),
    artifactId: str(r.artifact_id),
    artifactName: str(r.artifact_name),
    rolloutId: strOrNull(r.rollout_id),
    probe: json(r.probe, { type: '', spec: {}, timeoutSeconds: 0, attempts: 0, initialDelaySeconds: 0 }),
    state: str(r.state) as AssignmentRecord['state'],
    reason: str(r.reason),
    active: num(r.active) === 1,
    createdAt: str(r.created_at),
    updatedAt: str(r.updated_at),
  };
}

function reportFromRow(r: Row): StatusReportRecord {
  return {
    id: num(r.id),
    deviceId: str(r.device_id),
    assignmentId: str(r.assignment_id),
    sequence: num(r.sequence),
    state: str(r.state) as StatusReportRecord['state'],
    reason: str(r.reason),
    bytesDone: num(r.bytes_done),
    bytesTotal: num(r.bytes_total),
    deviceTime: str(r.device_time),
    receivedAt: str(r.received_at),
  };
}

const ARTIFACT_COLUMNS = ['id', 'name', 'version', 'kind', 'file_name', 'target_path', 'sha256', 'length', 'spec', 'created_at'];

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  readonly enrollmentTokens: SqliteEnrollmentTokens;
  readonly certificates: SqliteCertificates;
  readonly logRequests: SqliteLogRequests;
  readonly apiKeys: SqliteApiKeys;
  readonly operatorViews: SqliteOperatorViews;
  readonly groups: SqliteGroups;
  readonly rollouts: SqliteRollouts;
  private readonly audit: SqliteAudit;

  constructor(file: string, migrations: readonly Migration[] = MIGRATIONS) {
    this.db = new Database(file);
    // busy_timeout first: switching to WAL and migrating may wait for another process.
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('journal_mode = WAL');
    // FULL: a committed catalog row must not vanish after the TUF metadata that it follows
    // has been fsynced (publishing signs first, then commits the catalog).
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    try {
      this.migrate(migrations);
    } catch (err) {
      this.db.close();
      throw err;
    }
    // Created after migrating: their statements are prepared against the migrated schema.
    this.enrollmentTokens = new SqliteEnrollmentTokens(this.db);
    this.certificates = new SqliteCertificates(this.db);
    this.logRequests = new SqliteLogRequests(this.db);
    this.apiKeys = new SqliteApiKeys(this.db);
    this.operatorViews = new SqliteOperatorViews(this.db);
    const lock = <T>(fn: () => T): T => this.withWriteLock(fn);
    this.groups = new SqliteGroups(this.db, lock);
    this.rollouts = new SqliteRollouts(this.db, lock);
    this.audit = new SqliteAudit(this.db, lock);
  }

  private migrate(migrations: readonly Migration[]): void {
    // IMMEDIATE so two processes opening a fresh data dir at once cannot both apply v1.
    this.withWriteLock(() => {
      this.db.exec(
        'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
      );
      const applied = new Set(
        (this.db.prepare('SELECT version FROM schema_migrations').all() as Row[]).map((r) => num(r.version)),
      );
      const known = new Set(migrations.map((m) => m.version));
      const unknown = [...applied].filter((v) => !known.has(v));
      if (unknown.length > 0) {
        throw new MeshError(
          'MESH_ERR_STORE_SCHEMA_TOO_NEW',
          `database has migrations ${unknown.join(', ')} that this server does not know; upgrade the server`,
        );
      }
      for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
        if (applied.has(m.version)) continue;
        try {
          this.db.exec(m.sql);
          m.up?.(this.db);
        } catch (err) {
          throw new MeshError('MESH_ERR_STORE_MIGRATION_FAILED', `migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, {
            cause: err,
          });
        }
        this.db
          .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
          .run(m.version, m.name, new Date().toISOString());
      }
    });
  }

  withWriteLock<T>(fn: () => T): T {
    // better-sqlite3 turns a nested call into a savepoint of the outer transaction.
    return this.db.transaction(fn).immediate();
  }

  schemaVersion(): number {
    const row = this.db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as Row | undefined;
    return row?.v === null || row?.v === undefined ? 0 : num(row.v);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // --- devices

  getDeviceById(id: string): DeviceRecord | undefined {
    const r = this.db.prepare('SELECT * FROM devices WHERE id = ?').get(id) as Row | undefined;
    return r ? deviceFromRow(r) : undefined;
  }

  getDeviceBySpiffeId(spiffeId: string): DeviceRecord | undefined {
    const r = this.db.prepare('SELECT * FROM devices WHERE spiffe_id = ?').get(spiffeId) as Row | undefined;
    return r ? deviceFromRow(r) : undefined;
  }

  getDeviceByName(fleet: string, name: string): DeviceRecord | undefined {
    const r = this.db.prepare('SELECT * FROM devices WHERE fleet = ? AND name = ?').get(fleet, name) as Row | undefined;
    return r ? deviceFromRow(r) : undefined;
  }

  ensureDevice(input: { spiffeId: string; fleet: string; name: string; now: string }): { device: DeviceRecord; created: boolean } {
    return this.withWriteLock(() => {
      const existing = this.getDeviceBySpiffeId(input.spiffeId);
      if (existing) return { device: existing, created: false };
      this.db
        .prepare('INSERT INTO devices (id, spiffe_id, fleet, name, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(crypto.randomUUID(), input.spiffeId, input.fleet, input.name, input.now);
      return { device: this.getDeviceBySpiffeId(input.spiffeId)!, created: true };
    });
  }

  registerDevice(input: { spiffeId: string; fleet: string; name: string; profile: DeviceProfile; now: string }): DeviceRecord {
    const p = input.profile;
    this.db
      .prepare(
        `INSERT INTO devices (id, spiffe_id, fleet, name, hardware, agent_version, tags, capabilities, created_at, registered_at, last_seen_at)
         VALUES (@id, @spiffeId, @fleet, @name, @hardware, @agentVersion, @tags, @capabilities, @now, @now, @now)
         ON CONFLICT (spiffe_id) DO UPDATE SET
           hardware = excluded.hardware,
           agent_version = excluded.agent_version,
           tags = excluded.tags,
           capabilities = excluded.capabilities,
           registered_at = COALESCE(devices.registered_at, excluded.registered_at),
           last_seen_at = excluded.last_seen_at`,
      )
      .run({
        id: crypto.randomUUID(),
        spiffeId: input.spiffeId,
        fleet: input.fleet,
        name: input.name,
        hardware: p.hardware ? JSON.stringify(p.hardware) : null,
        agentVersion: p.agentVersion,
        tags: JSON.stringify(p.tags),
        capabilities: JSON.stringify(p.capabilities),
        now: input.now,
      });
    return this.getDeviceBySpiffeId(input.spiffeId)!;
  }

  recordHeartbeat(deviceId: string, installed: Omit<InstalledRecord, 'updatedAt'>[], now: string): void {
    this.withWriteLock(() => {
      this.db.prepare('UPDATE devices SET last_seen_at = ? WHERE id = ?').run(now, deviceId);
      this.db.prepare('DELETE FROM installed WHERE device_id = ?').run(deviceId);
      const insert = this.db.prepare(
        'INSERT INTO installed (device_id, name, kind, version, sha256, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      );
      for (const i of installed) insert.run(deviceId, i.name, i.kind, i.version, i.sha256, i.state, now);
    });
  }

  decommissionDevice(deviceId: string, now: string): void {
    this.db
      .prepare('UPDATE devices SET decommissioned_at = COALESCE(decommissioned_at, ?) WHERE id = ?')
      .run(now, deviceId);
  }

  markOffboardNotified(deviceId: string, now: string): boolean {
    return (
      this.db
        .prepare('UPDATE devices SET offboard_notified_at = ?, last_seen_at = ? WHERE id = ? AND decommissioned_at IS NOT NULL AND offboard_notified_at IS NULL')
        .run(now, now, deviceId).changes === 1
    );
  }

  listInstalled(deviceId: string): InstalledRecord[] {
    return (this.db.prepare('SELECT * FROM installed WHERE device_id = ? ORDER BY name').all(deviceId) as Row[]).map((r) => ({
      name: str(r.name),
      kind: str(r.kind),
      version: str(r.version),
      sha256: str(r.sha256),
      state: str(r.state),
      updatedAt: str(r.updated_at),
    }));
  }

  // --- artifacts

  getArtifact(name: string, version: string): ArtifactRecord | undefined {
    const r = this.db.prepare('SELECT * FROM artifacts WHERE name = ? AND version = ?').get(name, version) as Row | undefined;
    return r ? artifactFromRow(r) : undefined;
  }

  getArtifactById(id: string): ArtifactRecord | undefined {
    const r = this.db.prepare('SELECT * FROM artifacts WHERE id = ?').get(id) as Row | undefined;
    return r ? artifactFromRow(r) : undefined;
  }

  insertArtifact(a: ArtifactRecord): void {
    this.db
      .prepare(
        `INSERT INTO artifacts (id, name, version, kind, file_name, target_path, sha256, length, spec, manifest, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        a.id, a.name, a.version, a.kind, a.fileName, a.targetPath, a.sha256, a.length, JSON.stringify(a.spec),
        a.manifest ? JSON.stringify(a.manifest) : null, a.createdAt,
      );
  }

  // --- assignments

  insertAssignment(a: AssignmentRecord): string[] {
    return this.withWriteLock(() => {
      const superseded = (
        this.db
          .prepare('SELECT id FROM assignments WHERE device_id = ? AND artifact_name = ? AND active = 1')
          .all(a.deviceId, a.artifactName) as Row[]
      ).map((r) => str(r.id));
      this.db
        .prepare('UPDATE assignments SET active = 0, updated_at = ? WHERE device_id = ? AND artifact_name = ? AND active = 1')
        .run(a.createdAt, a.deviceId, a.artifactName);
      this.db
        .prepare(
          `INSERT INTO assignments (id, device_id, artifact_id, artifact_name, rollout_id, probe, state, reason, active, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          a.id,
          a.deviceId,
          a.artifactId,
          a.artifactName,
          a.rolloutId,
          JSON.stringify(a.probe),
          a.state,
          a.reason,
          a.active ? 1 : 0,
          a.createdAt,
          a.updatedAt,
        );
      return superseded;
    });
  }

  getAssignment(id: string): AssignmentRecord | undefined {
    const r = this.db.prepare('SELECT * FROM assignments WHERE id = ?').get(id) as Row | undefined;
    return r ? assignmentFromRow(r) : undefined;
  }

  listDesiredArtifacts(deviceId: string): DesiredArtifact[] {
    const artifactCols = ARTIFACT_COLUMNS.map((c) => `ar.${c} AS ar_${c}`).join(', ');
    const rows = this.db
      .prepare(
        `SELECT a.*, ${artifactCols} FROM assignments a JOIN artifacts ar ON ar.id = a.artifact_id
         WHERE a.device_id = ? AND a.active = 1
           -- A halted or aborted rollout serves no new assignment (a revert is not new).
           AND NOT (a.state = 'PENDING' AND a.rollout_id IS NOT NULL
             AND EXISTS (SELECT 1 FROM rollouts r WHERE r.id = a.rollout_id AND r.status IN ('halted', 'aborted'))
             AND NOT EXISTS (SELECT 1 FROM rollout_devices rd WHERE rd.revert_assignment_id = a.id))
         ORDER BY a.artifact_name`,
      )
      .all(deviceId) as Row[];
    return rows.map((r) => ({ assignment: assignmentFromRow(r), artifact: artifactFromRow(r, 'ar_') }));
  }

  listStatusReports(assignmentId: string): StatusReportRecord[] {
    return (
      this.db.prepare('SELECT * FROM status_reports WHERE assignment_id = ? ORDER BY sequence').all(assignmentId) as Row[]
    ).map(reportFromRow);
  }

  recordStatusReport(r: NewStatusReport): boolean {
    return this.withWriteLock(() => {
      const device = this.db.prepare('SELECT last_report_seq FROM devices WHERE id = ?').get(r.deviceId) as Row | undefined;
      if (!device || r.sequence <= num(device.last_report_seq)) return false;
      this.db
        .prepare(
          `INSERT INTO status_reports (device_id, assignment_id, sequence, state, reason, bytes_done, bytes_total, device_time, received_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(r.deviceId, r.assignmentId, r.sequence, r.state, r.reason, r.bytesDone, r.bytesTotal, r.deviceTime, r.receivedAt);
      this.db
        .prepare('UPDATE assignments SET state = ?, reason = ?, updated_at = ? WHERE id = ? AND device_id = ?')
        .run(r.state, r.reason, r.receivedAt, r.assignmentId, r.deviceId);
      this.db
        .prepare('UPDATE devices SET last_report_seq = ?, last_seen_at = ? WHERE id = ?')
        .run(r.sequence, r.receivedAt, r.deviceId);
      if (r.installed) {
        const i = r.installed;
        this.db
          .prepare(
            `INSERT INTO installed (device_id, name, kind, version, sha256, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (device_id, name) DO UPDATE SET kind = excluded.kind, version = excluded.version,
               sha256 = excluded.sha256, state = excluded.state, updated_at = excluded.updated_at`,
          )
          .run(r.deviceId, i.name, i.kind, i.version, i.sha256, i.state, r.receivedAt);
      }
      return true;
    });
  }

  // --- audit (hash-chained: sqlite-audit.ts)

  appendAudit(e: NewAuditEvent): AuditEventRecord {
    return this.audit.append(e);
  }

  listAudit(filter: AuditListFilter = {}): AuditEventRecord[] {
    return this.audit.list(filter);
  }

  countAudit(filter: Pick<AuditListFilter, 'subject' | 'action'> = {}): number {
    return this.audit.count(filter);
  }
}
