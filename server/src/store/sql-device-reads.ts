// What a heartbeat that is not answered from memory reads: its device (with whether a log
// request waits) and the device's desired artifacts. Shared by the one-device reads and the
// batch read of many heartbeats (batched-reads.ts), so both answer the same.
import type { Db } from './db.js';
import { ARTIFACT_COLUMNS, deviceFromRow, rowSetParams, str, textRowSet, type Row } from './sql-rows.js';
import type { CallingDevice } from './store.js';

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

