// The rows under a rollout built below the rollout service, shared by server/tests/pg-row-locks.test.ts
// and bench/pg-report-writes.mjs: JavaScript so that the bench can hand it a store of any server/dist
// (its --baseline-dist) and the test one of server/src.
import * as crypto from 'node:crypto';

/** Registers devices d0..d(n-1) of fleet lab under spiffe://TRUSTDOMAIN; resolves to their ids in that order. */
export async function registerLabDevices(store, n, trustDomain, now) {
  const ids = [];
  for (let i = 0; i < n; i++) {
    const d = await store.registerDevice({
      spiffeId: `spiffe://${trustDomain}/lab/d${i}`,
      fleet: 'lab',
      name: `d${i}`,
      profile: { hardware: null, agentVersion: '1.0.0', tags: {}, capabilities: [] },
      now,
    });
    ids.push(d.id);
  }
  return ids;
}

/** Inserts the artifact model@2.0.0 (kind model) a seeded rollout installs; resolves to its id. */
export async function insertModelArtifact(store, now) {
  const id = crypto.randomUUID();
  await store.insertArtifact({
    id,
    name: 'model',
    version: '2.0.0',
    kind: 'model',
    fileName: 'model-2.0.0',
    targetPath: 'model/2.0.0',
    sha256: crypto.createHash('sha256').update('m').digest('hex'),
    length: 1,
    spec: {},
    createdAt: now,
  });
  return id;
}

/** What newRolloutRecord (server/src/rollouts/service.ts) takes for a rollout of that artifact to group all of fleet lab, probed by a file. */
export function labModelRollout(artifactId, strategy, createdBy) {
  return {
    fleet: 'lab',
    artifactId,
    artifactName: 'model',
    group: 'all',
    probe: { type: 'file', spec: { path: '/run/ready' }, timeoutSeconds: 5, attempts: 1, initialDelaySeconds: 0 },
    strategy,
    createdBy,
  };
}
