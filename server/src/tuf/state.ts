// The live repository as a client sees it: the chain timestamp -> snapshot -> targets ->
// publisher read from disk and verified (signatures and the snapshot's hashes), so nothing is
// ever built on metadata that was tampered with. Files are the only state: every operation
// re-reads this inside the data-dir write lock.
import { MetadataKind, type Root, type Snapshot, type Targets, type Timestamp } from '@tufjs/models';
import { MeshError } from '../errors.js';
import { publisherRole } from './delegation.js';
import { PUBLISHER_ROLE } from './lifetimes.js';
import type { LoadedMetadata, MetadataFiles } from './metadata-files.js';

export interface RepositoryState {
  root: LoadedMetadata<Root>;
  timestamp: LoadedMetadata<Timestamp>;
  snapshot: LoadedMetadata<Snapshot>;
  targets: LoadedMetadata<Targets>;
  /** Absent only in a repository created before the delegation existed (migrated on first write). */
  publisher: LoadedMetadata<Targets> | undefined;
}

export interface RepositoryVersions {
  root: number;
  targets: number;
  snapshot: number;
  timestamp: number;
  publisher?: number;
  /** In the result of a change only: the hash bins it re-signed, by role name (bins.ts). */
  bins?: Record<string, number>;
}

export function readState(files: MetadataFiles): RepositoryState {
  const root = files.read<Root>(MetadataKind.Root, 'root.json');
  const timestamp = files.read<Timestamp>(MetadataKind.Timestamp, 'timestamp.json');
  const snapshotMeta = timestamp.metadata.signed.snapshotMeta;
  const snapshot = files.read<Snapshot>(MetadataKind.Snapshot, `${snapshotMeta.version}.snapshot.json`);
  const targetsMeta = snapshot.metadata.signed.meta['targets.json'];
  if (!targetsMeta) throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', 'snapshot metadata does not list targets.json');
  const targets = files.read<Targets>(MetadataKind.Targets, `${targetsMeta.version}.targets.json`);
  const delegated = publisherRole(targets.metadata.signed);
  const publisherMeta = snapshot.metadata.signed.meta[`${PUBLISHER_ROLE}.json`];
  if (delegated && !publisherMeta) throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', `snapshot metadata does not list ${PUBLISHER_ROLE}.json`);
  const publisher = delegated && publisherMeta ? files.read<Targets>(MetadataKind.Targets, `${publisherMeta.version}.${PUBLISHER_ROLE}.json`) : undefined;
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

export function versionsOf(s: RepositoryState): RepositoryVersions {
  return {
    root: s.root.metadata.signed.version,
    targets: s.targets.metadata.signed.version,
    snapshot: s.snapshot.metadata.signed.version,
    timestamp: s.timestamp.metadata.signed.version,
    ...(s.publisher ? { publisher: s.publisher.metadata.signed.version } : {}),
  };
}
