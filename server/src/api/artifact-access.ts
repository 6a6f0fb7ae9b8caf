// What an API key may do with the artifact catalog (issue 23; the rules are catalog/tenancy.ts):
// a key bound to a fleet sees that fleet's artifacts and every fleet's, publishes only into its
// own fleet, and meets another fleet's artifact exactly as if it did not exist.
import type { FastifyRequest } from 'fastify';
import type { MeshanicsContext } from '../config/data-dir.js';
import { MeshError } from '../errors.js';
import { checkArtifactFleet, EVERY_FLEET, fleetMayUse } from '../catalog/tenancy.js';
import type { ArtifactRecord } from '../store/index.js';
import { callerOf } from './auth.js';

/** The published artifact NAME@VERSION if the caller's key may see it; otherwise not found. */
export async function visibleArtifact(ctx: MeshanicsContext, request: FastifyRequest, name: string, version: string): Promise<ArtifactRecord> {
  const artifact = await ctx.store.getArtifact(name, version);
  if (!artifact || artifact.withdrawnAt || !fleetMayUse(callerOf(request).fleet, artifact.fleet)) {
    throw new MeshError('MESH_ERR_ARTIFACT_NOT_FOUND', `no artifact ${name}@${version}`);
  }
  return artifact;
}

/**
 * The fleet a publish is for: a bound key's own fleet (asking for another is refused); for a
 * `*` key, the one it names, or every fleet when it names none.
 */
export function publishFleet(request: FastifyRequest, asked: string | undefined): string {
  const keyFleet = callerOf(request).fleet;
  if (keyFleet === EVERY_FLEET) return checkArtifactFleet(asked ?? EVERY_FLEET);
  if (asked !== undefined && asked !== keyFleet) {
    throw new MeshError(
      'MESH_ERR_API_FORBIDDEN',
      `this key is bound to fleet "${keyFleet}": it publishes only that fleet's artifacts (publishing for ${asked === EVERY_FLEET ? 'every fleet' : `fleet "${asked}"`} needs a * key)`,
    );
  }
  return keyFleet;
}
