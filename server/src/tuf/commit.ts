// One repository change: the new versions of the roles that change are signed in memory
// first (a candidate), and only then written bottom-up with timestamp.json last. Until
// timestamp.json names the new snapshot, clients see the old repository (spec 5.4), so the
// rename of timestamp.json is the commit point; a crash before it leaves unreferenced files.
import { Metadata, Snapshot, Timestamp, type Root, type Targets } from '@tufjs/models';
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
  /** Re-sign snapshot even if no targets role changed (expiry, or a new root). */
  snapshot?: boolean;
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

export function snapshotBytes(version: number, files: Record<string, [version: number, bytes: Buffer]>, now: Date, key: RoleKey): Buffer {
  const meta = Object.fromEntries(Object.entries(files).map(([role, [v, bytes]]) => [`${role}.json`, metaFileFor(v, bytes)]));
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
  let snapshotVersion = state.snapshot.metadata.signed.version;
  let snapshot = state.snapshot.bytes;
  if (change.targets || change.publisher || change.snapshot) {
    snapshotVersion += 1;
    const listed = { targets, ...(publisher ? { [PUBLISHER_ROLE]: publisher } : {}) };
    snapshot = snapshotBytes(snapshotVersion, listed, now, trustedRoleKey(keysDir, 'snapshot', roles.snapshot));
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
  const timestampVersion = state.timestamp.metadata.signed.version + 1;
  files.push(['timestamp.json', timestampBytes(timestampVersion, snapshotVersion, snapshot, now, timestampKey)]);
  return {
    files,
    versions: {
      root: root.signed.version,
      targets: targets[0],
      snapshot: snapshotVersion,
      timestamp: timestampVersion,
      ...(publisher ? { publisher: publisher[0] } : {}),
    },
  };
}

export function writeCandidate(files: MetadataFiles, candidate: Candidate): RepositoryVersions {
  for (const [name, bytes] of candidate.files) files.write(name, bytes);
  return candidate.versions;
}
