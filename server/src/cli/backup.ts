// `meshanics-server backup`: one consistent archive of a running server's data dir (issue 29).
//
// Consistency: everything that changes several files at once (publishing, re-signing, TUF
// imports, key creation) runs under the database write lock (config/data-dir.ts). The backup
// takes that same lock for the short part: the database copy (SQLite's online backup API; it
// never blocks readers) and the small mutable files (config.json, pki/, tuf/keys, TUF metadata,
// plugin-schemas/). The large files (TUF targets, uploaded log bundles) are copied after the
// lock is released: they are written once under fresh names before the database row that
// names them commits, so every one the database copy refers to already exists.
//
// PostgreSQL: the database is not in the data dir and is not copied here (that is `pg_dump`'s
// job, docs/operations.md); the archive holds the data dir's files taken under the same
// advisory write lock, and the manifest says the database is not included.
//
// The archive is a tar file written to a temp name next to --out, fsynced and renamed.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { isTempSibling, renameDurableSync, tempSibling } from '@meshanics/core/kit';
import type { MeshanicsContext } from '../config/data-dir.js';

export const BACKUP_FORMAT = 'meshanics-backup/1';
export const MANIFEST_NAME = 'manifest.json';
/** The database copy's name inside the archive (the data dir's own name for it). */
export const DATABASE_NAME = 'meshanics.db';

/** Copied under the write lock: small, and rewritten in place by the server. */
const LOCKED_ENTRIES = ['config.json', 'pki', 'tuf/keys', 'tuf/repo/metadata', 'plugin-schemas'];
/** Copied after: large, written once under new names (tuf/staging is uploads in progress: never copied). */
const UNLOCKED_ENTRIES = ['tuf/repo/targets', 'logs'];

export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  createdAt: string;
  server: { version: string; node: string };
  trustDomain: string;
  database: { engine: 'sqlite'; included: true; file: typeof DATABASE_NAME; schemaVersion: number } | { engine: 'postgres'; included: false; note: string };
  tuf: ReturnType<MeshanicsContext['tuf']['versions']>;
  /** The audit chain's last event when the database was copied (seq 0: empty trail). */
  auditHead: { seq: number; hash: string };
  /** Every file in the archive but this manifest: relative path -> sha256 and size. */
  files: Record<string, { sha256: string; size: number }>;
}

export interface BackupResult {
  out: string;
  manifest: Omit<BackupManifest, 'files'> & { fileCount: number; bytes: number };
}

function serverVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('../../package.json') as { version: string }).version;
}

/** Copies a file or a directory tree, fsyncing each file (the archive is built from these copies). */
function copyTree(from: string, to: string): void {
  const stat = fs.lstatSync(from, { throwIfNoEntry: false });
  if (!stat) return;
  if (stat.isDirectory()) {
    fs.mkdirSync(to, { recursive: true, mode: stat.mode & 0o777 });
    for (const name of fs.readdirSync(from)) {
      // Temp files of writes in progress (the kit's tempSibling names), never a committed file.
      if (isTempSibling(name)) continue;
      copyTree(path.join(from, name), path.join(to, name));
    }
  } else if (stat.isFile()) {
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.copyFileSync(from, to);
    fs.chmodSync(to, stat.mode & 0o777);
  }
}

export function sha256File(file: string): string {
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** Relative paths (with '/') of every file under `root`, sorted. */
export function listFiles(root: string, dir = root): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(root, full));
    else if (entry.isFile()) out.push(path.relative(root, full).split(path.sep).join('/'));
  }
  return out.sort();
}

export function fsyncFile(file: string): void {
  const fd = fs.openSync(file, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function copyDatabase(ctx: MeshanicsContext, dest: string): Promise<void> {
  const { default: Database } = await import('better-sqlite3');
  // A connection of our own: the online backup reads a consistent snapshot page by page while
  // the server keeps reading (WAL); the write lock we hold keeps writers out meanwhile.
  const source = new Database(ctx.layout.databaseFile, { fileMustExist: true });
  try {
    await source.backup(dest);
  } finally {
    source.close();
  }
}

async function schemaVersion(dest: string): Promise<number> {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(dest, { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null } | undefined;
    return row?.v ?? 0;
  } finally {
    db.close();
  }
}

/**
 * Writes the archive of `ctx`'s data dir to `out` (replaced atomically if it exists).
 * `postgres`: the database is in PostgreSQL and is not part of the archive.
 */
export async function backupDataDir(ctx: MeshanicsContext, out: string, postgres: boolean): Promise<BackupResult> {
  const target = path.resolve(out);
  const staging = fs.mkdtempSync(path.join(path.dirname(target), `.${path.basename(target)}.staging-`));
  const tmpArchive = tempSibling(target);
  try {
    const locked = await ctx.store.withWriteLock(async () => {
      if (!postgres) await copyDatabase(ctx, path.join(staging, DATABASE_NAME));
      for (const entry of LOCKED_ENTRIES) copyTree(path.join(ctx.layout.root, entry), path.join(staging, entry));
      const head = (await ctx.store.listAudit({ order: 'desc', limit: 1 }))[0];
      return { tuf: ctx.tuf.versions(), auditHead: { seq: head?.seq ?? 0, hash: head?.hash ?? '0'.repeat(64) } };
    });
    for (const entry of UNLOCKED_ENTRIES) copyTree(path.join(ctx.layout.root, entry), path.join(staging, entry));

    const files: BackupManifest['files'] = {};
    let bytes = 0;
    for (const rel of listFiles(staging)) {
      const file = path.join(staging, rel);
      const size = fs.statSync(file).size;
      files[rel] = { sha256: sha256File(file), size };
      bytes += size;
    }
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      createdAt: new Date().toISOString(),
      server: { version: serverVersion(), node: process.version },
      trustDomain: ctx.trustDomain,
      database: postgres
        ? {
            engine: 'postgres',
            included: false,
            note: 'the database is in PostgreSQL: back it up with pg_dump at the same time (docs/operations.md)',
          }
        : { engine: 'sqlite', included: true, file: DATABASE_NAME, schemaVersion: await schemaVersion(path.join(staging, DATABASE_NAME)) },
      ...locked,
      files,
    };
    fs.writeFileSync(path.join(staging, MANIFEST_NAME), JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600 });

    const tar = await import('tar');
    // The manifest first, so `restore` (and a person with `tar -xOf FILE manifest.json`) reads it at once.
    // Created private before tar writes into it: the archive holds the CA and TUF private keys.
    fs.closeSync(fs.openSync(tmpArchive, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600));
    await tar.create({ file: tmpArchive, cwd: staging, portable: true }, [MANIFEST_NAME, ...Object.keys(files)]);
    fsyncFile(tmpArchive);
    renameDurableSync(tmpArchive, target);
    const { files: _files, ...summary } = manifest;
    return { out: target, manifest: { ...summary, fileCount: Object.keys(files).length, bytes } };
  } finally {
    fs.rmSync(tmpArchive, { force: true });
    fs.rmSync(staging, { recursive: true, force: true });
  }
}
