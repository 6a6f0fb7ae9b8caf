// Publishing and withdrawing artifact targets: the next version of the publisher role (the
// online delegated targets role, delegation.ts) with one target added or removed.
import { TargetFile, Targets } from '@tufjs/models';
import { MeshError } from '../errors.js';
import { publisherRole } from './delegation.js';
import { expiresAt } from './lifetimes.js';
import { TUF_SPEC_VERSION } from './metadata-files.js';
import type { RepositoryState } from './state.js';

/** Every fleet: what an artifact published without a fleet, or with `*`, is for. */
export const ALL_FLEETS = '*';

export interface NewTarget {
  /** The target path in metadata: name/version/file. */
  path: string;
  sha256: string;
  length: number;
  /** Signed alongside the hashes, so a device can trust it as much as the bytes. */
  custom?: Record<string, unknown>;
  /** The fleet the artifact belongs to; undefined or '*' = every fleet. */
  fleet?: string;
}

export function isSigned(state: RepositoryState, targetPath: string): boolean {
  return targetPath in state.targets.metadata.signed.targets || (state.publisher !== undefined && targetPath in state.publisher.metadata.signed.targets);
}

/** Publisher N+1 with `target` added; refuses a path already signed or outside the delegation. */
export function publisherWith(state: RepositoryState, target: NewTarget, now: Date): Targets {
  if (isSigned(state, target.path)) throw new MeshError('MESH_ERR_ARTIFACT_CONFLICT', `TUF target ${target.path} is already signed`);
  const role = publisherRole(state.targets.metadata.signed)!;
  if (!role.isDelegatedPath(target.path)) {
    // A device would not find it: the terminating delegation is the only place it searches.
    throw new MeshError(
      'MESH_ERR_ARTIFACT_INVALID_NAME',
      `target ${target.path} is outside the names top-level targets delegates to the publisher key (paths ${JSON.stringify(role.paths)}); a new targets version must widen the delegation`,
    );
  }
  const current = state.publisher!.metadata.signed;
  return new Targets({
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
}

/** Publisher N+1 without `targetPath`; refuses a path the publisher role does not sign. */
export function publisherWithout(state: RepositoryState, targetPath: string, now: Date): Targets {
  const current = state.publisher!.metadata.signed;
  if (!(targetPath in current.targets)) {
    throw new MeshError('MESH_ERR_ARTIFACT_NOT_FOUND', `TUF target ${targetPath} is not signed by the publisher role; nothing to remove`);
  }
  const targets = { ...current.targets };
  delete targets[targetPath];
  return new Targets({ version: current.version + 1, specVersion: TUF_SPEC_VERSION, expires: expiresAt('publisher', now), targets });
}
