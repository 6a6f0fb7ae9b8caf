// What the device API reads for a call. A heartbeat that is not answered from memory: its
// device (with whether a log request waits) and the device's desired artifacts. A status
// report: its device, the assignment reported on and its artifact. Shared by the one-device
// reads and the batch reads of many calls (batched-reads.ts), so both answer the same.
import type { Db } from './db.js';
import { ARTIFACT_COLUMNS, ASSIGNMENT_COLUMNS, deviceFromRow, rowSetParams, str, textRowSet, type Row } from './sql-rows.js';
import type { CallingDevice, ReportRead } from './store.js';

/**
 * The device and whether a log request waits for it (rare): one statement, so a heartbeat
 * runs the pending-requests query only when there is one.
 */
export const CALLING_DEVICE_SELECT = `SELECT d.*, EXISTS (SELECT 1 FROM log_requests l WHERE l.device_id = d.id AND l.fulfilled_at IS NULL) AS pending_logs
  FROM devices d`;

export function callingDeviceFromRow(r: Row): CallingDevice {
  return {
    device: deviceFromRow(r),
    installedDigest: r.installed_digest == null ? null : str(r.installed_digest),
    // SQLite answers 0/1, PostgreSQL a boolean.
    pendingLogRequests: r.pending_logs === true || Number(r.pending_logs) === 1,
  };
}

const DESIRED_COLUMNS = `a.*, ${ARTIFACT_COLUMNS.map((c) => `ar.${c} AS ar_${c}`).join(', ')}`;
const DESIRED_FROM = 'FROM assignments a JOIN artifacts ar ON ar.id = a.artifact_id';
/** Assignments `a` with their artifacts' columns prefixed `ar_`. */
export const DESIRED_SELECT = `SELECT ${DESIRED_COLUMNS} ${DESIRED_FROM}`;

/** Which of a device's assignments it is told to have. A halted or aborted rollout serves no new assignment (a revert is not new). */
export const DESIRED_CONDITION = `a.active = 1
  AND NOT (a.state = 'PENDING' AND a.rollout_id IS NOT NULL
    AND EXISTS (SELECT 1 FROM rollouts r WHERE r.id = a.rollout_id AND r.status IN ('halted', 'aborted'))
    AND NOT EXISTS (SELECT 1 FROM rollout_devices rd WHERE rd.revert_assignment_id = a.id))`;

const CERTIFICATE_COLUMNS = ['spiffe_id'] as const;

/**
 * The two statements of a batch read, taking the same parameters: the devices of these
 * certificates, and their desired artifacts (each row naming its certificate in
 * `calling_spiffe_id`). Both find the devices by certificate through the unique index on
 * spiffe_id, so neither needs the other's answer.
 */
export function heartbeatStateStatements(dialect: Db['dialect'], spiffeIds: readonly string[]): { devices: string; desired: string; params: unknown[] } {
  const certificates = `SELECT spiffe_id FROM (${textRowSet(dialect, CERTIFICATE_COLUMNS)}) AS c`;
  return {
    devices: `${CALLING_DEVICE_SELECT} WHERE d.spiffe_id IN (${certificates})`,
    desired: `SELECT d.spiffe_id AS calling_spiffe_id, ${DESIRED_COLUMNS} ${DESIRED_FROM} JOIN devices d ON d.id = a.device_id
      WHERE d.spiffe_id IN (${certificates}) AND ${DESIRED_CONDITION} ORDER BY a.artifact_name`,
    params: rowSetParams(dialect, CERTIFICATE_COLUMNS, spiffeIds.map((id) => [id])),
  };
}

const REPORT_COLUMNS = ['spiffe_id', 'assignment_id'] as const;

/**
 * One statement for a batch of status reports: per report its device (found by certificate)
 * and, when it is that device's, the assignment with its artifact (`as_`/`ar_` prefixes). Each
 * row names the report it answers in `req_spiffe_id` and `req_assignment_id`; a report whose
 * certificate has no device has no row.
 */
export function reportingDevicesStatement(dialect: Db['dialect'], requests: ReadonlyArray<ReportRead>): { sql: string; params: unknown[] } {
  return {
    sql: `SELECT c.spiffe_id AS req_spiffe_id, c.assignment_id AS req_assignment_id, d.*,
        ${ASSIGNMENT_COLUMNS.map((col) => `a.${col} AS as_${col}`).join(', ')}, ${ARTIFACT_COLUMNS.map((col) => `ar.${col} AS ar_${col}`).join(', ')}
      FROM (${textRowSet(dialect, REPORT_COLUMNS)}) AS c
      JOIN devices d ON d.spiffe_id = c.spiffe_id
      LEFT JOIN assignments a ON a.id = c.assignment_id AND a.device_id = d.id
      LEFT JOIN artifacts ar ON ar.id = a.artifact_id`,
    params: rowSetParams(dialect, REPORT_COLUMNS, requests.map((q) => [q.spiffeId, q.assignmentId])),
  };
}
