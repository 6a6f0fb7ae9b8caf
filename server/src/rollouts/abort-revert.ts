// Abort with policy revert: every device that updated or is updating goes back to what it had
// installed under the artifact name when its wave started, or is left as is with the reason
// recorded. Decided in memory over the rollout's device list and written a chunk at a time
// (store.rollouts.recordReverts): the caller holds the write lock and every device's row, so
// each statement saved is time the rollout's status reports and heartbeats do not wait.
import * as crypto from 'node:crypto';
import type { ArtifactRecord, ProbeRecord, RevertEntry, RolloutRecord, Store } from '../store/index.js';

const IN_FLIGHT = new Set(['DOWNLOADING', 'VERIFYING', 'APPLYING']);

export interface RevertOutcome {
  reverted: Array<{ device: string; toVersion: string; assignmentId: string }>;
  notReverted: Array<{ device: string; reason: string }>;
}

/** Sends the rollout's updated devices back (call under the write lock, the devices' rows locked). */
export async function revertDevices(store: Store, rollout: RolloutRecord, now: string): Promise<RevertOutcome> {
  const outcome: RevertOutcome = { reverted: [], notReverted: [] };
  const entries: RevertEntry[] = [];
  const previousById = new Map<string, ArtifactRecord | undefined>();
  const sendBack: Array<{ entry: RevertEntry; device: string; previous: ArtifactRecord }> = [];
  for (const d of await store.rollouts.listDevices(rollout.id)) {
    const a = d.assignment;
    if (!a || !(a.state === 'HEALTHY' || IN_FLIGHT.has(a.state))) continue;
    const note = (reason: string) => {
      outcome.notReverted.push({ device: d.deviceName, reason });
      entries.push({ deviceId: d.deviceId, revert: null, note: reason });
    };
    if (d.decommissioned) {
      note('device is decommissioned');
      continue;
    }
    if (!a.active) {
      note('superseded by another assignment; left as is');
      continue;
    }
    if (d.previousVersion === null) {
      note(`nothing was installed under "${rollout.artifactName}" before this rollout: nothing to revert to, left as is`);
      continue;
    }
    const id = d.previousArtifactId;
    if (id !== null && !previousById.has(id)) previousById.set(id, await store.getArtifactById(id));
    const previous = id === null ? undefined : previousById.get(id);
    if (!previous) {
      note(`previous version ${d.previousVersion} is not in the catalog with the bytes the device had: left as is`);
      continue;
    }
    const entry: RevertEntry = { deviceId: d.deviceId, revert: null, note: `reverting from ${a.state} to ${previous.version}` };
    entries.push(entry);
    sendBack.push({ entry, device: d.deviceName, previous });
  }
  // The probe that last proved the version healthy on the device, else the rollout's.
  const probes = new Map<string, Map<string, ProbeRecord>>();
  for (const previous of new Set(sendBack.map((s) => s.previous))) {
    const devices = sendBack.filter((s) => s.previous === previous).map((s) => s.entry.deviceId);
    probes.set(previous.id, await store.rollouts.lastHealthyProbes(previous.id, devices));
  }
  for (const { entry, device, previous } of sendBack) {
    const assignmentId = crypto.randomUUID();
    entry.revert = { assignmentId, artifactId: previous.id, artifactName: previous.name, probe: probes.get(previous.id)?.get(entry.deviceId) ?? rollout.probe };
    outcome.reverted.push({ device, toVersion: previous.version, assignmentId });
  }
  await store.rollouts.recordReverts(rollout.id, entries, now);
  return outcome;
}
