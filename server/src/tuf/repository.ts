// The server's TUF repository (TUF spec 1.0, "consistent_snapshot": true). Files on disk are
// the only state: every operation re-reads the chain (state.ts) and the keys inside the
// data-dir write lock, so a CLI process (publishing, or importing metadata signed offline)
// next to a running `serve` can never build on a stale version, lose the other's target, or
// sign with a key that was just retired.
//
// Roles (spec 2.1, 4.5): root and top-level targets may be kept offline; top-level targets
// only delegates a terminating slice of names (name/version/file) to the "publisher" role,
// whose key is online, which delegates to hash bins (bins.ts) that sign the artifacts
// (publishing.ts). Snapshot lists every targets file (spec 4.4); snapshot and timestamp are
// online. Every change is signed as a candidate in memory, verified with the device's own TUF
// client (verification-gate.ts), and only then written timestamp-last (commit.ts).
import { Metadata, MetaFile, Root, Targets } from '@tufjs/models';
import { MeshError } from '../errors.js';
import { TufError } from './errors.js';
import { allBinNames, binsDelegation, binsOf, probePathFor, readBin, withoutInlineManifest } from './bins.js';
import { buildCandidate, signedBytes, snapshotBytes, timestampBytes, writeCandidate, type RepositoryChange } from './commit.js';
import { DEFAULT_DELEGATED_PATHS, publisherDelegation, publisherRole } from './delegation.js';
import { importSigned, type ImportInput, type ImportResult } from './import-signed.js';
import { keyCustodyOf, onlineKeysExport, onlineRoleKey, type KeyCustody, type OnlineKeysExport } from './key-custody.js';
import { loadOrCreateRoleKey, signMetadata, type RoleKey } from './keys.js';
import * as rotation from './online-rotation.js';
import { expiresAt, isDueForResigning, PUBLISHER_ROLE, TUF_ROLES, type SigningRole, type TufRole } from './lifetimes.js';
import { MetadataFiles, metaFileFor, serialize, sha256Hex, TUF_SPEC_VERSION, type TufRepositoryPaths } from './metadata-files.js';
import { signedTarget, withoutTarget, withTargets, type NewTarget } from './publishing.js';
import { readState, versionsOf, type RepositoryState, type RepositoryVersions } from './state.js';
import { lookupsFor, verifyCandidate, type Lookup } from './verification-gate.js';

export { TUF_SPEC_VERSION, type TufRepositoryPaths } from './metadata-files.js';
export { ONLINE_KEYS_FORMAT, type KeyCustody, type OnlineKeysExport } from './key-custody.js';
export type { ImportInput, ImportResult } from './import-signed.js';
export { ALL_FLEETS, type NewTarget } from './publishing.js';
export type { RepositoryState, RepositoryVersions } from './state.js';

/** The data-dir write lock (the store's write transaction); async since the store is. */
export type WriteLock = <T>(fn: () => T | Promise<T>) => Promise<T>;

export class TufRepository {
  private readonly files: MetadataFiles;
  /** sha256 of the timestamp.json checkVerifiableByDevices last found verifiable. */
  private verifiedTimestamp: string | undefined;

  constructor(
    private readonly paths: TufRepositoryPaths,
    private readonly lock: WriteLock,
  ) {
    this.files = new MetadataFiles(paths.metadataDir);
  }

  isInitialized(): boolean {
    return this.files.exists('root.json');
  }

  /**
   * Creates keys and version 1 of every role unless root.json exists (then only migrates a
   * repository from before the publisher delegation). root.json is written last, so a crash
   * part-way leaves an uninitialized repository that the next start redoes.
   */
  initialize(now = new Date()): Promise<boolean> {
    return this.lock(async () => {
      if (this.isInitialized()) {
        // Metadata that does not verify is reported by whoever uses it next (the re-signer
        // logs it); opening the data dir must still work so the operator can inspect it.
        let state: RepositoryState | undefined;
        try {
          state = this.readState();
        } catch {
          state = undefined;
        }
        if (state) {
          state = await this.migrate(state, now);
          // Finishes an online-key activation a crash interrupted after its commit (online-rotation.ts).
          rotation.promotePendingKeys(this.paths.keysDir, state);
        }
        return false;
      }
      const keys = Object.fromEntries(TUF_ROLES.map((role) => [role, loadOrCreateRoleKey(this.paths.keysDir, role)])) as Record<TufRole, RoleKey>;
      const publisherKey = loadOrCreateRoleKey(this.paths.keysDir, PUBLISHER_ROLE);
      const root = new Root({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('root', now), consistentSnapshot: true });
      // One key per role, threshold 1 (Root's default roles have threshold 1 and no keys yet).
      for (const role of TUF_ROLES) root.addKey(keys[role].key, role);
      const rootMd = new Metadata(root);
      signMetadata(rootMd, keys.root);
      const files: Array<[string, Buffer]> = [];
      const publisher = new Targets({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('publisher', now), delegations: binsDelegation(publisherKey.key) });
      const publisherBytes = signedBytes(publisher, publisherKey);
      files.push([`1.${PUBLISHER_ROLE}.json`, publisherBytes]);
      const meta: Record<string, MetaFile> = { [`${PUBLISHER_ROLE}.json`]: metaFileFor(1, publisherBytes) };
      // Every bin v1 is the same empty, signed role (a bin's name is not in its metadata): one file, linked under each name.
      const emptyBin = signedBytes(new Targets({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('publisher', now) }), publisherKey);
      for (const name of allBinNames(publisher.delegations!.succinctRoles!)) {
        files.push([`1.${name}.json`, emptyBin]);
        meta[`${name}.json`] = new MetaFile({ version: 1, length: emptyBin.length });
      }
      const delegations = publisherDelegation(publisherKey.key, DEFAULT_DELEGATED_PATHS);
      const targetsBytes = signedBytes(new Targets({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('targets', now), delegations }), keys.targets);
      files.push(['1.targets.json', targetsBytes]);
      meta['targets.json'] = metaFileFor(1, targetsBytes);
      const snapshot = snapshotBytes(1, meta, now, keys.snapshot);
      files.push(['1.snapshot.json', snapshot], ['timestamp.json', timestampBytes(1, 1, snapshot, now, keys.timestamp)]);
      const rootBytes = serialize(rootMd);
      // Consistent snapshots: clients fetch VERSION.root.json when updating root (spec 5.3.3).
      files.push(['1.root.json', rootBytes], ['root.json', rootBytes]);
      this.files.writeAll(files);
      return true;
    });
  }

  /** The newest root a device should pin: the highest N.root.json. */
  latestRootBytes(): Buffer {
    return this.files.latestRootBytes();
  }

  /** The live chain read and verified the way a client would (state.ts). */
  readState(): RepositoryState {
    return readState(this.files);
  }

  versions(): RepositoryVersions {
    return versionsOf(this.readState());
  }

  /** Which keys sit in the data dir: the start-up log warns while root or targets is among them. */
  keyCustody(): KeyCustody {
    return keyCustodyOf(this.paths.keysDir, () => this.readState());
  }

  /** Public keys of the online roles and the current versions, for `tuf sign-root` / `tuf sign-targets` offline. */
  onlineKeys(): Promise<OnlineKeysExport> {
    return this.lock(async () => onlineKeysExport(this.paths.keysDir, await this.migrate(this.readState(), new Date())));
  }

  delegatedPaths(): string[] {
    return [...(publisherRole(this.readState().targets.metadata.signed)?.paths ?? [])];
  }

  /**
   * Signs the change as a candidate, has the device's TUF client verify it (gate (b), with
   * `expect` plus one lookup through every changed bin), and only then writes it.
   */
  private async commit(state: RepositoryState, change: RepositoryChange, now: Date, expect: readonly Lookup[] = []): Promise<RepositoryVersions> {
    const candidate = buildCandidate(this.paths.keysDir, state, change, now);
    await verifyCandidate(this.files, state, candidate, lookupsFor(state, change, expect));
    return writeCandidate(this.files, candidate);
  }

  /** Brings an older repository to the current layout: publisher delegation, then hash bins. */
  private async migrate(state: RepositoryState, now: Date): Promise<RepositoryState> {
    return this.migrateToBins(await this.migrateToDelegation(state, now), now);
  }

  /**
   * A repository created before the publisher delegation holds artifact targets in top-level
   * targets. With the targets key online, move them into publisher v1 behind a delegation;
   * with it offline, only an imported targets version can add the delegation.
   */
  private async migrateToDelegation(state: RepositoryState, now: Date): Promise<RepositoryState> {
    if (state.publisher) return state;
    const current = state.targets.metadata.signed;
    if (!onlineRoleKey(this.paths.keysDir, 'targets', state.root.metadata.signed.roles.targets)) {
      throw new MeshError(
        'MESH_ERR_TUF_METADATA_INVALID',
        'top-level targets has no publisher delegation and its key is offline: import a targets version with the delegation (`meshanics-server tuf sign-targets`)',
      );
    }
    const publisherKey = loadOrCreateRoleKey(this.paths.keysDir, PUBLISHER_ROLE);
    const delegation = publisherDelegation(publisherKey.key, DEFAULT_DELEGATED_PATHS);
    const role = delegation.roles![PUBLISHER_ROLE]!;
    const moved = Object.fromEntries(Object.entries(current.targets).filter(([p]) => role.isDelegatedPath(p)));
    const kept = Object.fromEntries(Object.entries(current.targets).filter(([p]) => !role.isDelegatedPath(p)));
    await this.commit(
      state,
      {
        publisher: new Targets({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('publisher', now), targets: moved }),
        targets: new Targets({ version: current.version + 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('targets', now), targets: kept, delegations: delegation }),
      },
      now,
    );
    return this.readState();
  }

  /**
   * A publisher from before the hash bins signs its targets itself. Publisher N+1 delegates to
   * BIN_COUNT bins (v1) that take its targets over, their inline manifests replaced by their
   * sha256 and length (withoutInlineManifest); top-level targets and root do not change,
   * so agents in the field follow with an ordinary refresh (tuf-js 5.0.x walks succinct
   * delegations, TAP 15) and their root stays pinned.
   */
  private async migrateToBins(state: RepositoryState, now: Date): Promise<RepositoryState> {
    if (!state.publisher || binsOf(state)) return state;
    const current = state.publisher.metadata.signed;
    const publisherKey = loadOrCreateRoleKey(this.paths.keysDir, PUBLISHER_ROLE);
    const publisher = new Targets({
      version: current.version + 1,
      specVersion: TUF_SPEC_VERSION,
      expires: expiresAt('publisher', now),
      delegations: binsDelegation(publisherKey.key),
    });
    const succinct = publisher.delegations!.succinctRoles!;
    const bins = Object.fromEntries(allBinNames(succinct).map((name) => [name, new Targets({ version: 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('publisher', now) })]));
    const moved = Object.values(current.targets).map(withoutInlineManifest);
    for (const file of moved) bins[succinct.getRoleForTarget(file.path)]!.targets[file.path] = file;
    const expect = moved.map((t) => ({ path: t.path, expect: { length: t.length, sha256: t.hashes.sha256!, custom: t.custom } }));
    await this.commit(state, { publisher, bins }, now, expect);
    return this.readState();
  }

  hasTarget(targetPath: string): boolean {
    return signedTarget(this.files, this.readState(), targetPath) !== undefined;
  }

  /** Adds one target to its hash bin: bin N+1, snapshot N+1, timestamp N+1 (spec 4.4-4.6). */
  addTarget(target: NewTarget, now = new Date()): Promise<RepositoryVersions> {
    return this.addTargets([target], now);
  }

  /** Adds several targets in one new version of each bin they fall into (one snapshot, one timestamp). */
  addTargets(targets: readonly NewTarget[], now = new Date()): Promise<RepositoryVersions> {
    return this.lock(async () => {
      const state = await this.migrate(this.readState(), now);
      const change = withTargets(this.files, state, targets, now);
      return this.commit(state, change, now, change.expect);
    });
  }

  /**
   * Withdraws one target from its bin (bin, snapshot and timestamp N+1): from their next
   * refresh devices no longer find it (spec 5.7.1). An unknown path is refused with
   * MESH_ERR_ARTIFACT_NOT_FOUND and nothing changes. The bytes under targets/ are the caller's.
   */
  removeTarget(targetPath: string, now = new Date()): Promise<RepositoryVersions> {
    return this.lock(async () => {
      const state = await this.migrate(this.readState(), now);
      const change = withoutTarget(this.files, state, targetPath, now);
      return this.commit(state, change, now, change.expect);
    });
  }

  /**
   * The online re-signer: renews whichever of targets (only while its key is online),
   * publisher, snapshot and timestamp has less than half its lifetime left. `overdue` names
   * roles that are due but whose key is offline: the operator must sign them offline. Bins
   * are looked at when publisher is due (every half publisher lifetime), and those with less
   * than half their lifetime left are renewed with it: a bin not due then has more than half a
   * lifetime left, longer than the wait until publisher is due again.
   */
  refreshExpiring(now = new Date()): Promise<{ resigned: SigningRole[]; versions: RepositoryVersions | undefined; overdue: TufRole[] }> {
    return this.lock(async () => {
      const state = this.readState();
      const overdue: TufRole[] = [];
      let targetsDue = isDueForResigning('targets', state.targets.metadata.signed.expires, now);
      if (targetsDue && !onlineRoleKey(this.paths.keysDir, 'targets', state.root.metadata.signed.roles.targets)) {
        overdue.push('targets');
        targetsDue = false;
      }
      if (isDueForResigning('root', state.root.metadata.signed.expires, now)) overdue.push('root');
      const publisherDue = state.publisher !== undefined && isDueForResigning('publisher', state.publisher.metadata.signed.expires, now);
      const snapshotDue = targetsDue || publisherDue || isDueForResigning('snapshot', state.snapshot.metadata.signed.expires, now);
      const timestampDue = snapshotDue || isDueForResigning('timestamp', state.timestamp.metadata.signed.expires, now);
      if (!timestampDue) return { resigned: [], versions: undefined, overdue };
      const renew = (t: Targets, role: TargetsRole): Targets => renewedTargets(t, role, 1, now);
      const succinct = binsOf(state);
      const bins: Record<string, Targets> = {};
      if (publisherDue && succinct) {
        for (const name of allBinNames(succinct)) {
          const bin = readBin(this.files, state, name).metadata.signed;
          if (isDueForResigning('publisher', bin.expires, now)) bins[name] = renew(bin, PUBLISHER_ROLE);
        }
      }
      const versions = await this.commit(
        state,
        {
          ...(targetsDue ? { targets: renew(state.targets.metadata.signed, 'targets') } : {}),
          ...(publisherDue ? { publisher: renew(state.publisher!.metadata.signed, PUBLISHER_ROLE) } : {}),
          ...(Object.keys(bins).length > 0 ? { bins } : {}),
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

  /**
   * Re-signs every online role `by` versions higher with the same content and fresh expiry
   * dates: each bin, publisher, snapshot and timestamp, and top-level targets when its key is
   * online (an offline one keeps its version: only a ceremony raised it, and the operator
   * re-imports that file). For a restore from an older backup: devices keep the highest
   * versions they have seen and refuse lower ones (spec 5.3-5.6 rollback checks), so the
   * restored repository must move past them. Verified like any change before it is written.
   */
  bumpVersions(by: number, now = new Date()): Promise<RepositoryVersions> {
    if (!Number.isInteger(by) || by < 1) throw new MeshError('MESH_ERR_CONFIG_INVALID', `a TUF version bump must be a positive integer, got ${by}`);
    return this.lock(async () => {
      const state = this.readState();
      const renew = (t: Targets, role: TargetsRole): Targets => renewedTargets(t, role, by, now);
      const succinct = binsOf(state);
      const bins: Record<string, Targets> = {};
      if (succinct) for (const name of allBinNames(succinct)) bins[name] = renew(readBin(this.files, state, name).metadata.signed, PUBLISHER_ROLE);
      const targetsOnline = onlineRoleKey(this.paths.keysDir, 'targets', state.root.metadata.signed.roles.targets) !== undefined;
      return this.commit(
        state,
        {
          ...(targetsOnline ? { targets: renew(state.targets.metadata.signed, 'targets') } : {}),
          ...(state.publisher ? { publisher: renew(state.publisher.metadata.signed, PUBLISHER_ROLE) } : {}),
          ...(Object.keys(bins).length > 0 ? { bins } : {}),
          snapshot: true,
          versionStep: by,
        },
        now,
      );
    });
  }

  /**
   * Gate (b) on the live repository, for /readyz: a device's TUF client refreshes from the
   * current root and walks into every bin. Metadata written before the gate existed, or
   * altered on disk, may not verify although the server itself can still read it (the issue 23
   * incident: ready, while no device could install anything). Verified once per timestamp.json.
   */
  async checkVerifiableByDevices(): Promise<void> {
    const state = this.readState();
    const key = sha256Hex(state.timestamp.bytes);
    if (this.verifiedTimestamp === key) return;
    const succinct = binsOf(state);
    const lookups = succinct ? allBinNames(succinct).map((name) => ({ path: probePathFor(succinct, name), expect: undefined })) : [];
    await verifyCandidate(this.files, state, { files: [], versions: versionsOf(state) }, lookups);
    this.verifiedTimestamp = key;
  }

  rootExpires(): string {
    return this.readState().root.metadata.signed.expires;
  }

  /** Every target path the repository signs (top-level targets, publisher, every bin); reads all bins. */
  private allTargetPaths(state: RepositoryState): string[] {
    const paths = [...Object.keys(state.targets.metadata.signed.targets), ...Object.keys(state.publisher?.metadata.signed.targets ?? {})];
    const succinct = binsOf(state);
    if (succinct) for (const name of allBinNames(succinct)) paths.push(...Object.keys(readBin(this.files, state, name).metadata.signed.targets));
    return paths;
  }

  /** Installs a root and/or top-level targets version signed elsewhere (import-signed.ts). `onInstalled` runs inside the lock (the audit event). */
  importSigned(input: ImportInput, options: { now?: Date; onInstalled?: (result: ImportResult) => unknown } = {}): Promise<ImportResult> {
    const now = options.now ?? new Date();
    if (!input.root && !input.targets) throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', 'nothing to import: give a root and/or a targets file');
    return this.lock(async () => {
      let state = this.readState();
      if (!state.publisher && onlineRoleKey(this.paths.keysDir, 'targets', state.root.metadata.signed.roles.targets)) state = await this.migrateToDelegation(state, now);
      const published = this.allTargetPaths(state);
      const result = await importSigned(this.paths.keysDir, state, input, now, { published, onInstalled: options.onInstalled }, (s, change) =>
        rotation.activates(this.paths.keysDir, change)
          ? rotation.commitActivation(this.paths.keysDir, this.files, s, change, now)
          : this.commit(s, rotation.withPublisherKeyChange(this.files, s, change, now), now),
      );
      // Committed: pending keys the metadata now names replace the active ones (online-rotation.ts).
      rotation.promotePendingKeys(this.paths.keysDir, this.readState());
      return result;
    });
  }

  /** `tuf rotate-online --stage`: new snapshot, timestamp and publisher keys, pending until `tuf import` names them. */
  stageOnlineRotation(now = new Date()): Promise<{ pending: rotation.PendingRotation; exported: OnlineKeysExport }> {
    return this.lock(async () => rotation.stageRotation(this.paths.keysDir, await this.migrate(this.readState(), now), now));
  }

  /** The staged rotation's export again (the offline machine lost it). */
  exportOnlineRotation(): Promise<{ pending: rotation.PendingRotation; exported: OnlineKeysExport }> {
    return this.lock(async () => rotation.exportPendingRotation(this.paths.keysDir, this.readState()));
  }

  /** Deletes the pending keys of a rotation not yet activated. */
  abandonOnlineRotation(): Promise<rotation.PendingRotation> {
    return this.lock(async () => rotation.abandonRotation(this.paths.keysDir, this.readState()));
  }

  /** The staged rotation, if any. */
  pendingOnlineRotation(): rotation.PendingRotation | undefined {
    return rotation.readPendingRotation(this.paths.keysDir);
  }
}

type TargetsRole = 'targets' | typeof PUBLISHER_ROLE;

/** The same targets `by` versions higher with a fresh expiry: re-signing and the restore bump. */
function renewedTargets(t: Targets, role: TargetsRole, by: number, now: Date): Targets {
  return new Targets({
    version: t.version + by,
    specVersion: TUF_SPEC_VERSION,
    expires: expiresAt(role, now),
    targets: t.targets,
    ...(t.delegations ? { delegations: t.delegations } : {}),
  });
}
