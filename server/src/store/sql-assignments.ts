// Assignments for SqlStore: what each device should run, and what a heartbeat answers.
import type { Db } from './db.js';
import { lockDevices } from './row-locks.js';
import { ARTIFACT_COLUMNS, artifactFromRow, assignmentFromRow, str } from './sql-rows.js';
import type { AssignmentRecord, DesiredArtifact } from './store.js';

export class SqlAssignments {
  constructor(
    private readonly db: Db,
    private readonly withWriteLock: <T>(fn: () => Promise<T>) => Promise<T>,
  ) {}

  insertAssignment(a: AssignmentRecord): Promise<string[]> {
    return this.withWriteLock(async () => {
      // The device's row first (row-locks.ts): a wave start of a rollout (no global lock)
      // supersedes the same device's assignments under the same lock, so one of the two
      // sees the other's and the device never ends with two active ones of one name.
      await lockDevices(this.db, [a.deviceId]);
      const superseded = (await this.db.all('SELECT id FROM assignments WHERE device_id = ? AND artifact_name = ? AND active = 1', [a.deviceId, a.artifactName])).map((r) =>
        str(r.id),
      );
      await this.db.run('UPDATE assignments SET active = 0, updated_at = ? WHERE device_id = ? AND artifact_name = ? AND active = 1', [a.createdAt, a.deviceId, a.artifactName]);
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
}
