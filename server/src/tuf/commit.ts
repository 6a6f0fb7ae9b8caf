// One repository change: the new versions of the roles that change are signed in memory
// first (a candidate), and only then written bottom-up with timestamp.json last. Until
// timestamp.json names the new snapshot, clients see the old repository (spec 5.4), so the
// rename of timestamp.json is the commit point; a crash before it leaves unreferenced files.
import { Metadata, MetaFile, Snapshot, Timestamp, type Root, type Targets } from '@tufjs/models';
import { MeshError } from '../errors.js';
import { publisherRole } from './delegation.js';
import { trustedRoleKey } from './key-custody.js';
import { signMetadata, type RoleKey } from './keys.js';
import { expiresAt, PUBLISHER_ROLE } from './lifetimes.js';
import { metaFileFor, serialize, TUF_SPEC_VERSION, type MetadataFiles } from './metadata-files.js';
import type { RepositoryState, RepositoryVersions } from './state.js';

export interface RepositoryChange {
  /** Unsigned (signed here with the online targets key) or already signed offline. */
  targets?: Targets | Metadata<Targets>;
  publisher?: Targets;
  /** New versions of hash bins (bins.ts), signed with the publisher delegation's key. */
  bins?: Record<string, Targets>;
  /** Re-sign snapshot even if no targets role changed (expiry, or a new root). */
  snapshot?: boolean;
  /**
   * How far snapshot and timestamp versions move (default 1). A restore from an older backup
   * moves them past what devices already trust (TufRepository.bumpVersions).
   */
  versionStep?: number;
  root?: Metadata<Root>;
}

/** The files of a candidate, in the order they must be written (timestamp.json last). */
export interface Candidate {
  files: Array<[name: string, bytes: Buffer]>;
  versions: RepositoryVersions;
}

export function signedBytes(signed: Targets | Snapshot | Timestamp, key: RoleKey): Buffer {
  const md = new Metadata(signed) as Metadata<Targets>;
  signMetadata(md, key);
  return serialize(md);
}

/** `meta`: what snapshot lists, by file name (ROLE.json). */
export function snapshotBytes(version: number, meta: Record<string, MetaFile>, now: Date, key: RoleKey): Buffer {
  return signedBytes(new Snapshot({ version, specVersion: TUF_SPEC_VERSION, expires: expiresAt('snapshot', now), meta }), key);
}

export function timestampBytes(version: number, snapshotVersion: number, snapshot: Buffer, now: Date, key: RoleKey): Buffer {
  const timestamp = new Timestamp({ version, specVersion: TUF_SPEC_VERSION, expires: expiresAt('timestamp', now), snapshotMeta: metaFileFor(snapshotVersion, snapshot) });
  return signedBytes(timestamp, key);
}

/**
 * Signs new versions of the roles that change. A new snapshot and timestamp always follow a
 * new targets or publisher (spec 5.5/5.4: they must reference it).
 */
export function buildCandidate(keysDir: string, state: RepositoryState, change: RepositoryChange, now: Date): Candidate {
  const files: Candidate['files'] = [];
  const root = change.root ?? state.root.metadata;
  const roles = root.signed.roles;
  let targets: [number, Buffer] = [state.targets.metadata.signed.version, state.targets.bytes];
  let targetsSigned = state.targets.metadata.signed;
  if (change.targets instanceof Metadata) {
    targets = [change.targets.signed.version, serialize(change.targets)];
    targetsSigned = change.targets.signed;
  } else if (change.targets) {
    targets = [change.targets.version, signedBytes(change.targets, trustedRoleKey(keysDir, 'targets', roles.targets))];
    targetsSigned = change.targets;
  }
  if (change.targets) files.push([`${targets[0]}.targets.json`, targets[1]]);
  let publisher: [number, Buffer] | undefined = state.publisher ? [state.publisher.metadata.signed.version, state.publisher.bytes] : undefined;
  if (change.publisher) {
    const key = trustedRoleKey(keysDir, PUBLISHER_ROLE, publisherRole(targetsSigned));
    publisher = [change.publisher.version, signedBytes(change.publisher, key)];
    files.push([`${publisher[0]}.${PUBLISHER_ROLE}.json`, publisher[1]]);
  }
  // Bins: listed in snapshot with version and length only (spec 4.4 makes hashes optional; the
  // bin's signature and version are checked anyway), which keeps 128 entries near 8 KB.
  const binsMeta: Record<string, MetaFile> = {};
  const succinct = (change.publisher ?? state.publisher?.metadata.signed)?.delegations?.succinctRoles;
  if (succinct) {
    const changedBins = change.bins ?? {};
    const binKey = Object.keys(changedBins).length > 0 ? trustedRoleKey(keysDir, PUBLISHER_ROLE, succinct) : undefined;
    for (const name of succinct.getRoles()) {
      const bin = changedBins[name];
      if (bin) {
        const bytes = signedBytes(bin, binKey!);
        files.push([`${bin.version}.${name}.json`, bytes]);
        binsMeta[`${name}.json`] = new MetaFile({ version: bin.version, length: bytes.length });
      } else {
        const listed = state.snapshot.metadata.signed.meta[`${name}.json`];
        if (!listed) throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', `snapshot metadata does not list ${name}.json and no new version of it is given`);
        binsMeta[`${name}.json`] = listed;
      }
    }
  }
  let snapshotVersion = state.snapshot.metadata.signed.version;
  let snapshot = state.snapshot.bytes;
  const step = change.versionStep ?? 1;
  if (change.targets || change.publisher || change.bins || change.snapshot) {
    snapshotVersion += step;
    const meta = { 'targets.json': metaFileFor(...targets), ...(publisher ? { [`${PUBLISHER_ROLE}.json`]: metaFileFor(...publisher) } : {}), ...binsMeta };
    snapshot = snapshotBytes(snapshotVersion, meta, now, trustedRoleKey(keysDir, 'snapshot', roles.snapshot));
    files.push([`${snapshotVersion}.snapshot.json`, snapshot]);
  }
  const timestampKey = trustedRoleKey(keysDir, 'timestamp', roles.timestamp);
  if (change.root) {
    // The new root goes out after everything it must verify is in place and right before the
    // timestamp that points at it: a client updates root first (spec 5.3), so the window
    // where it sees the new root with the previous timestamp chain is two renames long.
    const rootBytes = serialize(change.root);
    files.push([`${change.root.signed.version}.root.json`, rootBytes], ['root.json', rootBytes]);
  }
  const timestampVersion = state.timestamp.metadata.signed.version + step;
  files.push(['timestamp.json', timestampBytes(timestampVersion, snapshotVersion, snapshot, now, timestampKey)]);
  return {
    files,
    versions: {
      root: root.signed.version,
      targets: targets[0],
      snapshot: snapshotVersion,
      timestamp: timestampVersion,
      ...(publisher ? { publisher: publisher[0] } : {}),
      ...(change.bins ? { bins: Object.fromEntries(Object.entries(change.bins).map(([name, bin]) => [name, bin.version])) } : {}),
    },
  };
}

export function writeCandidate(files: MetadataFiles, candidate: Candidate): RepositoryVersions {
  files.writeAll(candidate.files);
  return candidate.versions;
}
