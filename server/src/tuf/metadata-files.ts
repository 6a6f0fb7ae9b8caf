// The repository's metadata directory: one file per role version (consistent snapshots,
// TUF spec 5.3.3 and 7: VERSION.ROLE.json; root.json and timestamp.json unversioned too).
// Bytes on disk are canonical JSON, so lengths and hashes in snapshot/timestamp are
// deterministic and a client re-canonicalizing what it parsed gets the signed bytes back.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Metadata, MetadataKind, MetaFile, type Root, type Snapshot, type Targets, type Timestamp } from '@tufjs/models';
import { fsyncDirSync, PUBLIC_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';
import { MeshError } from '../errors.js';

export const TUF_SPEC_VERSION = '1.0.31';

export interface TufRepositoryPaths {
  keysDir: string;
  metadataDir: string;
}

export interface LoadedMetadata<T extends Root | Targets | Snapshot | Timestamp> {
  metadata: Metadata<T>;
  bytes: Buffer;
}

// Canonical JSON (OLPC, what TUF signs) escapes only " and \ in strings and leaves control
// characters raw, which JSON.parse — every device's — refuses: one newline in a signed spec made
// the whole role unreadable. They can only occur inside strings (canonical JSON has no
// whitespace), so escaping them keeps the file valid JSON that parses to the same value; the
// canonical form a device recomputes from it, and so the signature, is unchanged.
// eslint-disable-next-line no-control-regex -- control characters are exactly what this escapes
const CONTROL_CHARACTER = /[\u0000-\u001f]/g;

/** Canonical JSON of `value` as valid JSON bytes (control characters escaped, see above). */
export function canonicalJsonBytes(value: unknown): Buffer {
  return Buffer.from(canonicalize(value).replace(CONTROL_CHARACTER, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

export function serialize(metadata: Metadata<Root | Targets | Snapshot | Timestamp>): Buffer {
  return canonicalJsonBytes(metadata.toJSON());
}

export function sha256Hex(bytes: Buffer): string {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

export function metaFileFor(version: number, bytes: Buffer): MetaFile {
  return new MetaFile({ version, length: bytes.length, hashes: { sha256: sha256Hex(bytes) } });
}

export class MetadataFiles {
  constructor(readonly dir: string) {}

  file(name: string): string {
    return path.join(this.dir, name);
  }

  exists(name: string): boolean {
    return fs.existsSync(this.file(name));
  }

  write(name: string, bytes: Buffer): void {
    // TUF metadata is public (every device fetches it): readable by all.
    writeFileAtomicSync(this.file(name), bytes, { mode: PUBLIC_FILE_MODE });
  }

  /**
   * Writes the files of one change in order. VERSION.ROLE.json files that no timestamp
   * references yet (targets roles and snapshot; a device only asks for the versions the
   * snapshot it verified names) are written in place and fsynced, and their directory entries
   * made durable by one directory fsync; root files (devices probe for N+1.root.json) and
   * timestamp.json (the commit point) are replaced atomically after that. One directory fsync
   * instead of one per file: a publish writes three files, a migration 130. Entries given the
   * same Buffer object are one file under several names (hard links): a new repository's 128
   * empty bins v1 are byte-identical, and one fsync instead of 128 keeps `init` fast.
   */
  writeAll(files: ReadonlyArray<readonly [name: string, bytes: Buffer]>): void {
    const atomic = (name: string) => name === 'timestamp.json' || name.endsWith('root.json');
    const written = new Map<Buffer, string>();
    for (const [name, bytes] of files) {
      if (atomic(name)) continue;
      const file = this.file(name);
      // Never write through a name that may be a link to another role's file (a crashed attempt).
      fs.rmSync(file, { force: true });
      const same = written.get(bytes);
      if (same) {
        fs.linkSync(same, file);
        continue;
      }
      const fd = fs.openSync(file, 'wx', 0o644);
      try {
        fs.writeFileSync(fd, bytes);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      written.set(bytes, file);
    }
    fsyncDirSync(this.dir);
    for (const [name, bytes] of files) if (atomic(name)) this.write(name, bytes);
  }

  read<T extends Root | Targets | Snapshot | Timestamp>(kind: MetadataKind, name: string): LoadedMetadata<T> {
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(this.file(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && name === 'root.json') {
        throw new MeshError('MESH_ERR_DATADIR_NOT_INITIALIZED', 'the TUF repository has not been initialized (run `meshanics-server init`)');
      }
      throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', `cannot read ${name}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const metadata = Metadata.fromJSON(kind as MetadataKind.Root, JSON.parse(bytes.toString('utf8')) as Parameters<typeof Metadata.fromJSON>[1]) as unknown as Metadata<T>;
      return { metadata, bytes };
    } catch (err) {
      throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', `${name} is not valid ${kind} metadata: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The newest root a device should pin: the highest N.root.json. */
  latestRootBytes(): Buffer {
    const versions = fs
      .readdirSync(this.dir)
      .map((f) => /^([1-9][0-9]*)\.root\.json$/.exec(f)?.[1])
      .filter((v): v is string => v !== undefined)
      .map(Number);
    if (versions.length === 0) throw new MeshError('MESH_ERR_DATADIR_NOT_INITIALIZED', 'the TUF repository has no root metadata');
    return fs.readFileSync(this.file(`${Math.max(...versions)}.root.json`));
  }
}
