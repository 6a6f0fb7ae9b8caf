// Publishing and withdrawing artifact targets: the next version of the one hash bin (bins.ts)
// a target falls into. Publisher, the online delegated role (delegation.ts), only delegates to
// the bins, so it does not change when a target does.
import { TargetFile, Targets } from '@tufjs/models';
import { MeshError } from '../errors.js';
import { binsOf, readBin } from './bins.js';
import type { RepositoryChange } from './commit.js';
import { publisherRole } from './delegation.js';
import { expiresAt } from './lifetimes.js';
import { TUF_SPEC_VERSION, type MetadataFiles } from './metadata-files.js';
import { requireSignedIntent, type SignedIntent } from './signed-intent.js';
import type { RepositoryState } from './state.js';
import type { ExpectedTarget } from '@meshanics/core/tuf-verify';

/** Every fleet: what an artifact published without a fleet, or with `*`, is for. */
export const ALL_FLEETS = '*';

export interface NewTarget {
  /** The target path in metadata: name/version/file. */
  path: string;
  sha256: string;
  length: number;
  /**
   * Signed alongside the hashes, so a device can trust it as much as the bytes. Required:
   * agents refuse a target without a signed kind and spec (signed-intent.ts).
   */
  custom: { meshanics: SignedIntent; [field: string]: unknown };
  /** The fleet the artifact belongs to; undefined or '*' = every fleet. Signed as custom.meshanics.fleet (bins.ts). */
  fleet?: string;
}

/** A change to the targets plus what a device must then find (the verification gate's checks). */
export interface TargetsChange extends RepositoryChange {
  expect: Array<{ path: string; expect: ExpectedTarget }>;
}

/** The target as signed: top-level targets, publisher itself (pre-bins), or its bin. */
export function signedTarget(files: MetadataFiles, state: RepositoryState, targetPath: string): TargetFile | undefined {
  const direct = state.targets.metadata.signed.targets[targetPath] ?? state.publisher?.metadata.signed.targets[targetPath];
  if (direct) return direct;
  const bins = binsOf(state);
  return bins ? readBin(files, state, bins.getRoleForTarget(targetPath)).metadata.signed.targets[targetPath] : undefined;
}

function targetFile(target: NewTarget): TargetFile {
  const fleet = target.fleet !== undefined && target.fleet !== ALL_FLEETS ? target.fleet : undefined;
  let custom = target.custom;
  if (fleet !== undefined) {
    custom = { ...custom, meshanics: { ...custom.meshanics, fleet } };
  }
  return new TargetFile({
    path: target.path,
    length: target.length,
    hashes: { sha256: target.sha256 },
    // "custom" is the TUF-sanctioned place for application data in a target (spec 4.5).
    unrecognizedFields: { custom } as TargetFile['unrecognizedFields'],
  });
}

function nextBin(current: Targets, targets: Targets['targets'], now: Date): Targets {
  return new Targets({ version: current.version + 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('publisher', now), targets });
}

/** The next version of each bin the new targets fall into; refuses a path already signed or outside the delegation. */
export function withTargets(files: MetadataFiles, state: RepositoryState, targets: readonly NewTarget[], now: Date): TargetsChange {
  const bins = binsOf(state)!;
  const role = publisherRole(state.targets.metadata.signed)!;
  const changed: Record<string, Targets> = {};
  const expect: TargetsChange['expect'] = [];
  for (const target of targets) {
    requireSignedIntent(target.path, target.custom);
    if (!role.isDelegatedPath(target.path)) {
      // A device would not find it: the terminating delegation is the only place it searches.
      throw new MeshError(
        'MESH_ERR_ARTIFACT_INVALID_NAME',
        `target ${target.path} is outside the names top-level targets delegates to the publisher key (paths ${JSON.stringify(role.paths)}); a new targets version must widen the delegation`,
      );
    }
    const name = bins.getRoleForTarget(target.path);
    let bin = changed[name];
    if (!bin) {
      const current = readBin(files, state, name).metadata.signed;
      bin = changed[name] = nextBin(current, { ...current.targets }, now);
    }
    if (target.path in bin.targets || target.path in state.targets.metadata.signed.targets) {
      throw new MeshError('MESH_ERR_ARTIFACT_CONFLICT', `TUF target ${target.path} is already signed`);
    }
    const file = targetFile(target);
    bin.targets[target.path] = file;
    expect.push({ path: target.path, expect: { length: target.length, sha256: target.sha256, custom: file.custom } });
  }
  return { bins: changed, expect };
}

/** The next version of the bin without `targetPath`; refuses a path the bins do not sign. */
export function withoutTarget(files: MetadataFiles, state: RepositoryState, targetPath: string, now: Date): TargetsChange {
  const bins = binsOf(state)!;
  const name = bins.getRoleForTarget(targetPath);
  const current = readBin(files, state, name).metadata.signed;
  if (!(targetPath in current.targets)) {
    throw new MeshError('MESH_ERR_ARTIFACT_NOT_FOUND', `TUF target ${targetPath} is not signed by the publisher role; nothing to remove`);
  }
  const targets = { ...current.targets };
  delete targets[targetPath];
  return { bins: { [name]: nextBin(current, targets, now) }, expect: [{ path: targetPath, expect: null }] };
}
