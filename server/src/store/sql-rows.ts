// Column decoders shared by the repositories (rows come back as loosely typed records; on
// PostgreSQL, BIGINT and COUNT(*) arrive as strings, which num() reads the same way).
// Listings break timestamp ties by rowid, i.e. insertion order (PostgreSQL: an explicit
// BIGSERIAL column of that name, see migrations-postgres.ts).
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Db, Row } from './db.js';
import type { ArtifactRecord, AssignmentRecord, DeviceRecord, InstalledRecord, ProbeRecord } from './store.js';

export type { Row } from './db.js';

export const str = (v: unknown): string => String(v);
export const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
export const num = (v: unknown): number => Number(v);
export const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
/**
 * A derived table of text columns whose rows come in parameters (rowSetParams), for
 * `UPDATE ... FROM (...) AS s` on both engines. The statement's text is the same whatever the
 * number of rows, so it is prepared once per connection. It replaces a UNION ALL of one SELECT
 * per row: a new statement for every row count, which PostgreSQL spent longer planning than
 * running (333 rows: 56 ms of planning, 22 ms of execution on a quiet machine).
 *
 * PostgreSQL: one text array per column, `unnest`ed. Its planner knows an array's length, so
 * a batch of 32 reports joins the devices by primary key. (A JSON document through
 * `jsonb_to_recordset` is estimated at 100 rows whatever it holds, and the planner then hashed
 * the whole devices and assignments tables for every batch: during a wave's reports that
 * made every query wait, p99 2.5 s.) SQLite: one JSON array of objects through `json_each`,
 * materialized (below).
 */
export function textRowSet(dialect: Db['dialect'], columns: readonly string[]): string {
  if (dialect === 'postgres') return `SELECT * FROM unnest(${columns.map(() => 'CAST(? AS text[])').join(', ')}) AS r(${columns.join(', ')})`;
  // LIMIT -1 (none) keeps the subquery from being flattened into the join: it is materialized
  // once and the table is searched by key for each row. Flattened, SQLite drove the wave
  // start's UPDATE from rollout_devices (rollout_id = ?) and scanned the whole document for
  // each of its 10,000 rows: seconds with the event loop blocked at every wave start.
  return `SELECT ${columns.map((c) => `json_extract(value, '$.${c}') AS ${c}`).join(', ')} FROM json_each(?) LIMIT -1`;
}

/** Rows per textRowSet statement where a whole group (up to 100,000 devices) is read or written. */
const ROWSET_CHUNK = 2000;

/**
 * FN over ROWS, SIZE at a time, the event loop getting a turn between chunks: on SQLite every
 * statement runs synchronously, and a 100,000-device group read or written in one go (inside
 * the write lock) would hold every heartbeat until it finished.
 */
export async function forEachChunk<T>(rows: readonly T[], fn: (chunk: T[]) => Promise<void>, { size = ROWSET_CHUNK } = {}): Promise<void> {
  for (let i = 0; i < rows.length; i += size) {
    if (i > 0) await yieldToEventLoop();
    await fn(rows.slice(i, i + size));
  }
}

/** The parameters of a textRowSet: each row's values in the order of `columns`. */
export function rowSetParams(dialect: Db['dialect'], columns: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | null>>): unknown[] {
  if (dialect === 'postgres') return columns.map((_, i) => rows.map((row) => row[i] ?? null));
  return [JSON.stringify(rows.map((row) => Object.fromEntries(columns.map((c, i) => [c, row[i] ?? null]))))];
}

/** `(?, ?), (?, ?)`: the placeholders of a multi-row VALUES list. */
export function valueRows(rows: number, columns: number): string {
  const row = `(${Array.from({ length: columns }, () => '?').join(', ')})`;
  return Array.from({ length: rows }, () => row).join(', ');
}

/** The parameter of a textRowSet: each row's values in the order of `columns`. */
export function rowSetJson(columns: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | null>>): string {
  return JSON.stringify(rows.map((row) => Object.fromEntries(columns.map((c, i) => [c, row[i] ?? null]))));
}

export const json = <T>(v: unknown, fallback: T): T => (typeof v === 'string' && v !== '' ? (JSON.parse(v) as T) : fallback);

/** A stored probe column (JSON text); an empty probe for a NULL or empty one. */
export const probeFromColumn = (v: unknown): ProbeRecord => json<ProbeRecord>(v, { type: '', spec: {}, timeoutSeconds: 0, attempts: 0, initialDelaySeconds: 0 });

/** Shared by the device repository and the operator listings. */
export function deviceFromRow(r: Row): DeviceRecord {
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

/** `prefix`: the column prefix when the artifact's columns come from a join. */
export function artifactFromRow(r: Row, prefix = ''): ArtifactRecord {
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
    fleet: str(r[`${prefix}fleet`]),
    withdrawnAt: strOrNull(r[`${prefix}withdrawn_at`]),
  };
}

/** Rows per multi-row INSERT of reports and installed items (SQLite's parameter limit is 32,766). */
export const REPORT_SLICE = 1000;

export const ARTIFACT_COLUMNS = ['id', 'name', 'version', 'kind', 'file_name', 'target_path', 'sha256', 'length', 'spec', 'created_at', 'fleet', 'withdrawn_at'];

export const ASSIGNMENT_COLUMNS = ['id', 'device_id', 'artifact_id', 'artifact_name', 'rollout_id', 'probe', 'state', 'reason', 'active', 'created_at', 'updated_at'];

/** `prefix`: the column prefix when the assignment's columns come from a join. */
export function assignmentFromRow(r: Row, prefix = ''): AssignmentRecord {
  return {
    id: str(r[`${prefix}id`]),
    deviceId: str(r[`${prefix}device_id`]),
    artifactId: str(r[`${prefix}artifact_id`]),
    artifactName: str(r[`${prefix}artifact_name`]),
    rolloutId: strOrNull(r[`${prefix}rollout_id`]),
    probe: probeFromColumn(r[`${prefix}probe`]),
    state: str(r[`${prefix}state`]) as AssignmentRecord['state'],
    reason: str(r[`${prefix}reason`]),
    active: num(r[`${prefix}active`]) === 1,
    createdAt: str(r[`${prefix}created_at`]),
    updatedAt: str(r[`${prefix}updated_at`]),
  };
}

export function installedFromRow(r: Row): InstalledRecord {
  return { name: str(r.name), kind: str(r.kind), version: str(r.version), sha256: str(r.sha256), state: str(r.state), updatedAt: str(r.updated_at) };
}

/**
 * A table whose columns are the record's fields in snake_case, one for one (enrollment
 * tokens, certificates, log requests): the decoder map is the single list of columns, so the
 * row mapper and the INSERT's column list and placeholders cannot drift apart. The map's
 * keys must cover the record (the type says so); its order is the INSERT's column order.
 */
export interface FlatTable<T> {
  /** A property, not a method: `rows.map(table.fromRow)` passes it on its own. */
  fromRow: (r: Row) => T;
  insert(db: Db, record: T): Promise<void>;
}

export function flatTable<T extends object>(table: string, decoders: { [K in keyof T]-?: (v: unknown) => T[K] }): FlatTable<T> {
  const fields = Object.keys(decoders) as (keyof T & string)[];
  const columns = fields.map((f) => f.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`));
  const insertSql = `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`;
  return {
    fromRow: (r: Row): T => {
      const record = {} as T;
      fields.forEach((f, i) => {
        record[f] = decoders[f](r[columns[i]!]);
      });
      return record;
    },
    async insert(db: Db, record: T): Promise<void> {
      await db.run(
        insertSql,
        fields.map((f) => record[f]),
      );
    },
  };
}
