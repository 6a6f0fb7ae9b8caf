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
      const v1 = { id: crypto.randomUUID(), sha256: crypto.createHash('sha256').update('v1').digest('hex') };
      await store.insertArtifact({
        id: v1.id,
        name: 'model',
        version: '1.0.0',
        kind: 'model',
        fileName: 'model-1',
        targetPath: 'model/1.0.0',
        sha256: v1.sha256,
        length: 1,
        spec: {},
        createdAt: now,
      });
      // Devices 0..N-3 run 1.0.0. Device 0 got it through two assignments, both HEALTHY, the
      // later with probe /run/second; device 1's latest assignment of it FAILED after a
      // HEALTHY one with /run/first. Device N-2 has nothing installed; N-1 is decommissioned.
      await store.withWriteLock(async () => {
        for (const id of ids.slice(0, N - 2)) {
          await db.run("INSERT INTO installed (device_id, name, kind, version, sha256, state, updated_at) VALUES (?, 'model', 'model', '1.0.0', ?, 'HEALTHY', ?)", [
            id,
            v1.sha256,
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

      const rollout = newRolloutRecord(labModelRollout(await insertModelArtifact(store, now), STRATEGY, 'operator:test'), now);
      await store.withWriteLock(async () => {
        await store.rollouts.insert(rollout, planWaves(rollout.id, ids, STRATEGY));
        await startWave(store, rollout, 0, 'operator:test', now);
      });
      await reportEveryStarted(store, rollout.id, 'HEALTHY', now);
      await store.decommissionDevice(ids[N - 1]!, now);

      const detail = await abortRollout({ store, logger: quietLogger }, rollout.id, { policy: 'revert' }, 'operator:test');
      const byName = new Map(detail.devices.map((d) => [d.name, d]));
      const sent = detail.devices.filter((d) => d.revert?.assignmentId);
      expect(sent).toHaveLength(N - 2);
      for (const d of sent) expect(d).toMatchObject({ state: 'PENDING', revert: { toVersion: '1.0.0', state: 'PENDING', note: 'reverting from HEALTHY to 1.0.0' } });
      expect(byName.get(`d${N - 2}`)!.revert).toMatchObject({ assignmentId: null, note: expect.stringContaining('nothing was installed') });
      expect(byName.get(`d${N - 1}`)!.revert).toMatchObject({ assignmentId: null, note: 'device is decommissioned' });

      const revertOf = async (name: string) => (await store.getAssignment(byName.get(name)!.revert!.assignmentId!))!;
      expect((await revertOf('d0')).probe).toEqual(probe('/run/second'));
      expect((await revertOf('d1')).probe).toEqual(probe('/run/first'));
      expect((await revertOf('d2')).probe).toEqual(rollout.probe);
      // Each device has exactly one active assignment of the name, the revert, and it is served.
      for (const i of [0, 1, 2, 150, N - 3]) {
        const desired = await store.listDesiredArtifacts(ids[i]!);
        expect(desired.map((x) => [x.artifact.version, x.assignment.id])).toEqual([['1.0.0', byName.get(`d${i}`)!.revert!.assignmentId]]);
      }
      const active = await db.all("SELECT device_id, COUNT(*) AS n FROM assignments WHERE artifact_name = 'model' AND active = 1 GROUP BY device_id HAVING COUNT(*) > 1");
      expect(active).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
