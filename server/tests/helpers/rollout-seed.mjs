// The rows under a rollout built below the rollout service, shared by the server tests that seed
// rollouts of hundreds or thousands of devices and the benches that do (bench/pg-report-writes.mjs,
// bench/abort-revert.mjs, bench/rollout-detail.mjs): JavaScript so that a bench can hand it a store
// of any server/dist (its --baseline-dist) and a test one of server/src.
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

/** A logger that says nothing, for the rollout engine and service called below the server. */
export const quietLogger = {
  info: () => undefined,
  warn: () => undefined,
  debug: () => undefined,
  trace: () => undefined,
  error: () => undefined,
  fatal: () => undefined,
  child: () => quietLogger,
};

/** Every started device of the rollout sends its first status report, `state`, on its rollout assignment. */
export async function reportEveryStarted(store, rolloutId, state, now) {
  const started = (await store.rollouts.listDevices(rolloutId)).filter((d) => d.assignmentId !== null);
  await store.recordStatusReports(
    started.map((d) => ({ deviceId: d.deviceId, assignmentId: d.assignmentId, sequence: 1, state, reason: '', bytesDone: 0, bytesTotal: 0, deviceTime: now, receivedAt: now })),
  );
}
