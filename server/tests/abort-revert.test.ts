// Abort with policy revert over more devices than one chunk of the store's batched writes
// (rollouts/abort-revert.ts, store.rollouts.recordReverts), on both engines: every device is
// sent back to its previous version, with the probe that last proved that version healthy on
// it (else the rollout's), its rollout assignment superseded and the revert served; the
// devices that cannot go back are recorded with the reason, in the same abort.
import * as crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { startWave } from '../src/rollouts/engine.js';
import { abortRollout, newRolloutRecord } from '../src/rollouts/service.js';
import type { Strategy } from '../src/rollouts/strategy.js';
import { planWaves } from '../src/rollouts/wave-plan.js';
import { openStore, type ProbeRecord, type SqlStore } from '../src/store/index.js';
import { testEngines } from './engines.js';
import { insertModelArtifact, labModelRollout, quietLogger, registerLabDevices, reportEveryStarted } from './helpers/rollout-seed.mjs';

const { engines } = await testEngines();
const N = 260;
const STRATEGY: Strategy = { waves: [{ percent: 100, approval: 'auto' }], max_failure_rate: 0.9 };
const probe = (path: string): ProbeRecord => ({ type: 'file', spec: { path }, timeoutSeconds: 5, attempts: 1, initialDelaySeconds: 0 });

describe.each(engines)('abort with revert of hundreds of devices on $name', (engine) => {
  it('sends each device back with the probe that last proved its version healthy, supersedes its rollout assignment and records who stayed and why', async () => {
    const store = await openStore(await engine.fresh());
    try {
      const { db } = store as SqlStore;
      const now = new Date().toISOString();
      const ids = await registerLabDevices(store, N, 'test.local', now);
      const catalogued = async (version: string) => {
        const artifact = { id: crypto.randomUUID(), version, sha256: crypto.createHash('sha256').update(version).digest('hex') };
        await store.insertArtifact({
          ...artifact,
          name: 'model',
          kind: 'model',
          fileName: `model-${version}`,
          targetPath: `model/${version}`,
          length: 1,
          spec: {},
          createdAt: now,
        });
        return artifact;
      };
      const v1 = await catalogued('1.0.0');
      const v09 = await catalogued('0.9.0');
      // Devices 0..N-3 run 1.0.0, but 200..229 run 0.9.0 (a second version to go back to, across
      // the chunk boundary). Device 0 got 1.0.0 through two assignments, both HEALTHY, the later
      // with probe /run/second; device 1's latest assignment of it FAILED after a HEALTHY one
      // with /run/first. Device 5's two HEALTHY assignments carry the same time: the one inserted
      // last wins (the tie-break is insertion order). Device N-2 has nothing installed; N-1 is
      // decommissioned.
      const installedOf = (i: number) => (i >= 200 && i < 230 ? v09 : v1);
      await store.withWriteLock(async () => {
        for (const [i, id] of ids.slice(0, N - 2).entries()) {
          const { version, sha256 } = installedOf(i);
          await db.run("INSERT INTO installed (device_id, name, kind, version, sha256, state, updated_at) VALUES (?, 'model', 'model', ?, ?, 'HEALTHY', ?)", [
            id,
            version,
            sha256,
            now,
          ]);
        }
      });
      const history = async (deviceId: string, path: string, state: 'HEALTHY' | 'FAILED', at: string) =>
        store.insertAssignment({
          id: crypto.randomUUID(),
          deviceId,
          artifactId: v1.id,
          artifactName: 'model',
          rolloutId: null,
          probe: probe(path),
          state,
          reason: '',
          active: true,
          createdAt: at,
          updatedAt: at,
        });
      await history(ids[0]!, '/run/first', 'HEALTHY', '2026-01-01T00:00:00.000Z');
      await history(ids[0]!, '/run/second', 'HEALTHY', '2026-01-02T00:00:00.000Z');
      await history(ids[1]!, '/run/first', 'HEALTHY', '2026-01-01T00:00:00.000Z');
      await history(ids[1]!, '/run/failed', 'FAILED', '2026-01-02T00:00:00.000Z');
      await history(ids[5]!, '/run/tie-written-first', 'HEALTHY', '2026-01-03T00:00:00.000Z');
      await history(ids[5]!, '/run/tie-written-last', 'HEALTHY', '2026-01-03T00:00:00.000Z');

      const rollout = newRolloutRecord(labModelRollout(await insertModelArtifact(store, now), STRATEGY, 'operator:test'), now);
      await store.withWriteLock(async () => {
        await store.rollouts.insert(rollout, planWaves(rollout.id, ids, STRATEGY));
        await startWave(store, rollout, 0, 'operator:test', now);
      });
      await reportEveryStarted(store, rollout.id, 'HEALTHY', now);
      await store.decommissionDevice(ids[N - 1]!, now);
      // Device 3 is still downloading; device 4's rollout assignment was superseded by an operator's.
      const rolloutAssignment = async (i: number) => (await store.rollouts.listDevices(rollout.id)).find((d) => d.deviceId === ids[i])!.assignmentId!;
      await db.run("UPDATE assignments SET state = 'DOWNLOADING' WHERE id = ?", [await rolloutAssignment(3)]);
      await db.run('UPDATE assignments SET active = 0 WHERE id = ?', [await rolloutAssignment(4)]);
      // Superseding stamped device 5's two with different times (the second's creation, then the
      // rollout's start): make them the tie they are meant to be.
      await db.run("UPDATE assignments SET updated_at = '2026-01-03T00:00:00.000Z' WHERE device_id = ? AND rollout_id IS NULL", [ids[5]!]);

      const detail = await abortRollout({ store, logger: quietLogger }, rollout.id, { policy: 'revert' }, 'operator:test');
      const byName = new Map(detail.devices.map((d) => [d.name, d]));
      const sent = detail.devices.filter((d) => d.revert?.assignmentId);
      expect(sent).toHaveLength(N - 3);
      for (const d of sent) {
        const i = Number(d.name.slice(1));
        const version = installedOf(i).version;
        expect(d).toMatchObject({
          state: 'PENDING',
          revert: { toVersion: version, state: 'PENDING', note: `reverting from ${i === 3 ? 'DOWNLOADING' : 'HEALTHY'} to ${version}` },
        });
      }
      expect(byName.get('d4')!.revert).toMatchObject({ assignmentId: null, note: 'superseded by another assignment; left as is' });
      expect(byName.get(`d${N - 2}`)!.revert).toMatchObject({ assignmentId: null, note: expect.stringContaining('nothing was installed') });
      expect(byName.get(`d${N - 1}`)!.revert).toMatchObject({ assignmentId: null, note: 'device is decommissioned' });

      const revertOf = async (name: string) => (await store.getAssignment(byName.get(name)!.revert!.assignmentId!))!;
      expect((await revertOf('d0')).probe).toEqual(probe('/run/second'));
      expect((await revertOf('d1')).probe).toEqual(probe('/run/first'));
      expect((await revertOf('d2')).probe).toEqual(rollout.probe);
      expect((await revertOf('d5')).probe).toEqual(probe('/run/tie-written-last'));
      // Each device has exactly one active assignment of the name, the revert, and it is served.
      for (const i of [0, 1, 2, 3, 150, 199, 200, 229, 230, N - 3]) {
        const desired = await store.listDesiredArtifacts(ids[i]!);
        expect(desired.map((x) => [x.artifact.version, x.assignment.id])).toEqual([[installedOf(i).version, byName.get(`d${i}`)!.revert!.assignmentId]]);
      }
      const active = await db.all("SELECT device_id, COUNT(*) AS n FROM assignments WHERE artifact_name = 'model' AND active = 1 GROUP BY device_id HAVING COUNT(*) > 1");
      expect(active).toEqual([]);
      // The audit event's lists are the rollout's, in plan order (first 100 of each, and the count).
      const [aborted] = await store.listAudit({ subject: `rollout:${rollout.id}`, action: 'rollout.aborted' });
      const reverted = sent.map((d) => ({ device: d.name, toVersion: d.revert!.toVersion, assignmentId: d.revert!.assignmentId }));
      const notReverted = detail.devices.filter((d) => d.revert && !d.revert.assignmentId).map((d) => ({ device: d.name, reason: d.revert!.note }));
      expect(aborted!.details).toMatchObject({ reverted: reverted.slice(0, 100), revertedTotal: N - 3, notReverted });
      expect(notReverted).toHaveLength(3);
    } finally {
      await store.close();
    }
  });
});
