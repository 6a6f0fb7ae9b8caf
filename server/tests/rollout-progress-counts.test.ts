// The rollout engine decides on counts the database computes (one aggregate per step, not
// every device row on every report); they must equal what the engine derives from the full
// device list, for every combination of state, supersession and decommissioning.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/artifacts.js';
import { initDataDir } from '../src/data-dir.js';
import { createGroup } from '../src/groups.js';
import { progressOfDevices } from '../src/rollouts/engine.js';
import { createRollout } from '../src/rollouts/service.js';
import type { SqlStore } from '../src/store/index.js';
import { testEngines } from './engines.js';
import { tempDir } from './helpers.js';

const { engines } = await testEngines();
const STATES = ['PENDING', 'DOWNLOADING', 'VERIFYING', 'APPLYING', 'HEALTHY', 'FAILED', 'ROLLED_BACK'] as const;

describe.each(engines)('rollout progress counts on $name', (engine) => {
  it('equal the engine’s own count over the device list, whatever the devices’ states', async () => {
    const dataDir = tempDir();
    const ctx = await initDataDir({ dataDir, ...(engine.name === 'postgres' ? { databaseUrl: await engine.fresh() } : {}) });
    try {
      const names = Array.from({ length: 14 }, (_, i) => `pc-${i}`);
      for (const name of names) {
        await ctx.store.registerDevice({
          spiffeId: `spiffe://${ctx.trustDomain}/fleet/lab/device/${name}`,
          fleet: 'lab',
          name,
          profile: { hardware: null, agentVersion: '1.0.0', tags: {}, capabilities: [{ kind: 'ARTIFACT', name: 'model', version: '0.1.0' }] },
          now: new Date().toISOString(),
        });
      }
      const file = path.join(tempDir(), 'm.bin');
      fs.writeFileSync(file, crypto.randomBytes(256));
      await publishArtifact(ctx, { file, name: 'pc-model', version: '1.0.0', kind: 'model', spec: { fileName: 'm.bin' } });
      await createGroup(ctx, { fleet: 'lab', name: 'pc', devices: names, actor: 'test' });
      const rollout = await createRollout(ctx, {
        fleet: 'lab',
        artifact: { name: 'pc-model', version: '1.0.0' },
        group: 'pc',
        probe: { type: 'file', spec: { path: '/run/ready' }, timeoutSeconds: 5, attempts: 1 },
        strategy: { waves: [{ percent: 50 }, { percent: 100, approval: 'manual' }] },
        actor: 'test',
      });
      const compare = async () => {
        const devices = await ctx.store.rollouts.listDevices(rollout.id);
        for (const currentWave of [0, 1]) {
          expect(await ctx.store.rollouts.progress(rollout.id, currentWave)).toEqual(progressOfDevices({ currentWave }, devices));
        }
      };
      await compare();

      // Every state, active and superseded, on the started devices; one decommissioned.
      const started = (await ctx.store.rollouts.listDevices(rollout.id)).filter((d) => d.assignmentId !== null);
      expect(started.length).toBe(7);
      for (const [i, d] of started.entries()) {
        await (ctx.store as SqlStore).db.run('UPDATE assignments SET state = ?, active = ? WHERE id = ?', [STATES[i % STATES.length], i % 3 === 2 ? 0 : 1, d.assignmentId]);
        await compare();
      }
      const notStarted = (await ctx.store.rollouts.listDevices(rollout.id)).find((d) => d.assignmentId === null)!;
      await ctx.store.decommissionDevice(started[0]!.deviceId, new Date().toISOString());
      await ctx.store.decommissionDevice(notStarted.deviceId, new Date().toISOString());
      await compare();
      const counts = await ctx.store.rollouts.progress(rollout.id, 1);
      // 14 devices; outcomes among the 7 started: one each of healthy, failed, rolled back.
      expect(counts).toMatchObject({ targeted: 14, healthy: 1, failed: 1, rolledBack: 1 });
    } finally {
      await ctx.close();
    }
  });
});
