// The Store over a Db (db.ts): the same statements on SQLite and PostgreSQL, one repository
// per idea (sql-devices.ts, sql-artifacts.ts, sql-assignments.ts, sql-status-reports.ts,
// sql-audit.ts, ...), composed here. Multi-statement writes that must go together run under
// withWriteLock; single statements stand alone.
import type { Db } from './db.js';
import { PostgresDb } from './db-postgres.js';
import { SqliteDb } from './db-sqlite.js';
import { PostgresDeviceStateFeed } from './state-feed-postgres.js';
import { SqliteDeviceStateFeed } from './state-feed-sqlite.js';
import { SqlCertificates, SqlEnrollmentTokens } from './sql-enrollment.js';
import { SqlLogRequests } from './sql-log-requests.js';
import { SqlApiKeys, SqlOperatorViews } from './sql-api-keys.js';
import { SqlArtifacts } from './sql-artifacts.js';
import { SqlAssignments } from './sql-assignments.js';
import { SqlAudit } from './sql-audit.js';
import { SqlDevices } from './sql-devices.js';
import { SqlGroups } from './sql-groups.js';
import { SqlRollouts } from './sql-rollouts.js';
import { SqlStatusReports } from './sql-status-reports.js';
import { num } from './sql-rows.js';
import type {
  ArtifactHolders,
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
  NewArtifactRecord,
  NewAuditEvent,
  NewStatusReport,
  ReportingDevice,
  StatusReportRecord,
  Store,
  DeviceProfile,
} from './store.js';

export { migrate } from './migrate.js';

export class SqlStore implements Store {
  readonly enrollmentTokens: SqlEnrollmentTokens;
  readonly certificates: SqlCertificates;
  readonly logRequests: SqlLogRequests;
  readonly apiKeys: SqlApiKeys;
  readonly operatorViews: SqlOperatorViews;
  readonly groups: SqlGroups;
  readonly rollouts: SqlRollouts;
  private readonly devices: SqlDevices;
  private readonly artifacts: SqlArtifacts;
  private readonly assignments: SqlAssignments;
  private readonly reports: SqlStatusReports;
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
    const joining = <T>(fn: () => Promise<T>): Promise<T> => this.joiningWrite(fn);
    this.groups = new SqlGroups(db, lock);
    this.rollouts = new SqlRollouts(db, lock);
    this.devices = new SqlDevices(db, lock);
    this.artifacts = new SqlArtifacts(db);
    this.assignments = new SqlAssignments(db, lock);
    this.reports = new SqlStatusReports(db, lock, joining);
    this.audit = new SqlAudit(db, lock, joining);
  }

  get dialect(): 'sqlite' | 'postgres' {
    return this.db.dialect;
  }

  withWriteLock<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.db.writeTransaction(async () => fn());
  }

  withRowLocks<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.db.writeTransaction(async () => fn(), { lock: 'rows' });
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

  // --- devices (sql-devices.ts)

  getDeviceById(id: string): Promise<DeviceRecord | undefined> {
    return this.devices.getDeviceById(id);
  }

  getDeviceBySpiffeId(spiffeId: string): Promise<DeviceRecord | undefined> {
    return this.devices.getDeviceBySpiffeId(spiffeId);
  }

  getCallingDevice(spiffeId: string): Promise<CallingDevice | undefined> {
    return this.devices.getCallingDevice(spiffeId);
  }

  getReportingDevice(spiffeId: string, assignmentId: string): Promise<ReportingDevice | undefined> {
    return this.devices.getReportingDevice(spiffeId, assignmentId);
  }

  getDeviceByName(fleet: string, name: string): Promise<DeviceRecord | undefined> {
    return this.devices.getDeviceByName(fleet, name);
  }

  getDevicesByNames(fleet: string, names: readonly string[]): Promise<Map<string, DeviceRecord>> {
    return this.devices.getDevicesByNames(fleet, names);
  }

  countDevices(): Promise<number> {
    return this.devices.countDevices();
  }

  ensureDevice(input: { spiffeId: string; fleet: string; name: string; now: string }): Promise<{ device: DeviceRecord; created: boolean }> {
    return this.devices.ensureDevice(input);
  }

  registerDevice(input: { spiffeId: string; fleet: string; name: string; profile: DeviceProfile; now: string }): Promise<DeviceRecord> {
    return this.devices.registerDevice(input);
  }

  recordHeartbeat(deviceId: string, installed: Omit<InstalledRecord, 'updatedAt'>[], now: string): Promise<void> {
    return this.devices.recordHeartbeat(deviceId, installed, now);
  }

  touchLastSeen(entries: ReadonlyArray<{ deviceId: string; at: string }>): Promise<void> {
    return this.devices.touchLastSeen(entries);
  }

  replaceInstalledSets(entries: ReadonlyArray<InstalledSetWrite>): Promise<string[]> {
    return this.devices.replaceInstalledSets(entries);
  }

  replaceInstalled(deviceId: string, installed: Omit<InstalledRecord, 'updatedAt'>[], now: string): Promise<void> {
    return this.devices.replaceInstalled(deviceId, installed, now);
  }

  decommissionDevice(deviceId: string, now: string): Promise<void> {
    return this.devices.decommissionDevice(deviceId, now);
  }

  markOffboardNotified(deviceId: string, now: string): Promise<boolean> {
    return this.devices.markOffboardNotified(deviceId, now);
  }

  listInstalled(deviceId: string): Promise<InstalledRecord[]> {
    return this.devices.listInstalled(deviceId);
  }

  // --- artifacts (sql-artifacts.ts)

  getArtifact(name: string, version: string): Promise<ArtifactRecord | undefined> {
    return this.artifacts.getArtifact(name, version);
  }

  getArtifactById(id: string): Promise<ArtifactRecord | undefined> {
    return this.artifacts.getArtifactById(id);
  }

  insertArtifact(a: NewArtifactRecord): Promise<void> {
    return this.artifacts.insertArtifact(a);
  }

  artifactNameOwner(name: string): Promise<string | undefined> {
    return this.artifacts.artifactNameOwner(name);
  }

  artifactHolders(artifact: Pick<ArtifactRecord, 'id' | 'name' | 'version'>, rolloutStatuses: readonly string[]): Promise<ArtifactHolders> {
    return this.artifacts.artifactHolders(artifact, rolloutStatuses);
  }

  markArtifactWithdrawn(id: string, now: string): Promise<boolean> {
    return this.artifacts.markArtifactWithdrawn(id, now);
  }

  // --- assignments (sql-assignments.ts) and status reports (sql-status-reports.ts)

  insertAssignment(a: AssignmentRecord): Promise<string[]> {
    return this.assignments.insertAssignment(a);
  }

  getAssignment(id: string): Promise<AssignmentRecord | undefined> {
    return this.assignments.getAssignment(id);
  }

  listDesiredArtifacts(deviceId: string): Promise<DesiredArtifact[]> {
    return this.assignments.listDesiredArtifacts(deviceId);
  }

  listStatusReports(assignmentId: string): Promise<StatusReportRecord[]> {
    return this.reports.listStatusReports(assignmentId);
  }

  recordStatusReport(r: NewStatusReport): Promise<boolean> {
    return this.reports.recordStatusReport(r);
  }

  recordStatusReports(reports: readonly NewStatusReport[]): Promise<boolean[]> {
    return this.reports.recordStatusReports(reports);
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
