// The server's TUF repository (TUF spec 1.0, "consistent_snapshot": true). Files on disk are
// the only state: every operation re-reads the chain timestamp -> snapshot -> targets inside
// the data-dir write lock, so a CLI process publishing while `serve` re-signs can never build
// on a stale version or lose the other's target.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Metadata, MetadataKind, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
import { writeFileAtomic } from '../atomic-file.js';
import { MeshError } from '../errors.js';
import { expiresAt, isDueForResigning, TUF_ROLES, type TufRole } from './lifetimes.js';
import { loadOrCreateRoleKey, loadRoleKey, signMetadata, type RoleKey } from './keys.js';

export const TUF_SPEC_VERSION = '1.0.31';

export interface TufRepositoryPaths {
  keysDir: string;
  metadataDir: string;
}

export type WriteLock = <T>(fn: () => T) => T;

interface LoadedMetadata<T extends Root | Targets | Snapshot | Timestamp> {
  metadata: Metadata<T>;
  bytes: Buffer;
}

export interface RepositoryState {
  root: LoadedMetadata<Root>;
  timestamp: LoadedMetadata<Timestamp>;
  snapshot: LoadedMetadata<Snapshot>;
  targets: LoadedMetadata<Targets>;
}

export interface NewTarget {
  /** The target path in metadata: name/version/file. */
  path: string;
  sha256: string;
  length: number;
  /** Signed alongside the hashes, so a device can trust it as much as the bytes. */
  custom?: Record<string, unknown>;
}

export interface RepositoryVersions {
  root: number;
  targets: number;
  snapshot: number;
  timestamp: number;
}

function serialize(metadata: Metadata<Root | Targets | Snapshot | Timestamp>): Buffer {
  // Canonical bytes on disk too: deterministic lengths and hashes for snapshot/timestamp.
  return Buffer.from(canonicalize(metadata.toJSON()));
}

function sha256Hex(bytes: Buffer): string {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

function metaFileFor(version: number, bytes: Buffer): MetaFile {
  return new MetaFile({ version, length: bytes.length, hashes: { sha256: sha256Hex(bytes) } });
}

export class TufRepository {
  private keys = new Map<TufRole, RoleKey>();

  constructor(
    private readonly paths: TufRepositoryPaths,
    private readonly lock: WriteLock,
  ) {}

  private file(name: string): string {
    return path.join(this.paths.metadataDir, name);
  }

  isInitialized(): boolean {
    return fs.existsSync(this.file('root.json'));
  }

  /**
   * Creates keys and version 1 of every role unless root.json exists. root.json is written
   * last, so a crash part-way leaves an uninitialized repository that the next start redoes.
   */
  initialize(now = new Date()): boolean {
    return this.lock(() => {
      if (this.isInitialized()) return false;
      const keys = Object.fromEntries(TUF_ROLES.map((role) => [role, loadOrCreateRoleKey(this.paths.keysDir, role)])) as Record<
        TufRole,
        RoleKey
      >;
      const root = new Root({
        version: 1,
        specVersion: TUF_SPEC_VERSION,
        expires: expiresAt('root', now),
        consistentSnapshot: true,
      });
      // One key per role, threshold 1 (Root's default roles have threshold 1 and no keys yet).
      for (const role of TUF_ROLES) root.addKey(keys[role].key, role);
      const rootMd = new Metadata(root);
      signMetadata(rootMd, keys.root);
      const targetsBytes = this.writeTargets(new Targets({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('targets', now) }), keys.targets);
      const snapshotBytes = this.writeSnapshot(1, 1, targetsBytes, now, keys.snapshot);
      this.writeTimestamp(1, 1, snapshotBytes, now, keys.timestamp);
      const rootBytes = serialize(rootMd);
      // Consistent snapshots: clients fetch VERSION.root.json when updating root (spec 5.3.3).
      writeFileAtomic(this.file('1.root.json'), rootBytes);
      writeFileAtomic(this.file('root.json'), rootBytes);
      for (const [role, key] of Object.entries(keys)) this.keys.set(role as TufRole, key);
      return true;
    });
  }

  private roleKey(role: TufRole, root: Metadata<Root>): RoleKey {
    let key = this.keys.get(role);
    if (!key) {
      key = loadRoleKey(this.paths.keysDir, role);
      this.keys.set(role, key);
    }
    if (!root.signed.roles[role]?.keyIDs.includes(key.key.keyID)) {
      throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `the ${role} key on disk is not the one trusted root metadata lists`);
    }
    return key;
  }

  private read<T extends Root | Targets | Snapshot | Timestamp>(kind: MetadataKind, name: string): LoadedMetadata<T> {
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
      const metadata = Metadata.fromJSON(kind as MetadataKind.Root, JSON.parse(bytes.toString('utf8'))) as unknown as Metadata<T>;
      return { metadata, bytes };
    } catch (err) {
      throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', `${name} is not valid ${kind} metadata: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** The newest root a device should pin: the highest N.root.json. */
  latestRootBytes(): Buffer {
    const versions = fs
      .readdirSync(this.paths.metadataDir)
      .map((f) => /^([1-9][0-9]*)\.root\.json$/.exec(f)?.[1])
      .filter((v): v is string => v !== undefined)
      .map(Number);
    if (versions.length === 0) throw new MeshError('MESH_ERR_DATADIR_NOT_INITIALIZED', 'the TUF repository has no root metadata');
    return fs.readFileSync(this.file(`${Math.max(...versions)}.root.json`));
  }

  /**
   * Reads the live chain the way a client would (timestamp -> snapshot -> targets), and checks
   * signatures and the snapshot's hashes so we never extend metadata that was tampered with.
   */
  readState(): RepositoryState {
    const root = this.read<Root>(MetadataKind.Root, 'root.json');
    const timestamp = this.read<Timestamp>(MetadataKind.Timestamp, 'timestamp.json');
    const snapshotMeta = timestamp.metadata.signed.snapshotMeta;
    const snapshot = this.read<Snapshot>(MetadataKind.Snapshot, `${snapshotMeta.version}.snapshot.json`);
    const targetsMeta = snapshot.metadata.signed.meta['targets.json'];
    if (!targetsMeta) throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', 'snapshot metadata does not list targets.json');
    const targets = this.read<Targets>(MetadataKind.Targets, `${targetsMeta.version}.targets.json`);
    try {
      root.metadata.verifyDelegate('root', root.metadata);
      root.metadata.verifyDelegate('timestamp', timestamp.metadata);
      root.metadata.verifyDelegate('snapshot', snapshot.metadata);
      root.metadata.verifyDelegate('targets', targets.metadata);
      snapshotMeta.verify(snapshot.bytes);
      targetsMeta.verify(targets.bytes);
    } catch (err) {
      throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', `repository metadata does not verify: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return { root, timestamp, snapshot, targets };
  }

  versions(): RepositoryVersions {
    const s = this.readState();
    return {
      root: s.root.metadata.signed.version,
      targets: s.targets.metadata.signed.version,
      snapshot: s.snapshot.metadata.signed.version,
      timestamp: s.timestamp.metadata.signed.version,
    };
  }

  private writeTargets(targets: Targets, key: RoleKey): Buffer {
    const md = new Metadata(targets);
    signMetadata(md, key);
    const bytes = serialize(md);
    writeFileAtomic(this.file(`${targets.version}.targets.json`), bytes);
    return bytes;
  }

  private writeSnapshot(version: number, targetsVersion: number, targetsBytes: Buffer, now: Date, key: RoleKey): Buffer {
    const md = new Metadata(
      new Snapshot({
        version,
        specVersion: TUF_SPEC_VERSION,
        expires: expiresAt('snapshot', now),
        meta: { 'targets.json': metaFileFor(targetsVersion, targetsBytes) },
      }),
    );
    signMetadata(md, key);
    const bytes = serialize(md);
    writeFileAtomic(this.file(`${version}.snapshot.json`), bytes);
    return bytes;
  }

  /** timestamp.json is the commit point: until it names the new snapshot, clients see the old repository. */
  private writeTimestamp(version: number, snapshotVersion: number, snapshotBytes: Buffer, now: Date, key: RoleKey): void {
    const md = new Metadata(
      new Timestamp({
        version,
        specVersion: TUF_SPEC_VERSION,
        expires: expiresAt('timestamp', now),
        snapshotMeta: metaFileFor(snapshotVersion, snapshotBytes),
      }),
    );
    signMetadata(md, key);
    writeFileAtomic(this.file('timestamp.json'), serialize(md));
  }

  /**
   * Writes new versions of the roles that change, bottom-up, timestamp last. New versions of
   * snapshot and timestamp always follow a new targets (spec 5.5/5.4: they must reference it).
   */
  private commit(state: RepositoryState, change: { targets?: Targets; snapshot?: boolean; timestamp?: boolean }, now: Date): RepositoryVersions {
    const root = state.root.metadata;
    let targetsVersion = state.targets.metadata.signed.version;
    let targetsBytes = state.targets.bytes;
    let snapshotVersion = state.snapshot.metadata.signed.version;
    let snapshotBytes = state.snapshot.bytes;
    if (change.targets) {
      targetsBytes = this.writeTargets(change.targets, this.roleKey('targets', root));
      targetsVersion = change.targets.version;
    }
    if (change.targets || change.snapshot) {
      snapshotVersion += 1;
      snapshotBytes = this.writeSnapshot(snapshotVersion, targetsVersion, targetsBytes, now, this.roleKey('snapshot', root));
    }
    const timestampVersion = state.timestamp.metadata.signed.version + 1;
    this.writeTimestamp(timestampVersion, snapshotVersion, snapshotBytes, now, this.roleKey('timestamp', root));
    return { root: root.signed.version, targets: targetsVersion, snapshot: snapshotVersion, timestamp: timestampVersion };
  }

  hasTarget(targetPath: string): boolean {
    return targetPath in this.readState().targets.metadata.signed.targets;
  }

  /** Adds one target: targets N+1, snapshot N+1, timestamp N+1 (the publish path of spec 4.4-4.6). */
  addTarget(target: NewTarget, now = new Date()): RepositoryVersions {
    return this.lock(() => {
      const state = this.readState();
      const current = state.targets.metadata.signed;
      if (target.path in current.targets) {
        throw new MeshError('MESH_ERR_ARTIFACT_CONFLICT', `TUF target ${target.path} is already signed`);
      }
      const next = new Targets({
        version: current.version + 1,
        specVersion: TUF_SPEC_VERSION,
        expires: expiresAt('targets', now),
        targets: {
          ...current.targets,
          [target.path]: new TargetFile({
            path: target.path,
            length: target.length,
            hashes: { sha256: target.sha256 },
            // "custom" is the TUF-sanctioned place for application data in a target (spec 4.5).
            ...(target.custom ? { unrecognizedFields: { custom: target.custom } as TargetFile['unrecognizedFields'] } : {}),
          }),
        },
      });
      return this.commit(state, { targets: next }, now);
    });
  }

  /**
   * The online re-signer: renews whichever of targets, snapshot and timestamp has less than
   * half its lifetime left. Root is not renewed here (a new root version is a later issue).
   */
  refreshExpiring(now = new Date()): { resigned: TufRole[]; versions: RepositoryVersions | undefined } {
    return this.lock(() => {
      const state = this.readState();
      const targetsDue = isDueForResigning('targets', state.targets.metadata.signed.expires, now);
      const snapshotDue = targetsDue || isDueForResigning('snapshot', state.snapshot.metadata.signed.expires, now);
      const timestampDue = snapshotDue || isDueForResigning('timestamp', state.timestamp.metadata.signed.expires, now);
      if (!timestampDue) return { resigned: [], versions: undefined };
      const current = state.targets.metadata.signed;
      const targets = targetsDue
        ? new Targets({
            version: current.version + 1,
            specVersion: TUF_SPEC_VERSION,
            expires: expiresAt('targets', now),
            targets: current.targets,
            ...(current.delegations ? { delegations: current.delegations } : {}),
          })
        : undefined;
      const versions = this.commit(state, { ...(targets ? { targets } : {}), snapshot: snapshotDue }, now);
      const resigned: TufRole[] = [...(targetsDue ? ['targets' as const] : []), ...(snapshotDue ? ['snapshot' as const] : []), 'timestamp'];
      return { resigned, versions };
    });
  }

  rootExpires(): string {
    return this.readState().root.metadata.signed.expires;
  }
}
