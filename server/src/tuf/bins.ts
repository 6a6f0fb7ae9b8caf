// Hashed bins under the publisher role (PEP 458; TUF TAP 15 "succinct hash bin delegations",
// supported by @tufjs/models and tuf-js 5.0.x): publisher signs no target itself but delegates
// every name it was given to BIN_COUNT bins, the bin of a target being the first BIN_BIT_LENGTH
// bits of sha256(target path). A device looking up one target downloads timestamp, snapshot,
// targets, publisher (all small and independent of the catalog) and ONE bin, so a refresh costs
// about catalog/BIN_COUNT targets instead of the whole catalog (issue 23; docs/benchmarks.md).
// A publish re-signs one bin, snapshot and timestamp.
//
// Fleets do not map onto roles: TUF delegates by path, and a target path (name/version/file)
// carries no fleet, so per-fleet roles would need a new path layout every agent in the field
// would have to learn. The bins already make a refresh proportional to what a device looks up,
// whichever fleets share the catalog; the owning fleet is signed into the target's custom data
// (custom.meshanics.fleet, absent = every fleet) and tenancy is the catalog's to enforce.
// Bins are signed with the publisher key: the same online key custody, no new key to ship.
import * as crypto from 'node:crypto';
import { MetadataKind, TargetFile, Targets, type Key } from '@tufjs/models';
import { MeshError } from '../errors.js';
import type { Delegations } from './delegation.js';
import { PUBLISHER_ROLE } from './lifetimes.js';
import { canonicalJsonBytes, TUF_SPEC_VERSION, type LoadedMetadata, type MetadataFiles } from './metadata-files.js';
import type { RepositoryState } from './state.js';

export const BIN_BIT_LENGTH = 7;
export const BIN_COUNT = 2 ** BIN_BIT_LENGTH;
export const BIN_NAME_PREFIX = `${PUBLISHER_ROLE}-bin`;

export type SuccinctRoles = NonNullable<Delegations['succinctRoles']>;

/** The succinct delegation from publisher to its bins (spec JSON parsed by the library). */
export function binsDelegation(publisherKey: Key): Delegations {
  const json = {
    _type: 'targets',
    spec_version: TUF_SPEC_VERSION,
    version: 1,
    expires: '2000-01-01T00:00:00Z',
    targets: {},
    delegations: {
      keys: { [publisherKey.keyID]: publisherKey.toJSON() },
      succinct_roles: { keyids: [publisherKey.keyID], threshold: 1, bit_length: BIN_BIT_LENGTH, name_prefix: BIN_NAME_PREFIX },
    },
  };
  return Targets.fromJSON(json).delegations!;
}

/** The bins publisher delegates to, or undefined while it still signs targets itself (pre-bins). */
export function binsOf(state: RepositoryState): SuccinctRoles | undefined {
  return state.publisher?.metadata.signed.delegations?.succinctRoles;
}

export function allBinNames(bins: SuccinctRoles): string[] {
  return [...bins.getRoles()];
}

/**
 * One bin as a device would load it: the version snapshot lists, signed by the publisher
 * delegation's key, the length snapshot lists.
 */
export function readBin(files: MetadataFiles, state: RepositoryState, name: string): LoadedMetadata<Targets> {
  const meta = state.snapshot.metadata.signed.meta[`${name}.json`];
  if (!meta) throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', `snapshot metadata does not list ${name}.json`);
  const bin = files.read<Targets>(MetadataKind.Targets, `${meta.version}.${name}.json`);
  try {
    state.publisher!.metadata.verifyDelegate(name, bin.metadata);
    meta.verify(bin.bytes);
  } catch (err) {
    throw new MeshError('MESH_ERR_TUF_METADATA_INVALID', `${meta.version}.${name}.json does not verify: ${(err as Error).message}`, { cause: err });
  }
  return bin;
}

let probes: Map<string, string> | undefined;

/**
 * A target path in the publisher's layout (three segments) that falls into `binName`, never
 * an artifact (its name is not a valid artifact name): the verification gate resolves it to make
 * a device load and verify a bin that changed without a target of its own to look up.
 */
export function probePathFor(bins: SuccinctRoles, binName: string): string {
  if (!probes) {
    probes = new Map();
    for (let i = 0; probes.size < bins.numberOfBins; i += 1) {
      const candidate = `-probe/${i}/-probe`;
      const bin = bins.getRoleForTarget(candidate);
      if (!probes.has(bin)) probes.set(bin, candidate);
    }
  }
  return probes.get(binName)!;
}

/**
 * A target as signed before the bins, with its manifest inline (custom.meshanics.manifest, up
 * to 1 MiB each, downloaded by every device at every refresh): the same target signing only
 * the manifest's sha256 and length, as publishing does now (the catalog keeps the manifest). A
 * manifest that cannot even be canonicalized (the 3,000-deep one of issue 23) is dropped from
 * the signed data, which is what makes a repository poisoned before the fix verifiable again.
 */
export function withoutInlineManifest(file: TargetFile): TargetFile {
  const custom = file.custom as { meshanics?: Record<string, unknown> } | undefined;
  if (!custom?.meshanics || !('manifest' in custom.meshanics)) return file;
  const { manifest, ...meshanics } = custom.meshanics;
  let digest: { sha256: string; length: number } | undefined;
  try {
    const bytes = canonicalJsonBytes(manifest);
    digest = { sha256: crypto.createHash('sha256').update(bytes).digest('hex'), length: bytes.length };
  } catch {
    digest = undefined;
  }
  return new TargetFile({
    path: file.path,
    length: file.length,
    hashes: file.hashes,
    unrecognizedFields: { ...file.unrecognizedFields, custom: { ...custom, meshanics: { ...meshanics, ...(digest ? { manifest: digest } : {}) } } },
  });
}
