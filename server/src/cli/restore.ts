// `meshanics-server restore`: a backup archive (backup.ts) back into an empty data dir, and the
// TUF version bump a restore from an older backup needs (issue 29).
//
// Nothing is placed before everything is checked: the archive is unpacked into a staging
// folder inside the target dir, every file is compared with the manifest (same set of files,
// same sha256), and only then moved into place. A refused archive leaves the dir as it was.
//
// Why the bump: devices keep the highest TUF versions they have seen and refuse lower ones
// (rollback protection, TUF spec 5.4.3 / 5.5.5). A backup older than the last publish or the
// last re-signing holds lower timestamp/snapshot/publisher versions than the devices trust,
// so they would refuse every update until the server's versions grew past theirs again.
// `--bump-tuf-versions N` re-signs, with the online keys the backup holds, the same content
// at versions N higher (TufRepository.bumpVersions: every hash bin, publisher, snapshot and
// timestamp, and top-level targets when its key is online), verified like any other change.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensurePrivateDirSync } from '@meshanics/core/kit';
import { dataDirLayout } from '../config/data-dir.js';
import { MeshError } from '../errors.js';
import { TufRepository, type RepositoryVersions } from '../tuf/repository.js';
import { BACKUP_FORMAT, fsyncFile, listFiles, MANIFEST_NAME, sha256File, type BackupManifest } from './backup.js';

export interface RestoreResult {
  dataDir: string;
  fileCount: number;
  database: BackupManifest['database'];
  auditHead: BackupManifest['auditHead'];
  tuf: { backup: RepositoryVersions; restored: RepositoryVersions };
  warnings: string[];
}

function invalid(message: string, cause?: unknown): MeshError {
  return new MeshError('MESH_ERR_BACKUP_INVALID', message, cause === undefined ? undefined : { cause });
}

function readManifest(staging: string, from: string): BackupManifest {
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(staging, MANIFEST_NAME), 'utf8')) as BackupManifest;
  } catch (err) {
    throw invalid(`${from} has no readable ${MANIFEST_NAME}: ${(err as Error).message}`, err);
  }
  if (manifest?.format !== BACKUP_FORMAT || typeof manifest.files !== 'object' || manifest.files === null) {
    throw invalid(`${from}: ${MANIFEST_NAME} is not a ${BACKUP_FORMAT} manifest`);
  }
  return manifest;
}

/** Every file the manifest names is there with its hash, and nothing else is. */
function verifyFiles(staging: string, manifest: BackupManifest, from: string): void {
  const present = listFiles(staging).filter((f) => f !== MANIFEST_NAME);
  const listed = Object.keys(manifest.files).sort();
  const extra = present.filter((f) => !(f in manifest.files));
  const missing = listed.filter((f) => !present.includes(f));
  if (extra.length || missing.length) {
    throw invalid(`${from} does not match its manifest: ${[...missing.map((f) => `missing ${f}`), ...extra.map((f) => `unlisted ${f}`)].join(', ')}`);
  }
  for (const rel of listed) {
    const actual = sha256File(path.join(staging, rel));
    if (actual !== manifest.files[rel]!.sha256) {
      throw invalid(`${from}: ${rel} has sha256 ${actual}, the manifest says ${manifest.files[rel]!.sha256}`);
    }
  }
}

function isEmptyDir(dir: string): boolean {
  return !fs.existsSync(dir) || fs.readdirSync(dir).length === 0;
}

export async function restoreDataDir(options: { from: string; dataDir: string; bumpTufVersions?: number }): Promise<RestoreResult> {
  const from = path.resolve(options.from);
  const layout = dataDirLayout(options.dataDir);
  if (!isEmptyDir(layout.root)) {
    throw new MeshError('MESH_ERR_BACKUP_TARGET_NOT_EMPTY', `${layout.root} is not empty: restore only into an empty or new data dir`);
  }
  if (!fs.existsSync(from)) throw invalid(`${from} does not exist`);
  const created = !fs.existsSync(layout.root);
  fs.mkdirSync(layout.root, { recursive: true, mode: 0o700 });
  const staging = fs.mkdtempSync(path.join(layout.root, '.restore-'));
  let placed = false;
  try {
    const tar = await import('tar');
    try {
      await tar.extract({
        file: from,
        cwd: staging,
        strict: true,
        // Only plain files and folders: a link in an archive could point anywhere.
        filter: (_p, entry) => 'type' in entry && (entry.type === 'File' || entry.type === 'Directory'),
      });
    } catch (err) {
      throw invalid(`${from} is not a readable backup archive: ${(err as Error).message}`, err);
    }
    const manifest = readManifest(staging, from);
    verifyFiles(staging, manifest, from);

    fs.rmSync(path.join(staging, MANIFEST_NAME));
    for (const name of fs.readdirSync(staging)) fs.renameSync(path.join(staging, name), path.join(layout.root, name));
    placed = true;
    for (const dir of [layout.pkiDir, layout.tufKeysDir, layout.logsDir]) ensurePrivateDirSync(dir);
    fs.mkdirSync(layout.tufStagingDir, { recursive: true });
    for (const rel of Object.keys(manifest.files)) fsyncFile(path.join(layout.root, rel));

    const warnings: string[] = [];
    if (!manifest.database.included) {
      warnings.push(
        'the database is in PostgreSQL and is not in this archive: restore the pg_dump taken with this backup (pg_restore) before `serve`, and give every command --database-url',
      );
    }
    const repo = new TufRepository({ keysDir: layout.tufKeysDir, metadataDir: layout.tufMetadataDir }, async (fn) => await fn());
    const backupVersions = repo.versions();
    const restored = options.bumpTufVersions ? await repo.bumpVersions(options.bumpTufVersions) : backupVersions;
    if (!options.bumpTufVersions) {
      warnings.push(
        'TUF versions are those of the backup: devices that saw newer metadata refuse them until the versions pass theirs; if the backup is older than the last publish or re-signing, restore again with --bump-tuf-versions N',
      );
    }
    return {
      dataDir: layout.root,
      fileCount: Object.keys(manifest.files).length,
      database: manifest.database,
      auditHead: manifest.auditHead,
      tuf: { backup: backupVersions, restored },
      warnings,
    };
  } catch (err) {
    // Leave the dir as it was found: empty (or absent, if we created it).
    if (placed) for (const name of fs.readdirSync(layout.root)) fs.rmSync(path.join(layout.root, name), { recursive: true, force: true });
    if (created) fs.rmSync(layout.root, { recursive: true, force: true });
    throw err;
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}
