// The artifact catalog for SqlStore.
import type { Db } from './db.js';
import { artifactFromRow } from './sql-rows.js';
import type { ArtifactRecord } from './store.js';

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

  async insertArtifact(a: ArtifactRecord): Promise<void> {
    await this.db.run(
      `INSERT INTO artifacts (id, name, version, kind, file_name, target_path, sha256, length, spec, manifest, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [a.id, a.name, a.version, a.kind, a.fileName, a.targetPath, a.sha256, a.length, JSON.stringify(a.spec), a.manifest ? JSON.stringify(a.manifest) : null, a.createdAt],
    );
  }
}
