// The artifact catalog for SqlStore: versions, the fleet that owns each name (migration 8),
// what still holds a version, and withdrawal.
import type { Db } from './db.js';
import { artifactFromRow, str } from './sql-rows.js';
import type { ArtifactHolders, ArtifactRecord, NewArtifactRecord } from './store.js';

/** Holders listed per kind: enough to name them in a refusal, bounded whatever the fleet's size. */
const HOLDERS_LISTED = 100;

export class SqlArtifacts {
  constructor(private readonly db: Db) {}

  async getArtifact(name: string, version: string): Promise<ArtifactRecord | undefined> {
    const r = await this.db.get('SELECT * FROM artifacts WHERE name = ? AND version = ?', [name, version]);
    return r ? artifactFromRow(r) : undefined;
  }

  async getArtifactById(id: string): Promise<ArtifactRecord | undefined> {
    const r = await this.db.get('SELECT * FROM artifacts WHERE id = ?', [id]);
    return r ? artifactFromRow(r) : undefined;
  }

  async insertArtifact(a: NewArtifactRecord): Promise<void> {
    await this.db.run(
      `INSERT INTO artifacts (id, name, version, kind, file_name, target_path, sha256, length, spec, manifest, created_at, fleet)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        a.id,
        a.name,
        a.version,
        a.kind,
        a.fileName,
        a.targetPath,
        a.sha256,
        a.length,
        JSON.stringify(a.spec),
        a.manifest ? JSON.stringify(a.manifest) : null,
        a.createdAt,
        a.fleet ?? '*',
      ],
    );
  }

  async artifactNameOwner(name: string): Promise<string | undefined> {
    // Every version of a name has the same owner (publishArtifact checks it under the write
    // lock), withdrawn ones included: a name stays its fleet's after its versions are withdrawn.
    const r = await this.db.get('SELECT fleet FROM artifacts WHERE name = ? ORDER BY created_at LIMIT 1', [name]);
    return r ? str(r.fleet) : undefined;
  }

  async artifactHolders(artifact: Pick<ArtifactRecord, 'id' | 'name' | 'version'>, rolloutStatuses: readonly string[]): Promise<ArtifactHolders> {
    const rollouts =
      rolloutStatuses.length === 0
        ? []
        : await this.db.all(
            `SELECT r.id, r.status FROM rollouts r
             WHERE r.status IN (${rolloutStatuses.map(() => '?').join(', ')})
               AND (r.artifact_id = ? OR EXISTS (SELECT 1 FROM rollout_devices rd WHERE rd.rollout_id = r.id AND rd.previous_artifact_id = ?))
             ORDER BY r.created_at LIMIT ${HOLDERS_LISTED}`,
            [...rolloutStatuses, artifact.id, artifact.id],
          );
    const assigned = await this.db.all(
      `SELECT d.fleet, d.name FROM assignments a JOIN devices d ON d.id = a.device_id
       WHERE a.artifact_id = ? AND a.active = 1 AND d.decommissioned_at IS NULL ORDER BY d.fleet, d.name LIMIT ${HOLDERS_LISTED}`,
      [artifact.id],
    );
    const installed = await this.db.all(
      `SELECT d.fleet, d.name FROM installed i JOIN devices d ON d.id = i.device_id
       WHERE i.name = ? AND i.version = ? AND d.decommissioned_at IS NULL ORDER BY d.fleet, d.name LIMIT ${HOLDERS_LISTED}`,
      [artifact.name, artifact.version],
    );
    return {
      rollouts: rollouts.map((r) => ({ id: str(r.id), status: str(r.status) })),
      devices: [
        ...assigned.map((r) => ({ fleet: str(r.fleet), name: str(r.name), holds: 'assigned' as const })),
        ...installed.map((r) => ({ fleet: str(r.fleet), name: str(r.name), holds: 'installed' as const })),
      ],
    };
  }

  async markArtifactWithdrawn(id: string, now: string): Promise<boolean> {
    const { changes } = await this.db.run('UPDATE artifacts SET withdrawn_at = ? WHERE id = ? AND withdrawn_at IS NULL', [now, id]);
    return changes === 1;
  }
}
