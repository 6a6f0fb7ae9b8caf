// Withdrawing an artifact version (issue 23): taken out of the signed targets (new metadata
// versions), unless a rollout or a device still holds it, and audited. The catalog row stays,
// marked withdrawn, so history that names the version keeps its meaning, and the version is
// never published again with other bytes (catalog/tenancy.ts).
import * as fs from 'node:fs';
import type { MeshanicsContext } from '../config/data-dir.js';
import { MeshError, nameSome } from '../errors.js';
import { ACTIVE_ROLLOUT_STATUSES } from '../rollouts/service.js';
import type { ArtifactHolders, ArtifactRecord } from '../store/index.js';
import { publishedFiles } from './publish.js';
import { EVERY_FLEET, fleetMayManage, fleetMayUse } from './tenancy.js';

export interface WithdrawArtifactInput {
  name: string;
  version: string;
  /** Who withdraws, for the audit trail. */
  actor?: string;
  /**
   * The fleet of the caller's key (`*`, the default: every fleet). An artifact of another fleet
   * answers as missing; one of every fleet needs a `*` key.
   */
  callerFleet?: string;
}

export interface WithdrawnArtifact {
  name: string;
  version: string;
  fleet: string;
  targetPath: string;
  withdrawnAt: string;
}

function heldError(a: ArtifactRecord, holders: ArtifactHolders): MeshError {
  const parts = [...holders.rollouts.map((r) => `rollout ${r.id} (${r.status})`), ...holders.devices.map((d) => `device ${d.fleet}/${d.name} (${d.holds})`)];
  const named = nameSome(parts);
  return new MeshError(
    'MESH_ERR_ARTIFACT_HELD',
    `artifact ${a.name}@${a.version} is still held by ${named}: finish or abort the rollouts and move the devices to another version first`,
    { details: { rollouts: holders.rollouts, devices: holders.devices } },
  );
}

export async function withdrawArtifact(ctx: MeshanicsContext, input: WithdrawArtifactInput): Promise<WithdrawnArtifact> {
  const { store, layout } = ctx;
  const callerFleet = input.callerFleet ?? EVERY_FLEET;
  const withdrawn = await store.withWriteLock(async () => {
    const artifact = await store.getArtifact(input.name, input.version);
    if (!artifact || artifact.withdrawnAt || !fleetMayUse(callerFleet, artifact.fleet)) {
      throw new MeshError('MESH_ERR_ARTIFACT_NOT_FOUND', `no artifact ${input.name}@${input.version}`);
    }
    if (!fleetMayManage(callerFleet, artifact.fleet)) {
      throw new MeshError(
        'MESH_ERR_API_FORBIDDEN',
        `artifact ${input.name}@${input.version} belongs to every fleet: only a * key withdraws it (this key is bound to fleet "${callerFleet}")`,
      );
    }
    // Under the write lock: no assignment or rollout can take the version between this check
    // and the withdrawal (both refuse a withdrawn version under the same lock).
    const holders = await store.artifactHolders(artifact, ACTIVE_ROLLOUT_STATUSES);
    if (holders.rollouts.length > 0 || holders.devices.length > 0) throw heldError(artifact, holders);
    const now = new Date().toISOString();
    await store.markArtifactWithdrawn(artifact.id, now);
    await store.appendAudit({
      at: now,
      actor: input.actor ?? 'operator',
      action: 'artifact.withdrawn',
      subject: `artifact:${artifact.name}@${artifact.version}`,
      details: { fleet: artifact.fleet, targetPath: artifact.targetPath, sha256: artifact.sha256 },
    });
    // The signing last: if it fails, the transaction rolls back and nothing changed.
    const versions = await ctx.tuf.removeTarget(artifact.targetPath);
    return { artifact, versions, now };
  });
  const { artifact, versions, now } = withdrawn;
  // No signed metadata names the bytes (or the manifest served beside them) any more: the
  // artifact server stops serving them.
  await Promise.all(publishedFiles(layout.tufTargetsDir, artifact).map((file) => fs.promises.rm(file, { force: true })));
  ctx.logger.info({ artifact: artifact.name, version: artifact.version, fleet: artifact.fleet, tuf: versions }, 'artifact withdrawn');
  return { name: artifact.name, version: artifact.version, fleet: artifact.fleet, targetPath: artifact.targetPath, withdrawnAt: now };
}
