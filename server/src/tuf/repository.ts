// The server's TUF repository (TUF spec 1.0, "consistent_snapshot": true). Files on disk are
// the only state: every operation re-reads the chain timestamp -> snapshot -> targets ->
// publisher, and the keys, inside the data-dir write lock, so a CLI process (publishing, or
// importing metadata signed offline) next to a running `serve` can never build on a stale
// version, lose the other's target, or sign with a key that was just retired.
//
// Roles (spec 2.1, 4.5): root and top-level targets may be kept offline; top-level targets
// only delegates a terminating slice of names (name/version/file) to the "publisher" role,
// whose key is online, and every artifact is signed into publisher. Snapshot lists both
// targets files (spec 4.4); snapshot and timestamp are online.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Metadata, MetadataKind, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
import { PUBLIC_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';
import { MeshError } from '../errors.js';
import { checkImportedDelegation, DEFAULT_DELEGATED_PATHS, publisherDelegation, publisherRole } from './delegation.js';
import { TufError } from './errors.js';
import { expiresAt, isDueForResigning, PUBLISHER_ROLE, TUF_ROLES, type SigningRole, type TufRole } from './lifetimes.js';
import { exportPublicKey, loadOrCreateRoleKey, readRoleKey, roleKeyFile, signMetadata, type PublicKeyExport, type RoleKey } from './keys.js';

// TUF metadata is public (every device fetches it): written readable by all, as before.
const writeFileAtomic = (file: string, data: string | Uint8Array): void => writeFileAtomicSync(file, data, { mode: PUBLIC_FILE_MODE });

export const TUF_SPEC_VERSION = '1.0.31';
export const ONLINE_KEYS_FORMAT = 'meshanics-tuf-online-keys/1';

export interface TufRepositoryPaths {
  keysDir: string;
  metadataDir: string;
}

/** The data-dir write lock (the store's write transaction); async since the store is. */
export type WriteLock = <T>(fn: () => T | Promise<T>) => Promise<T>;

interface LoadedMetadata<T extends Root | Targets | Snapshot | Timestamp> {
  metadata: Metadata<T>;
  bytes: Buffer;
}

export interface RepositoryState {
  root: LoadedMetadata<Root>;
  timestamp: LoadedMetadata<Timestamp>;
  snapshot: LoadedMetadata<Snapshot>;
  targets: LoadedMetadata<Targets>;
  /** Absent only in a repository created before the delegation existed (migrated on first write). */
  publisher: LoadedMetadata<Targets> | undefined;
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
  publisher?: number;
}

/** What `tuf online-keys` exports for the offline machine. */
export interface OnlineKeysExport {
  format: typeof ONLINE_KEYS_FORMAT;
  versions: { root: number; targets: number };
  keys: { snapshot: PublicKeyExport; timestamp: PublicKeyExport; publisher: PublicKeyExport };
}

export interface KeyCustody {
  /** Roles whose trusted private key is in the data dir. */
  online: SigningRole[];
  /** Top-level roles the data dir holds no trusted key for (kept offline). */
  offline: TufRole[];
}

export interface ImportInput {
  root?: Buffer;
  targets?: Buffer;
}

export interface ImportResult {
  root?: { version: number; keyids: Record<string, string[]>; addedCurrentRootSignature: boolean };
  targets?: { version: number; delegatedPaths: string[] };
  /** Online copies of root/targets private keys deleted because the new root no longer trusts them. */
  removedOnlineKeys: TufRole[];
  versions: RepositoryVersions;
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

function parseImported<T extends Root | Targets>(kind: MetadataKind.Root | MetadataKind.Targets, bytes: Buffer, what: string): Metadata<T> {
  try {
    const json = JSON.parse(bytes.toString('utf8')) as { signed?: { _type?: unknown } };
    if (json?.signed?._type !== kind) throw new Error(`"signed._type" is ${JSON.stringify(json?.signed?._type)}, expected "${kind}"`);
    return Metadata.fromJSON(kind as MetadataKind.Root, json as never) as unknown as Metadata<T>;
  } catch (err) {
    throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `${what} is not valid ${kind} metadata: ${(err as Error).message}`, { cause: err });
  }
}

export class TufRepository {
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
   * Creates keys and version 1 of every role unless root.json exists (then only migrates a
   * repository from before the publisher delegation). root.json is written last, so a crash
   * part-way leaves an uninitialized repository that the next start redoes.
   */
  initialize(now = new Date()): Promise<boolean> {
    return this.lock(() => {
      if (this.isInitialized()) {
        // Metadata that does not verify is reported by whoever uses it next (the re-signer
        // logs it); opening the data dir must still work so the operator can inspect it.
        let state: RepositoryState | undefined;
        try {
          state = this.readState();
        } catch {
          state = undefined;
        }
        if (state) this.migrateToDelegation(state, now);
        return false;
      }
      const keys = Object.fromEntries(TUF_ROLES.map((role) => [role, loadOrCreateRoleKey(this.paths.keysDir, role)])) as Record<TufRole, RoleKey>;
      const publisherKey = loadOrCreateRoleKey(this.paths.keysDir, PUBLISHER_ROLE);
      const root = new Root({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('root', now), consistentSnapshot: true });
      // One key per role, threshold 1 (Root's default roles have threshold 1 and no keys yet).
      for (const role of TUF_ROLES) root.addKey(keys[role].key, role);
      const rootMd = new Metadata(root);
      signMetadata(rootMd, keys.root);
      const publisherBytes = this.writeSigned(PUBLISHER_ROLE, new Targets({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('publisher', now) }), publisherKey);
      const targetsBytes = this.writeSigned(
        'targets',
        new Targets({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('targets', now), delegations: publisherDelegation(publisherKey.key, DEFAULT_DELEGATED_PATHS) }),
        keys.targets,
      );
      const snapshotBytes = this.writeSnapshot(1, { targets: [1, targetsBytes], publisher: [1, publisherBytes] }, now, keys.snapshot);
      this.writeTimestamp(1, 1, snapshotBytes, now, keys.timestamp);
      const rootBytes = serialize(rootMd);
      // Consistent snapshots: clients fetch VERSION.root.json when updating root (spec 5.3.3).
      writeFileAtomic(this.file('1.root.json'), rootBytes);
      writeFileAtomic(this.file('root.json'), rootBytes);
      return true;
    });
  }

  /** The role's key from disk, checked against the metadata that delegates to it. */
  private roleKey(role: SigningRole, trusted: { keyIDs: string[] } | undefined): RoleKey {
    const key = readRoleKey(this.paths.keysDir, role);
    if (!key) {
      throw new MeshError('MESH_ERR_TUF_SIGNING_FAILED', `the data dir holds no ${role} key (${this.paths.keysDir}/${role}.pem); it is kept offline`);
    }
    if (!trusted?.keyIDs.includes(key.key.keyID)) {
      throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `the ${role} key on disk (${key.key.keyID}) is not one the trusted metadata lists for ${role}`);
    }
    return key;
  }

  /** The key if the data dir holds a trusted one, else undefined (offline). */
  private onlineKey(role: SigningRole, trusted: { keyIDs: string[] } | undefined): RoleKey | undefined {
    const key = readRoleKey(this.paths.keysDir, role);
    return key && trusted?.keyIDs.includes(key.key.keyID) ? key : undefined;
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
      const metadata = Metadata.fromJSON(kind as MetadataKind.Root, JSON.parse(bytes.toString('utf8')) as Parameters<typeof Metadata.fromJSON>[1]) as unknown as Metadata<T>;
      return { metadata, bytes };
    } catch (err) {
      throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', `${name} is not valid ${kind} metadata: ${(err as Error).message}`, { cause: err });
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
   * Reads the live chain the way a client would (timestamp -> snapshot -> targets ->
   * publisher), and checks signatures and the snapshot's hashes so we never extend metadata
   * that was tampered with.
   */
  readState(): RepositoryState {
    const root = this.read<Root>(MetadataKind.Root, 'root.json');
    const timestamp = this.read<Timestamp>(MetadataKind.Timestamp, 'timestamp.json');
    const snapshotMeta = timestamp.metadata.signed.snapshotMeta;
    const snapshot = this.read<Snapshot>(MetadataKind.Snapshot, `${snapshotMeta.version}.snapshot.json`);
    const targetsMeta = snapshot.metadata.signed.meta['targets.json'];
    if (!targetsMeta) throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', 'snapshot metadata does not list targets.json');
    const targets = this.read<Targets>(MetadataKind.Targets, `${targetsMeta.version}.targets.json`);
    const delegated = publisherRole(targets.metadata.signed);
    const publisherMeta = snapshot.metadata.signed.meta[`${PUBLISHER_ROLE}.json`];
    if (delegated && !publisherMeta) throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', `snapshot metadata does not list ${PUBLISHER_ROLE}.json`);
    const publisher = delegated && publisherMeta ? this.read<Targets>(MetadataKind.Targets, `${publisherMeta.version}.${PUBLISHER_ROLE}.json`) : undefined;
    try {
      root.metadata.verifyDelegate('root', root.metadata);
      root.metadata.verifyDelegate('timestamp', timestamp.metadata);
      root.metadata.verifyDelegate('snapshot', snapshot.metadata);
      root.metadata.verifyDelegate('targets', targets.metadata);
      snapshotMeta.verify(snapshot.bytes);
      targetsMeta.verify(targets.bytes);
      if (publisher) {
        targets.metadata.verifyDelegate(PUBLISHER_ROLE, publisher.metadata);
        publisherMeta!.verify(publisher.bytes);
      }
    } catch (err) {
      throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', `repository metadata does not verify: ${(err as Error).message}`, { cause: err });
    }
    return { root, timestamp, snapshot, targets, publisher };
  }

  versions(): RepositoryVersions {
    const s = this.readState();
    return {
      root: s.root.metadata.signed.version,
      targets: s.targets.metadata.signed.version,
      snapshot: s.snapshot.metadata.signed.version,
      timestamp: s.timestamp.metadata.signed.version,
      ...(s.publisher ? { publisher: s.publisher.metadata.signed.version } : {}),
    };
  }

  /** Which keys sit in the data dir: the start-up log warns while root or targets is among them. */
  keyCustody(): KeyCustody {
    try {
      const s = this.readState();
      const roles = s.root.metadata.signed.roles;
      const online: SigningRole[] = TUF_ROLES.filter((r) => this.onlineKey(r, roles[r]) !== undefined);
      if (this.onlineKey(PUBLISHER_ROLE, publisherRole(s.targets.metadata.signed))) online.push(PUBLISHER_ROLE);
      return { online, offline: TUF_ROLES.filter((r) => !online.includes(r)) };
    } catch {
      // Unverifiable metadata or an unreadable key (reported by whoever uses them next):
      // answer from which key files exist, so a start-up log never hides an online root key.
      const online = ([...TUF_ROLES, PUBLISHER_ROLE] as SigningRole[]).filter((r) => fs.existsSync(roleKeyFile(this.paths.keysDir, r)));
      return { online, offline: TUF_ROLES.filter((r) => !online.includes(r)) };
    }
  }

  /** Public keys of the online roles and the current versions, for `tuf sign-root` / `tuf sign-targets` offline. */
  onlineKeys(): Promise<OnlineKeysExport> {
    return this.lock(() => {
      const s = this.migrateToDelegation(this.readState(), new Date());
      const roles = s.root.metadata.signed.roles;
      return {
        format: ONLINE_KEYS_FORMAT,
        versions: { root: s.root.metadata.signed.version, targets: s.targets.metadata.signed.version },
        keys: {
          snapshot: exportPublicKey(this.roleKey('snapshot', roles.snapshot).key),
          timestamp: exportPublicKey(this.roleKey('timestamp', roles.timestamp).key),
          publisher: exportPublicKey(this.roleKey(PUBLISHER_ROLE, publisherRole(s.targets.metadata.signed)).key),
        },
      };
    });
  }

  delegatedPaths(): string[] {
    return [...(publisherRole(this.readState().targets.metadata.signed)?.paths ?? [])];
  }

  private writeSigned(role: 'targets' | typeof PUBLISHER_ROLE, targets: Targets, key: RoleKey): Buffer {
    const md = new Metadata(targets);
    signMetadata(md, key);
    const bytes = serialize(md);
    writeFileAtomic(this.file(`${targets.version}.${role}.json`), bytes);
    return bytes;
  }

  private writeSnapshot(version: number, files: Record<string, [version: number, bytes: Buffer]>, now: Date, key: RoleKey): Buffer {
    const meta = Object.fromEntries(Object.entries(files).map(([role, [v, bytes]]) => [`${role}.json`, metaFileFor(v, bytes)]));
    const md = new Metadata(new Snapshot({ version, specVersion: TUF_SPEC_VERSION, expires: expiresAt('snapshot', now), meta }));
    signMetadata(md, key);
    const bytes = serialize(md);
    writeFileAtomic(this.file(`${version}.snapshot.json`), bytes);
    return bytes;
  }

  /** timestamp.json is the commit point: until it names the new snapshot, clients see the old repository. */
  private writeTimestamp(version: number, snapshotVersion: number, snapshotBytes: Buffer, now: Date, key: RoleKey): void {
    const md = new Metadata(
      new Timestamp({ version, specVersion: TUF_SPEC_VERSION, expires: expiresAt('timestamp', now), snapshotMeta: metaFileFor(snapshotVersion, snapshotBytes) }),
    );
    signMetadata(md, key);
    writeFileAtomic(this.file('timestamp.json'), serialize(md));
  }

  /**
   * Writes new versions of the roles that change, bottom-up, timestamp last. A new snapshot
   * and timestamp always follow a new targets or publisher (spec 5.5/5.4: they must reference it).
   * `targets` is either unsigned (signed here with the online targets key) or already signed offline.
   */
  private commit(
    state: RepositoryState,
    change: { targets?: Targets | Metadata<Targets>; publisher?: Targets; snapshot?: boolean; root?: Metadata<Root> },
    now: Date,
  ): RepositoryVersions {
    const root = change.root ?? state.root.metadata;
    const roles = root.signed.roles;
    let targets: [number, Buffer] = [state.targets.metadata.signed.version, state.targets.bytes];
    let targetsSigned = state.targets.metadata.signed;
    if (change.targets instanceof Metadata) {
      const bytes = serialize(change.targets);
      writeFileAtomic(this.file(`${change.targets.signed.version}.targets.json`), bytes);
      targets = [change.targets.signed.version, bytes];
      targetsSigned = change.targets.signed;
    } else if (change.targets) {
      targets = [change.targets.version, this.writeSigned('targets', change.targets, this.roleKey('targets', roles.targets))];
      targetsSigned = change.targets;
    }
    let publisher: [number, Buffer] | undefined = state.publisher ? [state.publisher.metadata.signed.version, state.publisher.bytes] : undefined;
    if (change.publisher) {
      publisher = [change.publisher.version, this.writeSigned(PUBLISHER_ROLE, change.publisher, this.roleKey(PUBLISHER_ROLE, publisherRole(targetsSigned)))];
    }
    let snapshotVersion = state.snapshot.metadata.signed.version;
    let snapshotBytes = state.snapshot.bytes;
    if (change.targets || change.publisher || change.snapshot) {
      snapshotVersion += 1;
      snapshotBytes = this.writeSnapshot(snapshotVersion, { targets, ...(publisher ? { [PUBLISHER_ROLE]: publisher } : {}) }, now, this.roleKey('snapshot', roles.snapshot));
    }
    const timestampKey = this.roleKey('timestamp', roles.timestamp);
    if (change.root) {
      // The new root goes out after everything it must verify is in place and right before the
      // timestamp that points at it: a client updates root first (spec 5.3), so the window
      // where it sees the new root with the previous timestamp chain is two renames long.
      const rootBytes = serialize(change.root);
      writeFileAtomic(this.file(`${change.root.signed.version}.root.json`), rootBytes);
      writeFileAtomic(this.file('root.json'), rootBytes);
    }
    const timestampVersion = state.timestamp.metadata.signed.version + 1;
    this.writeTimestamp(timestampVersion, snapshotVersion, snapshotBytes, now, timestampKey);
    return {
      root: root.signed.version,
      targets: targets[0],
      snapshot: snapshotVersion,
      timestamp: timestampVersion,
      ...(publisher ? { publisher: publisher[0] } : {}),
    };
  }

  /**
   * A repository created before the publisher delegation holds artifact targets in top-level
   * targets. With the targets key online, move them into publisher v1 behind a delegation;
   * with it offline, only an imported targets version can add the delegation.
   */
  private migrateToDelegation(state: RepositoryState, now: Date): RepositoryState {
    if (state.publisher) return state;
    const current = state.targets.metadata.signed;
    if (!this.onlineKey('targets', state.root.metadata.signed.roles.targets)) {
      throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', 'top-level targets has no publisher delegation and its key is offline: import a targets version with the delegation (`meshanics-server tuf sign-targets`)');
    }
    const publisherKey = loadOrCreateRoleKey(this.paths.keysDir, PUBLISHER_ROLE);
    const delegation = publisherDelegation(publisherKey.key, DEFAULT_DELEGATED_PATHS);
    const role = delegation.roles![PUBLISHER_ROLE]!;
    const moved = Object.fromEntries(Object.entries(current.targets).filter(([p]) => role.isDelegatedPath(p)));
    const kept = Object.fromEntries(Object.entries(current.targets).filter(([p]) => !role.isDelegatedPath(p)));
    this.commit(
      state,
      {
        publisher: new Targets({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('publisher', now), targets: moved }),
        targets: new Targets({ version: current.version + 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('targets', now), targets: kept, delegations: delegation }),
      },
      now,
    );
    return this.readState();
  }

  hasTarget(targetPath: string): boolean {
    const s = this.readState();
    return targetPath in s.targets.metadata.signed.targets || (s.publisher !== undefined && targetPath in s.publisher.metadata.signed.targets);
  }

  /** Adds one target to the publisher role: publisher N+1, snapshot N+1, timestamp N+1 (spec 4.4-4.6). */
  addTarget(target: NewTarget, now = new Date()): Promise<RepositoryVersions> {
    return this.lock(() => {
      const state = this.migrateToDelegation(this.readState(), now);
      if (target.path in state.targets.metadata.signed.targets || target.path in state.publisher!.metadata.signed.targets) {
        throw new MeshError('MESH_ERR_ARTIFACT_CONFLICT', `TUF target ${target.path} is already signed`);
      }
      const role = publisherRole(state.targets.metadata.signed)!;
      if (!role.isDelegatedPath(target.path)) {
        // A device would not find it: the terminating delegation is the only place it searches.
        throw new MeshError(
          'MESH_ERR_ARTIFACT_INVALID_NAME',
          `target ${target.path} is outside the names top-level targets delegates to the publisher key (paths ${JSON.stringify(role.paths)}); a new targets version must widen the delegation`,
        );
      }
      const current = state.publisher!.metadata.signed;
      const next = new Targets({
        version: current.version + 1,
        specVersion: TUF_SPEC_VERSION,
        expires: expiresAt('publisher', now),
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
      return this.commit(state, { publisher: next }, now);
    });
  }

  /**
   * The online re-signer: renews whichever of targets (only while its key is online),
   * publisher, snapshot and timestamp has less than half its lifetime left. `overdue` names
   * roles that are due but whose key is offline: the operator must sign them offline.
   */
  refreshExpiring(now = new Date()): Promise<{ resigned: SigningRole[]; versions: RepositoryVersions | undefined; overdue: TufRole[] }> {
    return this.lock(() => {
      const state = this.readState();
      const overdue: TufRole[] = [];
      let targetsDue = isDueForResigning('targets', state.targets.metadata.signed.expires, now);
      if (targetsDue && !this.onlineKey('targets', state.root.metadata.signed.roles.targets)) {
        overdue.push('targets');
        targetsDue = false;
      }
      if (isDueForResigning('root', state.root.metadata.signed.expires, now)) overdue.push('root');
      const publisherDue = state.publisher !== undefined && isDueForResigning('publisher', state.publisher.metadata.signed.expires, now);
      const snapshotDue = targetsDue || publisherDue || isDueForResigning('snapshot', state.snapshot.metadata.signed.expires, now);
      const timestampDue = snapshotDue || isDueForResigning('timestamp', state.timestamp.metadata.signed.expires, now);
      if (!timestampDue) return { resigned: [], versions: undefined, overdue };
      const renew = (t: Targets, role: 'targets' | typeof PUBLISHER_ROLE): Targets =>
        new Targets({
          version: t.version + 1,
          specVersion: TUF_SPEC_VERSION,
          expires: expiresAt(role, now),
          targets: t.targets,
          ...(t.delegations ? { delegations: t.delegations } : {}),
        });
      const versions = this.commit(
        state,
        {
          ...(targetsDue ? { targets: renew(state.targets.metadata.signed, 'targets') } : {}),
          ...(publisherDue ? { publisher: renew(state.publisher!.metadata.signed, PUBLISHER_ROLE) } : {}),
          snapshot: snapshotDue,
        },
        now,
      );
      const resigned: SigningRole[] = [
        ...(targetsDue ? ['targets' as const] : []),
        ...(publisherDue ? [PUBLISHER_ROLE as SigningRole] : []),
        ...(snapshotDue ? ['snapshot' as const] : []),
        'timestamp',
      ];
      return { resigned, versions, overdue };
    });
  }

  rootExpires(): string {
    return this.readState().root.metadata.signed.expires;
  }

  /**
   * Installs a root and/or top-level targets version signed elsewhere (the offline ceremony).
   * Every check runs before the first write, so a refusal changes nothing:
   * - root (spec 5.3.4-5.3.5, 6.1): version current+1, unexpired, consistent snapshots, signed by
   *   a threshold of its own root keys and of the current root's (when the current root key is
   *   still in the data dir — the embedded default — the server adds that signature itself);
   *   it must name the snapshot and timestamp keys this server holds.
   * - targets: version current+1, unexpired, signed by the (new) root's targets threshold, and
   *   only the publisher delegation described in delegation.ts.
   * Then snapshot and timestamp are re-signed, and online root/targets private keys that the
   * new root no longer lists are deleted. `onInstalled` runs inside the lock (the audit event).
   */
  importSigned(input: ImportInput, options: { now?: Date; onInstalled?: (result: ImportResult) => unknown } = {}): Promise<ImportResult> {
    const now = options.now ?? new Date();
    if (!input.root && !input.targets) throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', 'nothing to import: give a root and/or a targets file');
    return this.lock(async () => {
      let state = this.readState();
      if (!state.publisher && this.onlineKey('targets', state.root.metadata.signed.roles.targets)) state = this.migrateToDelegation(state, now);
      const current = state.root.metadata;
      let trustedRoot = current;
      let rootResult: ImportResult['root'];
      if (input.root) {
        const md = parseImported<Root>(MetadataKind.Root, input.root, 'the root file');
        const version = md.signed.version;
        if (version !== current.signed.version + 1) {
          throw new TufError('MESH_ERR_TUF_IMPORT_VERSION', `root version ${version} is not the current version ${current.signed.version} + 1`);
        }
        if (md.signed.isExpired(now)) throw new TufError('MESH_ERR_TUF_IMPORT_EXPIRED', `root v${version} expired at ${md.signed.expires}`);
        if (!md.signed.consistentSnapshot) throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `root v${version} must set consistent_snapshot: true (this repository serves VERSION.ROLE.json)`);
        try {
          md.verifyDelegate('root', md);
        } catch (err) {
          throw new TufError('MESH_ERR_TUF_IMPORT_SIGNATURE', `root v${version} is not signed by a threshold of its own root keys (spec 5.3.5): ${(err as Error).message}`, { cause: err });
        }
        let added = false;
        try {
          current.verifyDelegate('root', md);
        } catch (err) {
          const held = this.onlineKey('root', current.signed.roles.root);
          if (!held) {
            throw new TufError(
              'MESH_ERR_TUF_IMPORT_OLD_ROOT_SIGNATURE',
              `root v${version} is not signed by a threshold of the current root v${current.signed.version} keys [${current.signed.roles.root?.keyIDs.join(', ')}] (spec 5.3.4), and this data dir holds none of them: sign it with the current root key too`,
              { cause: err },
            );
          }
          signMetadata(md, held, true);
          added = true;
          try {
            current.verifyDelegate('root', md);
          } catch (again) {
            throw new TufError('MESH_ERR_TUF_IMPORT_OLD_ROOT_SIGNATURE', `root v${version} is still short of the current root threshold after the server's signature: ${(again as Error).message}`, { cause: again });
          }
        }
        for (const role of ['snapshot', 'timestamp'] as const) {
          const held = readRoleKey(this.paths.keysDir, role);
          if (!held || !md.signed.roles[role]?.keyIDs.includes(held.key.keyID) || md.signed.roles[role].threshold !== 1) {
            throw new TufError(
              'MESH_ERR_TUF_IMPORT_ONLINE_KEYS',
              `root v${version} must list this server's ${role} key ${held?.key.keyID ?? '(missing)'} with threshold 1 (export it with \`tuf online-keys\`)`,
            );
          }
        }
        trustedRoot = md;
        rootResult = {
          version,
          keyids: Object.fromEntries(TUF_ROLES.map((r) => [r, [...(md.signed.roles[r]?.keyIDs ?? [])]])),
          addedCurrentRootSignature: added,
        };
      }
      let newTargets: Metadata<Targets> | undefined;
      let targetsResult: ImportResult['targets'];
      if (input.targets) {
        const md = parseImported<Targets>(MetadataKind.Targets, input.targets, 'the targets file');
        const version = md.signed.version;
        const currentVersion = state.targets.metadata.signed.version;
        if (version !== currentVersion + 1) throw new TufError('MESH_ERR_TUF_IMPORT_VERSION', `targets version ${version} is not the current version ${currentVersion} + 1`);
        if (md.signed.isExpired(now)) throw new TufError('MESH_ERR_TUF_IMPORT_EXPIRED', `targets v${version} expired at ${md.signed.expires}`);
        try {
          trustedRoot.verifyDelegate('targets', md);
        } catch (err) {
          throw new TufError(
            'MESH_ERR_TUF_IMPORT_SIGNATURE',
            `targets v${version} is not signed by a threshold of the targets keys [${trustedRoot.signed.roles.targets?.keyIDs.join(', ')}] of root v${trustedRoot.signed.version}: ${(err as Error).message}`,
            { cause: err },
          );
        }
        const publisherKey = loadOrCreateRoleKey(this.paths.keysDir, PUBLISHER_ROLE);
        const published = Object.keys(state.publisher?.metadata.signed.targets ?? state.targets.metadata.signed.targets);
        const role = checkImportedDelegation(md.signed, publisherKey.key.keyID, published);
        newTargets = md;
        targetsResult = { version, delegatedPaths: [...(role.paths ?? [])] };
      } else {
        try {
          trustedRoot.verifyDelegate('targets', state.targets.metadata);
        } catch (err) {
          throw new TufError(
            'MESH_ERR_TUF_IMPORT_TARGETS_REQUIRED',
            `the current targets v${state.targets.metadata.signed.version} does not verify under root v${trustedRoot.signed.version}: import the targets version signed by the new targets key in the same command`,
            { cause: err },
          );
        }
        if (!state.publisher) {
          throw new TufError('MESH_ERR_TUF_IMPORT_TARGETS_REQUIRED', 'top-level targets has no publisher delegation yet: import a targets version that adds it');
        }
      }
      // A legacy repository whose targets key was never online here: publisher v1 holds what
      // top-level targets listed, so nothing published is orphaned by the new delegation.
      const publisher =
        newTargets && !state.publisher
          ? new Targets({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('publisher', now), targets: state.targets.metadata.signed.targets })
          : undefined;
      const removedOnlineKeys = (['root', 'targets'] as const).filter((r) => {
        const held = readRoleKey(this.paths.keysDir, r);
        return held !== undefined && !trustedRoot.signed.roles[r]?.keyIDs.includes(held.key.keyID);
      });
      const provisional: ImportResult = {
        ...(rootResult ? { root: rootResult } : {}),
        ...(targetsResult ? { targets: targetsResult } : {}),
        removedOnlineKeys,
        versions: {
          root: trustedRoot.signed.version,
          targets: newTargets?.signed.version ?? state.targets.metadata.signed.version,
          snapshot: state.snapshot.metadata.signed.version + 1,
          timestamp: state.timestamp.metadata.signed.version + 1,
        },
      };
      // Inside the write lock and before any file changes: if the audit insert fails, nothing is installed.
      await options.onInstalled?.(provisional);
      const versions = this.commit(
        state,
        { ...(newTargets ? { targets: newTargets } : {}), ...(publisher ? { publisher } : {}), snapshot: true, ...(input.root ? { root: trustedRoot } : {}) },
        now,
      );
      for (const r of removedOnlineKeys) fs.rmSync(path.join(this.paths.keysDir, `${r}.pem`), { force: true });
      return { ...provisional, versions };
    });
  }
}
