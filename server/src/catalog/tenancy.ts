// Fleets as tenants of the artifact catalog (issue 23). An artifact belongs to one fleet, or to
// every fleet (`*`, published only with a `*` key). Names are unique across fleets, each owned
// by one fleet (or `*`) from its first version on: a target path names the artifact
// (artifacts/<name>/<version>/<name>), so two fleets sharing a name would share the signed
// path a device looks up, and a fleet key could otherwise publish into a name another fleet's
// devices install. A taken name answers as taken (never whose it is or what it holds).
import { isDnsLabel } from '@meshanics/core/contract';
import { MeshError } from '../errors.js';
import type { ArtifactRecord, Store } from '../store/index.js';

/** The owner of an artifact every fleet may use, and the scope of a key of every fleet. */
export const EVERY_FLEET = '*';

/** The fleet an artifact is published for: a fleet name (a DNS label) or `*`. */
export function checkArtifactFleet(fleet: string): string {
  if (fleet !== EVERY_FLEET && !isDnsLabel(fleet)) {
    throw new MeshError('MESH_ERR_ARTIFACT_INVALID_FLEET', `invalid artifact fleet "${fleet}": must be a fleet name (a DNS label) or * (every fleet)`);
  }
  return fleet;
}

/** Whether a device of `fleet`, or a key bound to it (`*`: every fleet), may see and use an artifact of `owner`. */
export function fleetMayUse(fleet: string, owner: string): boolean {
  return fleet === EVERY_FLEET || owner === EVERY_FLEET || owner === fleet;
}

/** Whether a key bound to `fleet` may change (publish into, withdraw) what `owner` owns: `*` artifacts need a `*` key. */
export function fleetMayManage(fleet: string, owner: string): boolean {
  return fleet === EVERY_FLEET || owner === fleet;
}

function describeOwner(owner: string): string {
  return owner === EVERY_FLEET ? 'every fleet (only a * key publishes its versions)' : 'another fleet';
}

/**
 * Refuses a publish of NAME@VERSION for `fleet` when the name belongs to another owner, or the
 * version exists (withdrawn included: a version is never reused with other bytes).
 */
export async function assertPublishable(store: Store, name: string, version: string, fleet: string): Promise<void> {
  const owner = await store.artifactNameOwner(name);
  if (owner !== undefined && owner !== fleet) {
    throw new MeshError('MESH_ERR_ARTIFACT_NAME_TAKEN', `artifact name "${name}" belongs to ${describeOwner(owner)}; names are unique across fleets: choose another name`);
  }
  const existing = await store.getArtifact(name, version);
  if (existing) {
    throw new MeshError(
      'MESH_ERR_ARTIFACT_CONFLICT',
      existing.withdrawnAt
        ? `artifact ${name}@${version} was withdrawn at ${existing.withdrawnAt}; a version is never reused: publish a new version`
        : `artifact ${name}@${version} is already published; publish a new version`,
    );
  }
}

/**
 * The published artifact NAME@VERSION for devices of `fleet` (an assignment, a rollout): a
 * missing or withdrawn version is not found; one of another fleet is refused naming both.
 */
export function assertAssignable(artifact: ArtifactRecord | undefined, ref: { name: string; version: string }, fleet: string): ArtifactRecord {
  if (!artifact || artifact.withdrawnAt) {
    throw new MeshError('MESH_ERR_ARTIFACT_NOT_FOUND', `no artifact ${ref.name}@${ref.version}` + (artifact?.withdrawnAt ? ` (withdrawn at ${artifact.withdrawnAt})` : ''));
  }
  if (!fleetMayUse(fleet, artifact.fleet)) {
    throw new MeshError(
      'MESH_ERR_ARTIFACT_FLEET_MISMATCH',
      `artifact ${ref.name}@${ref.version} belongs to fleet "${artifact.fleet}": devices of fleet "${fleet}" may not use it`,
      { details: { artifactFleet: artifact.fleet, deviceFleet: fleet } },
    );
  }
  return artifact;
}
