// Rollouts, their stored wave split and wave starts, for SqliteStore. The rollout engine
// (rollouts/) groups these statements under Store.withWriteLock: one decision, one transaction.
import type Database from 'better-sqlite3';
import { json, num, str, strOrNull, type Row } from './sqlite-rows.js';
import type {
  AssignmentState,
  ProbeRecord,
  RolloutAssignmentState,
  RolloutDeviceView,
  RolloutRecord,
  RolloutStatusValue,
  RolloutStore,
  RolloutUpdate,
  RolloutWaveStart,
} from './store.js';

function rolloutFromRow(r: Row): RolloutRecord {
  return {
    id: str(r.id),
    fleet: str(r.fleet),
    artifactId: str(r.artifact_id),
    artifactName: str(r.artifact_name),
    group: str(r.group_name),
    probe: json<ProbeRecord>(r.probe, { type: '', spec: {}, timeoutSeconds: 0, attempts: 0, initialDelaySeconds: 0 }),
    strategy: json(r.strategy, { waves: [], max_failure_rate: 0 }),
    status: str(r.status) as RolloutStatusValue,
    currentWave: num(r.current_wave),
    acknowledgedFailures: num(r.acknowledged_failures),
    halt: json(r.halt, null),
    abortPolicy: strOrNull(r.abort_policy) as RolloutRecord['abortPolicy'],
    createdBy: str(r.created_by),
    createdAt: str(r.created_at),
    updatedAt: str(r.updated_at),
    finishedAt: strOrNull(r.finished_at),
  };
}

function assignmentState(r: Row, prefix: string): RolloutAssignmentState | null {
  if (r[`${prefix}id`] === null || r[`${prefix}id`] === undefined) return null;
  return {
    id: str(r[`${prefix}id`]),
    state: str(r[`${prefix}state`]) as AssignmentState,
    reason: str(r[`${prefix}reason`]),
    active: num(r[`${prefix}active`]) === 1,
    createdAt: str(r[`${prefix}created_at`]),
    updatedAt: str(r[`${prefix}updated_at`]),
  };
}

const UPDATABLE: Record<keyof RolloutUpdate, { column: string; encode: (v: unknown) => unknown }> = {
  status: { column: 'status', encode: (v) => v },
  currentWave: { column: 'current_wave', encode: (v) => v },
  acknowledgedFailures: { column: 'acknowledged_failures', encode: (v) => v },
  halt: { column: 'halt', encode: (v) => (v === null ? null : JSON.stringify(v)) },
  abortPolicy: { column: 'abort_policy', encode: (v) => v },
  finishedAt: { column: 'finished_at', encode: (v) => v },
};

export class SqliteRollouts implements RolloutStore {
  constructor(
    private readonly db: Database.Database,
    private readonly withWriteLock: <T>(fn: () => T) => T,
  ) {}

  insert(r: RolloutRecord, devices: Array<{ deviceId: string; wave: number; position: number }>): void {
    this.withWriteLock(() => {
      this.db
        .prepare(
          `INSERT INTO rollouts (id, fleet, artifact_id, artifact_name, group_name, probe, strategy, status, current_wave,
             acknowledged_failures, halt, abort_policy, created_by, created_at, updated_at, finished_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          r.id,
          r.fleet,
          r.artifactId,
          r.artifactName,
          r.group,
          JSON.stringify(r.probe),
          JSON.stringify(r.strategy),
          r.status,
          r.currentWave,
          r.acknowledgedFailures,
          r.halt === null ? null : JSON.stringify(r.halt),
          r.abortPolicy,
          r.createdBy,
          r.createdAt,
          r.updatedAt,
          r.finishedAt,
        );
      const insert = this.db.prepare(
        'INSERT INTO rollout_devices (rollout_id, device_id, artifact_name, active, wave, position) VALUES (?, ?, ?, 1, ?, ?)',
      );
      for (const d of devices) insert.run(r.id, d.deviceId, r.artifactName, d.wave, d.position);
    });
  }

  get(id: string): RolloutRecord | undefined {
    const r = this.db.prepare('SELECT * FROM rollouts WHERE id = ?').get(id) as Row | undefined;
    return r ? rolloutFromRow(r) : undefined;
  }

  list(filter: { fleet?: string; status?: RolloutStatusValue; limit: number; offset: number }): { items: RolloutRecord[]; total: number } {
    const where = '(@fleet IS NULL OR fleet = @fleet) AND (@status IS NULL OR status = @status)';
    const params = { fleet: filter.fleet ?? null, status: filter.status ?? null };
    const total = num((this.db.prepare(`SELECT COUNT(*) AS n FROM rollouts WHERE ${where}`).get(params) as Row).n);
    const rows = this.db
      .prepare(`SELECT * FROM rollouts WHERE ${where} ORDER BY created_at DESC, rowid DESC LIMIT @limit OFFSET @offset`)
      .all({ ...params, limit: filter.limit, offset: filter.offset }) as Row[];
    return { items: rows.map(rolloutFromRow), total };
  }

  listIds(statuses: readonly RolloutStatusValue[]): string[] {
    if (statuses.length === 0) return [];
    const rows = this.db
      .prepare(`SELECT id FROM rollouts WHERE status IN (${statuses.map(() => '?').join(', ')}) ORDER BY created_at, rowid`)
      .all(...statuses) as Row[];
    return rows.map((r) => str(r.id));
  }

  update(id: string, patch: RolloutUpdate, now: string): void {
    const keys = (Object.keys(patch) as Array<keyof RolloutUpdate>).filter((k) => patch[k] !== undefined);
    const sets = keys.map((k) => `${UPDATABLE[k].column} = ?`);
    this.db
      .prepare(`UPDATE rollouts SET ${[...sets, 'updated_at = ?'].join(', ')} WHERE id = ?`)
      .run(...keys.map((k) => UPDATABLE[k].encode(patch[k])), now, id);
  }

  listDevices(rolloutId: string): RolloutDeviceView[] {
    const cols = ['id', 'state', 'reason', 'active', 'created_at', 'updated_at'];
    const rows = this.db
      .prepare(
        `SELECT rd.*, d.name AS device_name, d.decommissioned_at AS device_decommissioned_at,
           ${cols.map((c) => `a.${c} AS a_${c}`).join(', ')}, ${cols.map((c) => `ra.${c} AS ra_${c}`).join(', ')}
         FROM rollout_devices rd
         JOIN devices d ON d.id = rd.device_id
         LEFT JOIN assignments a ON a.id = rd.assignment_id
         LEFT JOIN assignments ra ON ra.id = rd.revert_assignment_id
         WHERE rd.rollout_id = ? ORDER BY rd.position`,
      )
      .all(rolloutId) as Row[];
    return rows.map((r) => ({
      rolloutId: str(r.rollout_id),
      deviceId: str(r.device_id),
      wave: num(r.wave),
      position: num(r.position),
      assignmentId: strOrNull(r.assignment_id),
      assignedAt: strOrNull(r.assigned_at),
      previousVersion: strOrNull(r.previous_version),
      previousArtifactId: strOrNull(r.previous_artifact_id),
      revertAssignmentId: strOrNull(r.revert_assignment_id),
      revertNote: strOrNull(r.revert_note),
      revertedAt: strOrNull(r.reverted_at),
      deviceName: str(r.device_name),
      decommissioned: r.device_decommissioned_at !== null,
      assignment: assignmentState(r, 'a_'),
      revert: assignmentState(r, 'ra_'),
    }));
  }

  busyDevices(deviceIds: readonly string[], artifactName: string): Array<{ deviceId: string; rolloutId: string }> {
    const busy: Array<{ deviceId: string; rolloutId: string }> = [];
    const stmt = this.db.prepare('SELECT rollout_id FROM rollout_devices WHERE device_id = ? AND artifact_name = ? AND active = 1');
    for (const deviceId of deviceIds) {
      const r = stmt.get(deviceId, artifactName) as Row | undefined;
      if (r) busy.push({ deviceId, rolloutId: str(r.rollout_id) });
    }
    return busy;
  }

  setDeviceAssignment(
    rolloutId: string,
    deviceId: string,
    input: { assignmentId: string; assignedAt: string; previousVersion: string | null; previousArtifactId: string | null },
  ): void {
    this.db
      .prepare(
        `UPDATE rollout_devices SET assignment_id = ?, assigned_at = ?, previous_version = ?, previous_artifact_id = ?
         WHERE rollout_id = ? AND device_id = ?`,
      )
      .run(input.assignmentId, input.assignedAt, input.previousVersion, input.previousArtifactId, rolloutId, deviceId);
  }

  setDeviceRevert(rolloutId: string, deviceId: string, input: { revertAssignmentId: string | null; revertNote: string | null; revertedAt: string }): void {
    this.db
      .prepare('UPDATE rollout_devices SET revert_assignment_id = ?, revert_note = ?, reverted_at = ? WHERE rollout_id = ? AND device_id = ?')
      .run(input.revertAssignmentId, input.revertNote, input.revertedAt, rolloutId, deviceId);
  }

  releaseDevices(rolloutId: string): void {
    this.db.prepare('UPDATE rollout_devices SET active = 0 WHERE rollout_id = ?').run(rolloutId);
  }

  deactivatePendingAssignments(rolloutId: string, now: string): string[] {
    return this.withWriteLock(() => {
      const ids = (
        this.db
          .prepare(
            `SELECT a.id FROM assignments a JOIN rollout_devices rd ON rd.assignment_id = a.id
             WHERE rd.rollout_id = ? AND a.active = 1 AND a.state = 'PENDING'`,
          )
          .all(rolloutId) as Row[]
      ).map((r) => str(r.id));
      const deactivate = this.db.prepare('UPDATE assignments SET active = 0, updated_at = ? WHERE id = ?');
      for (const id of ids) deactivate.run(now, id);
      return ids;
    });
  }

  lastHealthyProbe(deviceId: string, artifactId: string): ProbeRecord | undefined {
    const r = this.db
      .prepare(
        `SELECT probe FROM assignments WHERE device_id = ? AND artifact_id = ? AND state = 'HEALTHY'
         ORDER BY updated_at DESC, rowid DESC LIMIT 1`,
      )
      .get(deviceId, artifactId) as Row | undefined;
    return r ? json<ProbeRecord>(r.probe, { type: '', spec: {}, timeoutSeconds: 0, attempts: 0, initialDelaySeconds: 0 }) : undefined;
  }

  recordWaveStart(rolloutId: string, start: RolloutWaveStart): void {
    this.db
      .prepare('INSERT INTO rollout_waves (rollout_id, wave, started_at, started_by) VALUES (?, ?, ?, ?)')
      .run(rolloutId, start.wave, start.startedAt, start.startedBy);
  }

  listWaveStarts(rolloutId: string): RolloutWaveStart[] {
    return (this.db.prepare('SELECT * FROM rollout_waves WHERE rollout_id = ? ORDER BY wave').all(rolloutId) as Row[]).map((r) => ({
      wave: num(r.wave),
      startedAt: str(r.started_at),
      startedBy: str(r.started_by),
    }));
  }
}
