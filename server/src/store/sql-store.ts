// The Store over a Db (db.ts): the same statements on SQLite and PostgreSQL. Multi-statement
// writes that must go together run under withWriteLock; single statements stand alone.
import * as crypto from 'node:crypto';
import { MeshError } from '../errors.js';
import type { Db } from './db.js';
import { PostgresDb } from './db-postgres.js';
import { SqliteDb } from './db-sqlite.js';
import { PostgresDeviceStateFeed } from './state-feed-postgres.js';
import { SqliteDeviceStateFeed } from './state-feed-sqlite.js';
import { MIGRATIONS, type Migration } from './migrations.js';
import { SqlCertificates, SqlEnrollmentTokens } from './sql-enrollment.js';
import { SqlLogRequests } from './sql-log-requests.js';
import { SqlApiKeys, SqlOperatorViews } from './sql-api-keys.js';
import { SqlAudit } from './sql-audit.js';
import { SqlGroups } from './sql-groups.js';
import { SqlRollouts } from './sql-rollouts.js';
import { EMPTY_INSTALLED_DIGEST, installedDigest } from './installed-digest.js';
import { artifactFromRow, deviceFromRow, json, num, str, rowSetParams, strOrNull, textRowSet, valueRows, type Row } from './sql-rows.js';
import type {
  ArtifactRecord,
  AssignmentRecord,
  AuditEventRecord,
  AuditListFilter,
  CallingDevice,
  DesiredArtifact,
  DeviceRecord,
  DeviceStateChangeListener,
  DeviceStateFeed,
  DeviceStateFeedOptions,
  InstalledRecord,
  InstalledSetWrite,
  NewAuditEvent,
  NewStatusReport,
  ReportingDevice,
  StatusReportRecord,
  Store,
  DeviceProfile,
} from './store.js';

function assignmentFromRow(r: Row, prefix = ''): AssignmentRecord {
  return {
    id: str(r[`${prefix}id`]),
    deviceId: str(r[`${prefix}device_id`]),
    artifactId: str(r[`${prefix}artifact_id`]),
    artifactName: str(r[`${prefix}artifact_name`]),
    rolloutId: strOrNull(r[`${prefix}rollout_id`]),
    probe: json(r[`${prefix}probe`], { type: '', spec: {}, timeoutSeconds: 0, attempts: 0, initialDelaySeconds: 0 }),
    state: str(r[`${prefix}state`]) as AssignmentRecord['state'],
    reason: str(r[`${prefix}reason`]),
    active: num(r[`${prefix}active`]) === 1,
    createdAt: str(r[`${prefix}created_at`]),
    updatedAt: str(r[`${prefix}updated_at`]),
  };
}

const ASSIGNMENT_COLUMNS = ['id', 'device_id', 'artifact_id', 'artifact_name', 'rollout_id', 'probe', 'state', 'reason', 'active', 'created_at', 'updated_at'];

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

function installedFromRow(r: Row): InstalledRecord {
  return { name: str(r.name), kind: str(r.kind), version: str(r.version), sha256: str(r.sha256), state: str(r.state), updatedAt: str(r.updated_at) };
}

/** Devices per last-seen UPDATE (one JSON parameter; bounds the statement's size). */
const TOUCH_CHUNK = 500;
/** Reports per statement of recordStatusReports (nine parameters each for the report rows). */
const REPORT_SLICE = 1000;
const SEEN_COLUMNS = ['id', 'at'] as const;
const REPORT_SEQ_COLUMNS = ['device_id', 'seq', 'at'] as const;
const REPORT_STATE_COLUMNS = ['id', 'device_id', 'state', 'reason', 'at'] as const;
const DIGEST_COLUMNS = ['id', 'digest'] as const;
const CAS_DIGEST_COLUMNS = ['id', 'expected', 'digest'] as const;
/**
 * Heartbeats' installed sets per write transaction. On PostgreSQL a transaction that announces
 * more than about 220 devices (migration 7's 8,192-character list) announces all of them, and
 * its fence then makes every heartbeat of this replica read the database until it is back.
 */
const INSTALLED_SETS_PER_TRANSACTION = 200;

const ARTIFACT_COLUMNS = ['id', 'name', 'version', 'kind', 'file_name', 'target_path', 'sha256', 'length', 'spec', 'created_at'];

/** Applies the migrations `db` lacks, in version order, under the write lock. */
export async function migrate(db: Db, migrations: readonly Migration[] = MIGRATIONS): Promise<void> {
  // Under the write lock so two processes (or replicas) opening a fresh database at once
  // cannot both apply v1.
  await db.writeTransaction(async () => {
    await db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
    );
    const applied = new Set((await db.all('SELECT version FROM schema_migrations')).map((r) => num(r.version)));
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
        await db.exec(db.dialect === 'postgres' ? m.postgresSql : m.sql);
        await m.up?.(db);
      } catch (err) {
        throw new MeshError('MESH_ERR_STORE_MIGRATION_FAILED', `migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, {
          cause: err,
        });
      }
      await db.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [m.version, m.name, new Date().toISOString()]);
    }
  });
}

export class SqlStore implements Store {
  readonly enrollmentTokens: SqlEnrollmentTokens;
  readonly certificates: SqlCertificates;
  readonly logRequests: SqlLogRequests;
  readonly apiKeys: SqlApiKeys;
  readonly operatorViews: SqlOperatorViews;
  readonly groups: SqlGroups;
  readonly rollouts: SqlRollouts;
  private readonly audit: SqlAudit;
  private closed = false;

  /** Use openSqlStore (migrates first). */
  constructor(readonly db: Db) {
    this.enrollmentTokens = new SqlEnrollmentTokens(db);
    this.certificates = new SqlCertificates(db);
    this.logRequests = new SqlLogRequests(db);
    this.apiKeys = new SqlApiKeys(db);
    this.operatorViews = new SqlOperatorViews(db);
    const lock = <T>(fn: () => Promise<T>): Promise<T> => this.withWriteLock(fn);
    this.groups = new SqlGroups(db, lock);
    this.rollouts = new SqlRollouts(db, lock);
    this.audit = new SqlAudit(db, lock, (fn) => this.joiningWrite(fn));
  }

  get dialect(): 'sqlite' | 'postgres' {
    return this.db.dialect;
  }

  withWriteLock<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.db.writeTransaction(async () => fn());
  }

  /**
   * Runs `fn` in the caller's write transaction when there is one, without a savepoint of its
   * own (on PostgreSQL a savepoint is two more round trips under the global write lock), else
   * in a write transaction of its own. Only for the set-based writes the device service's
   * group commit makes (recordStatusReports, appendAuditEvents): if they throw, the whole
   * transaction must fail, which the batcher lets happen (store/write-batcher.ts).
   */
  private joiningWrite<T>(fn: () => Promise<T>): Promise<T> {
    return this.db.inTransaction() ? fn() : this.withWriteLock(fn);
  }

  async openDeviceStateFeed(onChange: DeviceStateChangeListener, options: DeviceStateFeedOptions = {}): Promise<DeviceStateFeed> {
    if (this.db instanceof SqliteDb) return new SqliteDeviceStateFeed(this.db, onChange);
    if (this.db instanceof PostgresDb) {
      const feed = new PostgresDeviceStateFeed(this.db, onChange, options);
      await feed.start();
      return feed;
    }
    throw new Error(`no device state feed for a ${this.db.dialect} database`);
  }

  async schemaVersion(): Promise<number> {
    const row = await this.db.get('SELECT MAX(version) AS v FROM schema_migrations');
    return row?.v === null || row?.v === undefined ? 0 : num(row.v);
  }

  ping(): Promise<void> {
    return this.db.ping();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.db.close();
  }

  // --- devices

  async getDeviceById(id: string): Promise<DeviceRecord | undefined> {
    const r = await this.db.get('SELECT * FROM devices WHERE id = ?', [id]);
    return r ? deviceFromRow(r) : undefined;
  }

  async getDeviceBySpiffeId(spiffeId: string): Promise<DeviceRecord | undefined> {
    const r = await this.db.get('SELECT * FROM devices WHERE spiffe_id = ?', [spiffeId]);
    return r ? deviceFromRow(r) : undefined;
  }

  async getCallingDevice(spiffeId: string): Promise<CallingDevice | undefined> {
    // One statement for what every call needs: the device, and whether a log request waits
    // (rare), so a heartbeat runs the pending-requests query only when there is one.
    const r = await this.db.get(
      `SELECT d.*, EXISTS (SELECT 1 FROM log_requests l WHERE l.device_id = d.id AND l.fulfilled_at IS NULL) AS pending_logs
       FROM devices d WHERE d.spiffe_id = ?`,
      [spiffeId],
    );
    if (!r) return undefined;
    return {
      device: deviceFromRow(r),
      installedDigest: r.installed_digest == null ? null : str(r.installed_digest),
      // SQLite answers 0/1, PostgreSQL a boolean.
      pendingLogRequests: r.pending_logs === true || Number(r.pending_logs) === 1,
    };
  }

  async getReportingDevice(spiffeId: string, assignmentId: string): Promise<ReportingDevice | undefined> {
    // During a wave reports outnumber heartbeats that miss the cache, and three reads each
    // (device, assignment, artifact) were most of the database's statements (docs/benchmarks.md).
    const r = await this.db.get(
      `SELECT d.*, ${ASSIGNMENT_COLUMNS.map((c) => `a.${c} AS as_${c}`).join(', ')}, ${ARTIFACT_COLUMNS.map((c) => `ar.${c} AS ar_${c}`).join(', ')}
       FROM devices d
       LEFT JOIN assignments a ON a.id = @assignment AND a.device_id = d.id
       LEFT JOIN artifacts ar ON ar.id = a.artifact_id
       WHERE d.spiffe_id = @spiffe`,
      { assignment: assignmentId, spiffe: spiffeId },
    );
    if (!r) return undefined;
    return {
      device: deviceFromRow(r),
      ...(r.as_id == null ? {} : { assignment: assignmentFromRow(r, 'as_') }),
      ...(r.ar_id == null ? {} : { artifact: artifactFromRow(r, 'ar_') }),
    };
  }

  async getDeviceByName(fleet: string, name: string): Promise<DeviceRecord | undefined> {
    const r = await this.db.get('SELECT * FROM devices WHERE fleet = ? AND name = ?', [fleet, name]);
    return r ? deviceFromRow(r) : undefined;
  }

  async countDevices(): Promise<number> {
    return num((await this.db.get('SELECT COUNT(*) AS n FROM devices'))!.n);
  }

  ensureDevice(input: { spiffeId: string; fleet: string; name: string; now: string }): Promise<{ device: DeviceRecord; created: boolean }> {
    return this.withWriteLock(async () => {
      const existing = await this.getDeviceBySpiffeId(input.spiffeId);
      if (existing) return { device: existing, created: false };
      // A new device has installed nothing: its first heartbeat (reporting nothing) writes nothing.
      await this.db.run('INSERT INTO devices (id, spiffe_id, fleet, name, created_at, installed_digest) VALUES (?, ?, ?, ?, ?, ?)', [
        crypto.randomUUID(),
        input.spiffeId,
        input.fleet,
        input.name,
        input.now,
        EMPTY_INSTALLED_DIGEST,
      ]);
      return { device: (await this.getDeviceBySpiffeId(input.spiffeId))!, created: true };
    });
  }

  async registerDevice(input: { spiffeId: string; fleet: string; name: string; profile: DeviceProfile; now: string }): Promise<DeviceRecord> {
    const p = input.profile;
    await this.db.run(
      `INSERT INTO devices (id, spiffe_id, fleet, name, hardware, agent_version, tags, capabilities, created_at, registered_at, last_seen_at, installed_digest)
       VALUES (@id, @spiffeId, @fleet, @name, @hardware, @agentVersion, @tags, @capabilities, @now, @now, @now, @emptyInstalled)
       ON CONFLICT (spiffe_id) DO UPDATE SET
         hardware = excluded.hardware,
         agent_version = excluded.agent_version,
         tags = excluded.tags,
         capabilities = excluded.capabilities,
         registered_at = COALESCE(devices.registered_at, excluded.registered_at),
         last_seen_at = excluded.last_seen_at`,
      {
        id: crypto.randomUUID(),
        spiffeId: input.spiffeId,
        fleet: input.fleet,
        name: input.name,
        hardware: p.hardware ? JSON.stringify(p.hardware) : null,
        agentVersion: p.agentVersion,
        tags: JSON.stringify(p.tags),
        capabilities: JSON.stringify(p.capabilities),
        now: input.now,
        emptyInstalled: EMPTY_INSTALLED_DIGEST,
      },
    );
    return (await this.getDeviceBySpiffeId(input.spiffeId))!;
  }

  recordHeartbeat(deviceId: string, installed: Omit<InstalledRecord, 'updatedAt'>[], now: string): Promise<void> {
    return this.withWriteLock(async () => {
      await this.db.run('UPDATE devices SET last_seen_at = ? WHERE id = ?', [now, deviceId]);
      await this.replaceInstalled(deviceId, installed, now);
    });
  }

  async touchLastSeen(entries: ReadonlyArray<{ deviceId: string; at: string }>): Promise<void> {
    if (entries.length === 0) return;
    // One statement per chunk (UPDATE ... FROM, on both engines), one transaction for the
    // batch: flushes of several replicas are serialized by the write lock, so they cannot
    // deadlock on each other's row locks. Never moves last_seen_at backwards (a status report,
    // committed directly, may have set a later time in the meantime).
    // Relaxed durability: a liveness time lost to a power cut is rewritten by the device's
    // next heartbeat, and not paying an fsync per flush keeps the event loop free for calls.
    await this.db.writeTransaction(async () => {
      for (let i = 0; i < entries.length; i += TOUCH_CHUNK) {
        const chunk = entries.slice(i, i + TOUCH_CHUNK);
        await this.db.run(
          `UPDATE devices SET last_seen_at = seen.at FROM (${textRowSet(this.db.dialect, SEEN_COLUMNS)}) AS seen
           WHERE devices.id = seen.id AND (devices.last_seen_at IS NULL OR devices.last_seen_at < seen.at)`,
          [...rowSetParams(this.db.dialect, SEEN_COLUMNS, chunk.map((e) => [e.deviceId, e.at]))],
        );
      }
    }, { relaxedDurability: true });
  }

  async replaceInstalledSets(entries: ReadonlyArray<InstalledSetWrite>): Promise<string[]> {
    // Compare-and-set on the digest: a set waits up to a flush interval for its batch, and a
    // HEALTHY report committed meanwhile stored a newer one that this write must not undo.
    // Skipped, nothing is lost: every heartbeat lists the whole set, and the next one is
    // compared with the digest as it then stands. Relaxed durability for the same reason: a
    // set lost to a power cut is sent again.
    const written: string[] = [];
    for (let i = 0; i < entries.length; i += INSTALLED_SETS_PER_TRANSACTION) {
      const chunk = entries.slice(i, i + INSTALLED_SETS_PER_TRANSACTION);
      written.push(...(await this.db.writeTransaction(() => this.replaceInstalledChunk(chunk), { relaxedDurability: true })));
    }
    return written;
  }

  private async replaceInstalledChunk(chunk: ReadonlyArray<InstalledSetWrite>): Promise<string[]> {
    const rows = await this.db.all(
      `UPDATE devices SET installed_digest = s.digest FROM (${textRowSet(this.db.dialect, CAS_DIGEST_COLUMNS)}) AS s
       WHERE devices.id = s.id AND devices.installed_digest IS NOT DISTINCT FROM s.expected RETURNING devices.id`,
      [...rowSetParams(this.db.dialect, CAS_DIGEST_COLUMNS, chunk.map((e) => [e.deviceId, e.expectedDigest, installedDigest(e.installed)]))],
    );
    const ids = new Set(rows.map((r) => str(r.id)));
    if (ids.size === 0) return [];
    const taken = chunk.filter((e) => ids.has(e.deviceId));
    await this.rewriteInstalledRows(taken);
    return taken.map((e) => e.deviceId);
  }

  /** The `installed` rows of each device replaced by its set (the digest is the caller's). */
  private async rewriteInstalledRows(sets: ReadonlyArray<Pick<InstalledSetWrite, 'deviceId' | 'installed' | 'at'>>): Promise<void> {
    await this.db.run(`DELETE FROM installed WHERE device_id IN (${sets.map(() => '?').join(', ')})`, sets.map((e) => e.deviceId));
    const items = sets.flatMap((e) => e.installed.map((item) => [e.deviceId, item.name, item.kind, item.version, item.sha256, item.state, e.at]));
    for (let k = 0; k < items.length; k += REPORT_SLICE) {
      const slice = items.slice(k, k + REPORT_SLICE);
      await this.db.run(`INSERT INTO installed (device_id, name, kind, version, sha256, state, updated_at) VALUES ${valueRows(slice.length, 7)}`, slice.flat());
    }
  }

  replaceInstalled(deviceId: string, installed: Omit<InstalledRecord, 'updatedAt'>[], now: string): Promise<void> {
    return this.withWriteLock(async () => {
      await this.db.run('UPDATE devices SET installed_digest = ? WHERE id = ?', [installedDigest(installed), deviceId]);
      await this.rewriteInstalledRows([{ deviceId, installed, at: now }]);
    });
  }

  async decommissionDevice(deviceId: string, now: string): Promise<void> {
    await this.db.run('UPDATE devices SET decommissioned_at = COALESCE(decommissioned_at, ?) WHERE id = ?', [now, deviceId]);
  }

  async markOffboardNotified(deviceId: string, now: string): Promise<boolean> {
    const { changes } = await this.db.run(
      'UPDATE devices SET offboard_notified_at = ?, last_seen_at = ? WHERE id = ? AND decommissioned_at IS NOT NULL AND offboard_notified_at IS NULL',
      [now, now, deviceId],
    );
    return changes === 1;
  }

  async listInstalled(deviceId: string): Promise<InstalledRecord[]> {
    return (await this.db.all('SELECT * FROM installed WHERE device_id = ? ORDER BY name', [deviceId])).map(installedFromRow);
  }

  // --- artifacts

  async getArtifact(name: string, version: string): Promise<ArtifactRecord | undefined> {
    const r = await this.db.get('SELECT * FROM artifacts WHERE name = ? AND version = ?', [name, version]);
    return r ? artifactFromRow(r) : undefined;
  }

  async getArtifactById(id: string): Promise<ArtifactRecord | undefined> {
    const r = await this.db.get('SELECT * FROM artifacts WHERE id = ?', [id]);
    return r ? artifactFromRow(r) : undefined;
  }

  async insertArtifact(a: ArtifactRecord): Promise<void> {
    await this.db.run(
      `INSERT INTO artifacts (id, name, version, kind, file_name, target_path, sha256, length, spec, manifest, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [a.id, a.name, a.version, a.kind, a.fileName, a.targetPath, a.sha256, a.length, JSON.stringify(a.spec), a.manifest ? JSON.stringify(a.manifest) : null, a.createdAt],
    );
  }

  // --- assignments

  insertAssignment(a: AssignmentRecord): Promise<string[]> {
    return this.withWriteLock(async () => {
      const superseded = (
        await this.db.all('SELECT id FROM assignments WHERE device_id = ? AND artifact_name = ? AND active = 1', [a.deviceId, a.artifactName])
      ).map((r) => str(r.id));
      await this.db.run('UPDATE assignments SET active = 0, updated_at = ? WHERE device_id = ? AND artifact_name = ? AND active = 1', [
        a.createdAt,
        a.deviceId,
        a.artifactName,
      ]);
      await this.db.run(
        `INSERT INTO assignments (id, device_id, artifact_id, artifact_name, rollout_id, probe, state, reason, active, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [a.id, a.deviceId, a.artifactId, a.artifactName, a.rolloutId, JSON.stringify(a.probe), a.state, a.reason, a.active ? 1 : 0, a.createdAt, a.updatedAt],
      );
      return superseded;
    });
  }

  async getAssignment(id: string): Promise<AssignmentRecord | undefined> {
    const r = await this.db.get('SELECT * FROM assignments WHERE id = ?', [id]);
    return r ? assignmentFromRow(r) : undefined;
  }

  async listDesiredArtifacts(deviceId: string): Promise<DesiredArtifact[]> {
    const artifactCols = ARTIFACT_COLUMNS.map((c) => `ar.${c} AS ar_${c}`).join(', ');
    const rows = await this.db.all(
      `SELECT a.*, ${artifactCols} FROM assignments a JOIN artifacts ar ON ar.id = a.artifact_id
       WHERE a.device_id = ? AND a.active = 1
         -- A halted or aborted rollout serves no new assignment (a revert is not new).
         AND NOT (a.state = 'PENDING' AND a.rollout_id IS NOT NULL
           AND EXISTS (SELECT 1 FROM rollouts r WHERE r.id = a.rollout_id AND r.status IN ('halted', 'aborted'))
           AND NOT EXISTS (SELECT 1 FROM rollout_devices rd WHERE rd.revert_assignment_id = a.id))
       ORDER BY a.artifact_name`,
      [deviceId],
    );
    return rows.map((r) => ({ assignment: assignmentFromRow(r), artifact: artifactFromRow(r, 'ar_') }));
  }

  async listStatusReports(assignmentId: string): Promise<StatusReportRecord[]> {
    return (await this.db.all('SELECT * FROM status_reports WHERE assignment_id = ? ORDER BY sequence', [assignmentId])).map(reportFromRow);
  }

  async recordStatusReport(r: NewStatusReport): Promise<boolean> {
    // Its own transaction, or a savepoint in the caller's: all or nothing whatever the caller does.
    return (await this.withWriteLock(() => this.recordStatusReports([r])))[0]!;
  }

  recordStatusReports(reports: readonly NewStatusReport[]): Promise<boolean[]> {
    // Committed before the caller acknowledges the reports (the device service commits reports
    // that arrive together in one transaction, store/write-batcher.ts, still before answering).
    // A few statements for the whole set: during a wave of thousands of devices the reports'
    // round trips under the write lock were what made them queue (docs/benchmarks.md).
    return this.joiningWrite(async () => {
      const accepted = reports.map(() => false);
      // A device at most once per round, its reports in the order given: within one statement
      // two rows of one device could not see each other's sequence.
      const rounds: number[][] = [];
      const seen = new Map<string, number>();
      reports.forEach((r, i) => {
        const round = seen.get(r.deviceId) ?? 0;
        seen.set(r.deviceId, round + 1);
        (rounds[round] ??= []).push(i);
      });
      for (const round of rounds) {
        // Slices keep a statement's parameters far below SQLite's limit (32,766).
        for (let from = 0; from < round.length; from += REPORT_SLICE) {
          const slice = round.slice(from, from + REPORT_SLICE);
          const taken = await this.recordReportRound(slice.map((i) => reports[i]!));
          slice.forEach((i, k) => (accepted[i] = taken[k]!));
        }
      }
      return accepted;
    });
  }

  /** Reports of distinct devices: sequence check and advance, report rows, assignment states, installed sets. */
  private async recordReportRound(round: readonly NewStatusReport[]): Promise<boolean[]> {
    // The check and the advance in one statement: a report not newer than the last one stored
    // (a retry, a replay) changes no row, and nothing else is written for it.
    const advanced = await this.db.all(
      `UPDATE devices SET last_report_seq = CAST(s.seq AS BIGINT), last_seen_at = s.at FROM (${textRowSet(this.db.dialect, REPORT_SEQ_COLUMNS)}) AS s
       WHERE devices.id = s.device_id AND devices.last_report_seq < CAST(s.seq AS BIGINT) RETURNING id`,
      [...rowSetParams(this.db.dialect, REPORT_SEQ_COLUMNS, round.map((r) => [r.deviceId, String(r.sequence), r.receivedAt]))],
    );
    const advancedIds = new Set(advanced.map((row) => str(row.id)));
    const taken = round.map((r) => advancedIds.has(r.deviceId));
    const stored = round.filter((_, k) => taken[k]);
    if (stored.length === 0) return taken;
    await this.db.run(
      `INSERT INTO status_reports (device_id, assignment_id, sequence, state, reason, bytes_done, bytes_total, device_time, received_at)
       VALUES ${valueRows(stored.length, 9)}`,
      stored.flatMap((r) => [r.deviceId, r.assignmentId, r.sequence, r.state, r.reason, r.bytesDone, r.bytesTotal, r.deviceTime, r.receivedAt]),
    );
    await this.db.run(
      `UPDATE assignments SET state = s.state, reason = s.reason, updated_at = s.at FROM (${textRowSet(this.db.dialect, REPORT_STATE_COLUMNS)}) AS s
       WHERE assignments.id = s.id AND assignments.device_id = s.device_id`,
      [...rowSetParams(this.db.dialect, REPORT_STATE_COLUMNS, stored.map((r) => [r.assignmentId, r.deviceId, r.state, r.reason, r.receivedAt]))],
    );
    const installing = stored.filter((r) => r.installed);
    if (installing.length > 0) {
      await this.db.run(
        `INSERT INTO installed (device_id, name, kind, version, sha256, state, updated_at) VALUES ${valueRows(installing.length, 7)}
         ON CONFLICT (device_id, name) DO UPDATE SET kind = excluded.kind, version = excluded.version,
           sha256 = excluded.sha256, state = excluded.state, updated_at = excluded.updated_at`,
        installing.flatMap((r) => [r.deviceId, r.installed!.name, r.installed!.kind, r.installed!.version, r.installed!.sha256, r.installed!.state, r.receivedAt]),
      );
      // The digest of each set as it now stands: the device's next heartbeat, listing the new
      // version, matches it and writes nothing (during a wave, one write less per device).
      const rows = await this.db.all(`SELECT * FROM installed WHERE device_id IN (${installing.map(() => '?').join(', ')})`, installing.map((r) => r.deviceId));
      const sets = new Map<string, InstalledRecord[]>();
      for (const row of rows) {
        const set = sets.get(str(row.device_id)) ?? [];
        set.push(installedFromRow(row));
        sets.set(str(row.device_id), set);
      }
      await this.db.run(
        `UPDATE devices SET installed_digest = s.digest FROM (${textRowSet(this.db.dialect, DIGEST_COLUMNS)}) AS s WHERE devices.id = s.id`,
        [...rowSetParams(this.db.dialect, DIGEST_COLUMNS, installing.map((r) => [r.deviceId, installedDigest(sets.get(r.deviceId) ?? [])]))],
      );
    }
    return taken;
  }

  // --- audit (hash-chained: sql-audit.ts)

  appendAudit(e: NewAuditEvent): Promise<AuditEventRecord> {
    return this.audit.append(e);
  }

  appendAuditEvents(events: readonly NewAuditEvent[]): Promise<AuditEventRecord[]> {
    return this.audit.appendMany(events);
  }

  listAudit(filter: AuditListFilter = {}): Promise<AuditEventRecord[]> {
    return this.audit.list(filter);
  }

  countAudit(filter: Pick<AuditListFilter, 'subject' | 'action'> = {}): Promise<number> {
    return this.audit.count(filter);
  }
}
