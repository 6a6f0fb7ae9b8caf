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
// at versions N higher. It lives here, not in tuf/: it only ever runs on a freshly restored,
// not yet served data dir, and uses tuf/'s public pieces (readState, keys, lifetimes).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Metadata, MetaFile, Snapshot, Targets, Timestamp } from '@tufjs/models';
import { ensurePrivateDirSync, PUBLIC_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';
import { dataDirLayout } from '../config/data-dir.js';
import { MeshError } from '../errors.js';
import { loadRoleKey, readRoleKey, signMetadata, type RoleKey } from '../tuf/keys.js';
import { expiresAt, PUBLISHER_ROLE, type SigningRole } from '../tuf/lifetimes.js';
import { TUF_SPEC_VERSION, TufRepository, type RepositoryVersions } from '../tuf/repository.js';
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
    const restored = options.bumpTufVersions ? bumpTufVersions(repo, layout.tufKeysDir, layout.tufMetadataDir, options.bumpTufVersions) : backupVersions;
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

function serialize(md: Metadata<Targets | Snapshot | Timestamp>): Buffer {
  return Buffer.from(canonicalize(md.toJSON()));
}

function metaFile(version: number, bytes: Buffer): MetaFile {
  return new MetaFile({ version, length: bytes.length, hashes: { sha256: crypto.createHash('sha256').update(bytes).digest('hex') } });
}

/** The role's key from the data dir, checked against the key ids the repository trusts for it. */
function trustedKey(keysDir: string, role: SigningRole, keyIDs: readonly string[], optional: boolean): RoleKey | undefined {
  const key = optional ? readRoleKey(keysDir, role) : loadRoleKey(keysDir, role);
  if (key && !keyIDs.includes(key.key.keyID)) {
    if (optional) return undefined;
    throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `the ${role} key in ${keysDir} is not the one the TUF metadata trusts`);
  }
  return key;
}

/**
 * Re-signs the live publisher (and top-level targets, when its key is online), snapshot and
 * timestamp `by` versions higher, with the same targets and fresh expiry dates. Written in the
 * repository's own order (tuf/repository.ts commit): targets, snapshot, then timestamp.json,
 * the commit point. Checked by reading the repository back the way it verifies itself.
 */
function bumpTufVersions(repo: TufRepository, keysDir: string, metadataDir: string, by: number): RepositoryVersions {
  const now = new Date();
  const state = repo.readState();
  const roles = state.root.metadata.signed.roles;
  const snapshotKey = trustedKey(keysDir, 'snapshot', roles.snapshot!.keyIDs, false)!;
  const timestampKey = trustedKey(keysDir, 'timestamp', roles.timestamp!.keyIDs, false)!;
  const targetsKey = trustedKey(keysDir, 'targets', roles.targets!.keyIDs, true);
  const write = (name: string, bytes: Buffer): void => writeFileAtomicSync(path.join(metadataDir, name), bytes, { mode: PUBLIC_FILE_MODE });
  const renew = (t: Targets, role: 'targets' | typeof PUBLISHER_ROLE, key: RoleKey): [number, Buffer] => {
    const md = new Metadata(
      new Targets({
        version: t.version + by,
        specVersion: TUF_SPEC_VERSION,
        expires: expiresAt(role, now),
        targets: t.targets,
        ...(t.delegations ? { delegations: t.delegations } : {}),
      }),
    );
    signMetadata(md, key);
    const bytes = serialize(md);
    write(`${md.signed.version}.${role}.json`, bytes);
    return [md.signed.version, bytes];
  };

  // With the targets key offline, top-level targets keeps its version: only an offline
  // ceremony can have raised it, and the operator re-imports that file (docs/operations.md).
  const targets: [number, Buffer] = targetsKey
    ? renew(state.targets.metadata.signed, 'targets', targetsKey)
    : [state.targets.metadata.signed.version, state.targets.bytes];
  const meta: Record<string, MetaFile> = { 'targets.json': metaFile(...targets) };
  if (state.publisher) {
    const publisherRole = state.targets.metadata.signed.delegations?.roles?.[PUBLISHER_ROLE];
    const publisherKey = trustedKey(keysDir, PUBLISHER_ROLE, publisherRole?.keyIDs ?? [], false)!;
    meta[`${PUBLISHER_ROLE}.json`] = metaFile(...renew(state.publisher.metadata.signed, PUBLISHER_ROLE, publisherKey));
  }
  const snapshot = new Metadata(
    new Snapshot({ version: state.snapshot.metadata.signed.version + by, specVersion: TUF_SPEC_VERSION, expires: expiresAt('snapshot', now), meta }),
  );
  signMetadata(snapshot, snapshotKey);
  const snapshotBytes = serialize(snapshot);
  write(`${snapshot.signed.version}.snapshot.json`, snapshotBytes);
  const timestamp = new Metadata(
    new Timestamp({
      version: state.timestamp.metadata.signed.version + by,
      specVersion: TUF_SPEC_VERSION,
      expires: expiresAt('timestamp', now),
      snapshotMeta: metaFile(snapshot.signed.version, snapshotBytes),
    }),
  );
  signMetadata(timestamp, timestampKey);
  write('timestamp.json', serialize(timestamp));
  return repo.versions();
}
