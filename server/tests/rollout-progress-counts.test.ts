// The rollout engine decides on counts the database computes (one aggregate per step, not
// every device row on every report); they must equal what the engine derives from the full
// device list, for every combination of state, supersession and decommissioning.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/catalog/publish.js';
import { initDataDir } from '../src/config/data-dir.js';
import { createGroup } from '../src/fleet/groups.js';
import { TERMINAL_STATES } from '@meshanics/core/contract';
import { isLive, progressOfDevices } from '../src/rollouts/engine.js';
import { failureCount } from '../src/rollouts/progress.js';
import { createRollout } from '../src/rollouts/service.js';
import { openStore, type SqlStore } from '../src/store/index.js';
import { sqliteEngine, testEngines } from './engines.js';
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
        // The glance a step reads before locking: the same targeted and failures, and an
        // unfinished started wave exactly when the count has one (every live device of the
        // started wave has its assignment here).
        const exact = progressOfDevices({ currentWave: rollout.currentWave }, devices);
        const glance = await ctx.store.rollouts.glance!(rollout.id);
        expect({ targeted: glance!.targeted, failures: glance!.failures, someStartedUnfinished: glance!.someStartedUnfinished }).toEqual({
          targeted: exact.targeted,
          failures: failureCount(exact),
          someStartedUnfinished: exact.startedUnfinished > 0,
        });
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

      // The live unfinished ones finish: what is left unfinished is a decommissioned device
      // (PENDING) and a superseded one (VERIFYING), neither of which holds the wave any more.
      // The glance must see the wave done, or the rollout would never advance.
      for (const i of [1, 3]) await (ctx.store as SqlStore).db.run("UPDATE assignments SET state = 'HEALTHY' WHERE id = ?", [started[i]!.assignmentId]);
      await compare();
      expect((await ctx.store.rollouts.progress(rollout.id, 0)).startedUnfinished).toBe(0);
    } finally {
      await ctx.close();
    }
  });
});

describe('rollout progress counts on sqlite, thousands of devices', () => {
  it('are counted in slices that let the event loop run, and equal the one-statement count; so are the summary’s counts', async () => {
    const store = await openStore(await sqliteEngine.fresh());
    try {
      const { db } = store as SqlStore;
      const now = new Date().toISOString();
      await store.withWriteLock(async () => {
        await db.run(
          `INSERT INTO artifacts (id, name, version, kind, file_name, target_path, sha256, length, spec, created_at) VALUES ('a1', 'm', '1', 'model', 'm.bin', 'm/1/m.bin', ?, 1, '{}', ?)`,
          ['a'.repeat(64), now],
        );
        await db.run(
          `INSERT INTO rollouts (id, fleet, artifact_id, artifact_name, group_name, probe, strategy, status, current_wave, created_at, updated_at, created_by) VALUES ('r1', 'lab', 'a1', 'm', 'g', '{}', '{}', 'running', 1, ?, ?, 'test')`,
          [now, now],
        );
        for (let i = 0; i < 2345; i++) {
          const device = crypto.randomUUID();
          const assignment = crypto.randomUUID();
          await db.run(`INSERT INTO devices (id, spiffe_id, fleet, name, created_at, decommissioned_at) VALUES (?, ?, 'lab', ?, ?, ?)`, [
            device,
            `spiffe://t/lab/d${i}`,
            `d${i}`,
            now,
            i % 97 === 0 ? now : null,
          ]);
          const wave = i % 3;
          if (wave <= 1) {
            await db.run(
              `INSERT INTO assignments (id, device_id, artifact_id, artifact_name, rollout_id, probe, state, active, created_at, updated_at) VALUES (?, ?, 'a1', 'm', 'r1', '{}', ?, ?, ?, ?)`,
              [assignment, device, STATES[i % STATES.length], i % 11 === 0 ? 0 : 1, now, now],
            );
          }
          await db.run(`INSERT INTO rollout_devices (rollout_id, device_id, artifact_name, active, wave, position, assignment_id) VALUES ('r1', ?, 'm', 1, ?, ?, ?)`, [
            device,
            wave,
            i,
            wave <= 1 ? assignment : null,
          ]);
        }
      });
      const oneStatement = await store.rollouts.progress('r1', 1);
      expect(oneStatement).toEqual(progressOfDevices({ currentWave: 1 }, await store.rollouts.listDevices('r1')));
      const sliced = await store.withWriteLock(async () => {
        let yielded = false;
        setImmediate(() => (yielded = true));
        const counts = await store.rollouts.progress('r1', 1);
        return { counts, yielded };
      });
      expect(sliced.counts).toEqual(oneStatement);
      expect(sliced.yielded).toBe(true);

      // The summary's counts (GET /rollouts/:id/summary) are sliced by plan position too: they
      // equal the ones derived from the device rows, and the event loop ran in between.
      const fromRows = new Map<string, { wave: number; state: string; devices: number; unfinished: number }>();
      for (const d of await store.rollouts.listDevices('r1')) {
        const state = d.revert?.state ?? d.assignment?.state ?? 'PENDING';
        const c = fromRows.get(`${d.wave}:${state}`) ?? { wave: d.wave, state, devices: 0, unfinished: 0 };
        c.devices += 1;
        if (isLive(d) && !(d.assignment && TERMINAL_STATES.has(d.assignment.state as never))) c.unfinished += 1;
        fromRows.set(`${d.wave}:${state}`, c);
      }
      let summaryYielded = false;
      setImmediate(() => (summaryYielded = true));
      const summary = await store.rollouts.waveStateCounts!('r1');
      const byKey = (a: { wave: number; state: string }, b: { wave: number; state: string }) => a.wave - b.wave || a.state.localeCompare(b.state);
      expect([...summary].sort(byKey)).toEqual([...fromRows.values()].sort(byKey));
      expect(summary.reduce((n, c) => n + c.devices, 0)).toBe(2345);
      expect(summaryYielded).toBe(true);
    } finally {
      await store.close();
    }
  });
});
