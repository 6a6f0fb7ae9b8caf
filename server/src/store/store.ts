// The persistence boundary: every SQL statement of the server lives behind this interface.
// One implementation (sql-store.ts) over two engines (db.ts): SQLite, the embedded default,
// and PostgreSQL for several replicas serving one fleet. Every method is async.
import type { ArtifactState, Capability, HardwareProfile } from '@meshanics/core/contract';
import type { AuditListFilter, GroupStore, RolloutStore } from './store-rollouts.js';

export type * from './store-rollouts.js';
import type { ApiKeyStore, OperatorViewStore } from './store-api.js';

export type * from './store-api.js';

export interface ReportingDevice {
  device: DeviceRecord;
  /** Undefined when no such assignment exists or it is another device's. */
  assignment?: AssignmentRecord;
  artifact?: ArtifactRecord;
}

export interface CallingDevice {
  device: DeviceRecord;
  /** Digest of the stored installed set (installed-digest.ts); null: unknown, write the set. */
  installedDigest: string | null;
  /** True when a log request for the device waits for its upload. */
  pendingLogRequests: boolean;
}

export interface DeviceRecord {
  id: string;
  spiffeId: string;
  fleet: string;
  name: string;
  hardware: HardwareProfile | null;
  agentVersion: string | null;
  tags: Record<string, string>;
  capabilities: Capability[];
  heartbeatIntervalSeconds: number | null;
  createdAt: string;
  registeredAt: string | null;
  lastSeenAt: string | null;
  lastReportSeq: number;
  decommissionedAt: string | null;
  /** When a heartbeat told the decommissioned device it is offboarded (it is refused after that). */
  offboardNotifiedAt: string | null;
}

export interface ArtifactRecord {
  id: string;
  name: string;
  version: string;
  kind: string;
  fileName: string;
  targetPath: string;
  sha256: string;
  length: number;
  spec: Record<string, unknown>;
  /** Optional operator-supplied manifest, signed into the TUF target with the spec (migration 4). */
  manifest?: Record<string, unknown> | null;
  createdAt: string;
  /** The fleet the artifact belongs to, or `*` for every fleet (migration 8). */
  fleet: string;
  /** When it was taken out of the signed targets; null while it is published (migration 8). */
  withdrawnAt: string | null;
}

/** An artifact to record: `fleet` defaults to `*` (every fleet), as the column does. */
export type NewArtifactRecord = Omit<ArtifactRecord, 'fleet' | 'withdrawnAt'> & { fleet?: string };

/** What still holds an artifact version, so it may not be withdrawn (at most 100 of each). */
export interface ArtifactHolders {
  /** Rollouts in one of the given statuses that roll it out or would revert devices to it. */
  rollouts: Array<{ id: string; status: string }>;
  /** Devices (not decommissioned) with an active assignment of it, or running it. */
  devices: Array<{ fleet: string; name: string; holds: 'assigned' | 'installed' }>;
}

export interface ProbeRecord {
  type: string;
  spec: Record<string, unknown>;
  timeoutSeconds: number;
  attempts: number;
  initialDelaySeconds: number;
}

/** PENDING until the device first reports; then the last reported ArtifactState. */
export type AssignmentState = 'PENDING' | ArtifactState;

export interface AssignmentRecord {
  id: string;
  deviceId: string;
  artifactId: string;
  artifactName: string;
  rolloutId: string | null;
  probe: ProbeRecord;
  state: AssignmentState;
  reason: string;
  active: boolean;
  createdAt: string;
  updatedAt: string;
}

/** An active assignment joined with the artifact it points at (what a heartbeat returns). */
export interface DesiredArtifact {
  assignment: AssignmentRecord;
  artifact: ArtifactRecord;
}

/** A stored report: what the device sent (`NewStatusReport` without the installed set) and its row id. */
export interface StatusReportRecord extends Omit<NewStatusReport, 'installed'> {
  id: number;
}

export interface InstalledRecord {
  name: string;
  kind: string;
  version: string;
  sha256: string;
  state: string;
  updatedAt: string;
}

/** An installed set a heartbeat listed, to be written if nothing changed the stored one since. */
export interface InstalledSetWrite {
  deviceId: string;
  installed: ReadonlyArray<Omit<InstalledRecord, 'updatedAt'>>;
  /** The stored digest the heartbeat saw (null: none stored). */
  expectedDigest: string | null;
  at: string;
}

export interface AuditEventRecord {
  id: number;
  /** Position in the hash chain, from 1. */
  seq: number;
  at: string;
  actor: string;
  action: string;
  subject: string;
  details: Record<string, unknown>;
  /** Hash of the event before (64 zeros for the first). */
  prevHash: string;
  hash: string;
}

export interface NewAuditEvent {
  actor: string;
  action: string;
  subject: string;
  details?: Record<string, unknown>;
  at?: string;
}

export interface DeviceProfile {
  hardware: HardwareProfile | null;
  agentVersion: string;
  tags: Record<string, string>;
  capabilities: Capability[];
}

export interface NewStatusReport {
  deviceId: string;
  assignmentId: string;
  sequence: number;
  state: ArtifactState;
  reason: string;
  bytesDone: number;
  bytesTotal: number;
  deviceTime: string;
  receivedAt: string;
  /** Set when the report makes the artifact the device's installed version (HEALTHY). */
  installed?: Omit<InstalledRecord, 'updatedAt'>;
}

export interface EnrollmentTokenRecord {
  id: string;
  /** Hex sha256 of the token text; the token itself is never stored. */
  tokenSha256: string;
  fleet: string;
  /** When set, the token enrolls only a device of this name. */
  deviceName: string | null;
  usesTotal: number;
  usesLeft: number;
  createdAt: string;
  createdBy: string;
  expiresAt: string;
  revokedAt: string | null;
  revokedBy: string | null;
}

export type CertificateReason = 'enrollment' | 'renewal' | 'operator';

export interface DeviceCertificateRecord {
  serialNumber: string;
  deviceId: string;
  publicKeySha256: string;
  notBefore: string;
  notAfter: string;
  issuedAt: string;
  reason: CertificateReason;
  enrollmentTokenId: string | null;
}

export interface LogRequestRecord {
  id: string;
  deviceId: string;
  /** ISO 8601; null means unbounded. */
  since: string | null;
  until: string | null;
  maxBytes: number;
  requestedAt: string;
  requestedBy: string;
  fulfilledAt: string | null;
  sizeBytes: number | null;
  sha256: string | null;
}

/** A log request with the device it asks, for operator listings. */
export interface LogRequestWithDevice extends LogRequestRecord {
  fleet: string;
  deviceName: string;
}

export interface EnrollmentTokenStore {
  insert(token: EnrollmentTokenRecord): Promise<void>;
  get(id: string): Promise<EnrollmentTokenRecord | undefined>;
  getByHash(tokenSha256: string): Promise<EnrollmentTokenRecord | undefined>;
  list(filter?: { fleet?: string }): Promise<EnrollmentTokenRecord[]>;
  /** Sets revoked_at unless already set; false when the token was already revoked or does not exist. */
  revoke(id: string, now: string, actor: string): Promise<boolean>;
  /** Takes one use of a live, unrevoked token with uses left; false (nothing changed) otherwise. */
  consumeUse(id: string, now: string): Promise<boolean>;
}

export interface CertificateStore {
  insert(certificate: DeviceCertificateRecord): Promise<void>;
  listForDevice(deviceId: string): Promise<DeviceCertificateRecord[]>;
}

export interface LogRequestStore {
  insert(request: LogRequestRecord): Promise<void>;
  get(id: string): Promise<LogRequestRecord | undefined>;
  list(filter?: { fleet?: string; deviceName?: string }): Promise<LogRequestWithDevice[]>;
  listPending(deviceId: string): Promise<LogRequestRecord[]>;
  /** Marks a pending request fulfilled; false when it already was (a concurrent upload won). */
  fulfill(id: string, result: { sizeBytes: number; sha256: string; now: string }): Promise<boolean>;
}

export interface Store {
  /**
   * Runs `fn` holding the database write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: a
   * transaction holding the global write advisory lock). Other processes' and replicas'
   * withWriteLock transactions wait for it (withRowLocks ones wait only for the rows they share), which is what serializes TUF publishing across a running `serve`, other replicas
   * and CLI invocations. Calls made inside `fn` (same async context) join the transaction (as
   * a savepoint). Commits when `fn` resolves, rolls back when it rejects. Never await, inside
   * `fn`, a promise started outside it that uses the store: it would wait for `fn` to end.
   */
  withWriteLock<T>(fn: () => T | Promise<T>): Promise<T>;
  /**
   * Runs `fn` in a write transaction that takes no global lock on PostgreSQL: only the row
   * locks its statements take (row-locks.ts gives their order; docs/architecture.md "Write
   * locks on PostgreSQL" what each protects), so replicas' status reports, liveness writes
   * and rollout steps of different rollouts run side by side. Only for bodies whose store
   * calls take the locks they need themselves (recordStatusReports, appendAuditEvents,
   * rollout decisions through rollouts.lockForDecision). SQLite: as withWriteLock.
   */
  withRowLocks<T>(fn: () => T | Promise<T>): Promise<T>;
  readonly dialect: 'sqlite' | 'postgres';
  schemaVersion(): Promise<number>;
  /** One round trip to the database (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;

  /**
   * Starts following committed changes to what heartbeats are answered from (migration 6's
   * triggers; see DeviceStateFeed). One feed per store.
   */
  openDeviceStateFeed(onChange: DeviceStateChangeListener, options?: DeviceStateFeedOptions): Promise<DeviceStateFeed>;

  /** Liveness only, for many devices at once (the heartbeat batcher's flush). */
  touchLastSeen(entries: ReadonlyArray<{ deviceId: string; at: string }>): Promise<void>;
  /**
   * Installed sets from heartbeats, for many devices at once (the heartbeat batcher's flush).
   * Each replaces the stored set only while the stored digest is still `expectedDigest`, the
   * one the heartbeat was answered against; returns the devices written.
   */
  replaceInstalledSets(entries: ReadonlyArray<InstalledSetWrite>): Promise<string[]>;
  /** Replaces the installed set with what the device reported (only when it changed). */
  replaceInstalled(deviceId: string, installed: Omit<InstalledRecord, 'updatedAt'>[], now: string): Promise<void>;
  countDevices(): Promise<number>;

  getDeviceById(id: string): Promise<DeviceRecord | undefined>;
  getDeviceBySpiffeId(spiffeId: string): Promise<DeviceRecord | undefined>;
  /** The device behind a device API call, with what a heartbeat needs to skip queries. */
  getCallingDevice(spiffeId: string): Promise<CallingDevice | undefined>;
  /**
   * The device behind a status report and, when it is that device's, the assignment reported
   * on with its artifact: one statement for what every report reads.
   */
  getReportingDevice(spiffeId: string, assignmentId: string): Promise<ReportingDevice | undefined>;
  getDeviceByName(fleet: string, name: string): Promise<DeviceRecord | undefined>;
  /** The devices of FLEET with these names, by name; names that match none are absent. */
  getDevicesByNames(fleet: string, names: readonly string[]): Promise<Map<string, DeviceRecord>>;
  /** Creates the (not yet registered) device row if it does not exist. */
  ensureDevice(input: { spiffeId: string; fleet: string; name: string; now: string }): Promise<{ device: DeviceRecord; created: boolean }>;
  /** Idempotent upsert keyed by SPIFFE ID that refreshes the device profile. */
  registerDevice(input: { spiffeId: string; fleet: string; name: string; profile: DeviceProfile; now: string }): Promise<DeviceRecord>;
  /** Records liveness and replaces the installed set with what the device reported. */
  recordHeartbeat(deviceId: string, installed: Omit<InstalledRecord, 'updatedAt'>[], now: string): Promise<void>;
  decommissionDevice(deviceId: string, now: string): Promise<void>;
  /** Records that the decommissioned device was told so; true only for the first caller. */
  markOffboardNotified(deviceId: string, now: string): Promise<boolean>;
  listInstalled(deviceId: string): Promise<InstalledRecord[]>;

  /** The version, withdrawn or not (withdrawnAt says). */
  getArtifact(name: string, version: string): Promise<ArtifactRecord | undefined>;
  getArtifactById(id: string): Promise<ArtifactRecord | undefined>;
  insertArtifact(artifact: NewArtifactRecord): Promise<void>;
  /** The fleet (or `*`) that owns an artifact name: the fleet of its versions; undefined when none was ever published. */
  artifactNameOwner(name: string): Promise<string | undefined>;
  /** What holds the version: rollouts in `rolloutStatuses`, devices assigned it or running it. */
  artifactHolders(artifact: Pick<ArtifactRecord, 'id' | 'name' | 'version'>, rolloutStatuses: readonly string[]): Promise<ArtifactHolders>;
  /** Marks the version withdrawn; false when it already was (or does not exist). */
  markArtifactWithdrawn(id: string, now: string): Promise<boolean>;

  /** Inserts an active assignment; deactivates any active one for the same artifact name. Returns superseded ids. */
  insertAssignment(assignment: AssignmentRecord): Promise<string[]>;
  getAssignment(id: string): Promise<AssignmentRecord | undefined>;
  listDesiredArtifacts(deviceId: string): Promise<DesiredArtifact[]>;
  listStatusReports(assignmentId: string): Promise<StatusReportRecord[]>;
  /**
   * Stores one status report unless its sequence is not above the device's last one
   * (then returns false and stores nothing). Report, assignment state, last_report_seq and
   * installed change together or not at all.
   */
  recordStatusReport(report: NewStatusReport): Promise<boolean>;
  /**
   * recordStatusReport for many reports in a few statements (several of one device are taken
   * in the order given). One flag per report, in order. Inside a write transaction it joins it
   * without a savepoint: if it throws, let that transaction fail.
   */
  recordStatusReports(reports: readonly NewStatusReport[]): Promise<boolean[]>;

  readonly enrollmentTokens: EnrollmentTokenStore;
  readonly certificates: CertificateStore;
  readonly logRequests: LogRequestStore;

  readonly groups: GroupStore;
  readonly rollouts: RolloutStore;
  /** Operator API keys (REST API authentication). */
  readonly apiKeys: ApiKeyStore;
  /** Paginated read models of the operator API. */
  readonly operatorViews: OperatorViewStore;

  /**
   * Appends one event to the hash chain (seq, prev_hash and hash computed under the chain's
   * lock; on PostgreSQL at commit, so inside a transaction the record returned is complete
   * only once that transaction has committed).
   */
  appendAudit(event: NewAuditEvent): Promise<AuditEventRecord>;
  /**
   * Appends events to the hash chain in the order given, in one statement. Inside a write
   * transaction it joins it without a savepoint: if it throws, let that transaction fail.
   */
  appendAuditEvents(events: readonly NewAuditEvent[]): Promise<AuditEventRecord[]>;
  listAudit(filter?: AuditListFilter): Promise<AuditEventRecord[]>;
  countAudit(filter?: Pick<AuditListFilter, 'subject' | 'action'>): Promise<number>;
}

/** Called with the id of a device whose heartbeat answer may have changed; null: any device's. */
export type DeviceStateChangeListener = (deviceId: string | null) => void;

export interface DeviceStateFeedOptions {
  /** Where the feed reports losing and regaining its source (PostgreSQL: the LISTEN connection). */
  onStatus?: (event: { following: boolean; error?: unknown }) => void;
}

/**
 * Every committed change to a device's heartbeat answer, delivered to the listener, whoever
 * made it (this process, another replica, the CLI). A cache may use what it holds of a device
 * only while `caughtUp(deviceId)` is true: then every change of that device committed so far,
 * and every write this process has finished, has been delivered (without a device: of every
 * device). While the feed cannot follow (its connection is lost) it says false and, when it
 * follows again, reports a change of every device.
 */
export interface DeviceStateFeed {
  caughtUp(deviceId?: string): boolean;
  close(): Promise<void>;
}
