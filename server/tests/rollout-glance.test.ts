// A rollout step first glances at the rollout (store.rollouts.glance, rollouts/engine.ts):
// when that shows nothing to do, it takes no lock and counts no device. Tried on both
// engines as a report batch in flight holds the lock a locking step would wait for: the
// step with nothing to do must not wait for it, and the step after the wave's last report
// must still advance. The glance must read from migration 10's partial indexes (the plan
// test): its predicates repeated in the statement are what make the engines use them.
import * as crypto from 'node:crypto';
import { TERMINAL_STATES } from '@meshanics/core/contract';
import Database from 'better-sqlite3';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { driveRollouts, startWave, type EngineContext } from '../src/rollouts/engine.js';
import { newRolloutRecord } from '../src/rollouts/service.js';
import type { Strategy } from '../src/rollouts/strategy.js';
import { planWaves } from '../src/rollouts/wave-plan.js';
import { openStore, type NewStatusReport, type RolloutDeviceView, type RolloutRecord, type SqlStore, type Store } from '../src/store/index.js';
import { MIGRATION_10_TERMINAL_STATES } from '../src/store/migration-10.js';
import { GLANCE_SQL } from '../src/store/sql-rollouts.js';
import { testEngines } from './engines.js';
import { insertModelArtifact, labModelRollout, quietLogger, registerLabDevices } from './helpers/rollout-seed.mjs';

const { engines } = await testEngines();

const STRATEGY: Strategy = {
  waves: [
    { percent: 50, approval: 'auto' },
    { percent: 100, approval: 'auto' },
  ],
  max_failure_rate: 0.25,
};

async function seeded(store: Store, n: number): Promise<{ rollout: RolloutRecord; devices: string[] }> {
  const now = new Date().toISOString();
  const devices = await registerLabDevices(store, n, 'test.local', now);
  const artifactId = await insertModelArtifact(store, now);
  const rollout = newRolloutRecord(labModelRollout(artifactId, STRATEGY, 'operator:test'), now);
  await store.withWriteLock(async () => {
    await store.rollouts.insert(rollout, planWaves(rollout.id, devices, STRATEGY));
    await startWave(store, rollout, 0, 'operator:test', now);
  });
  return { rollout, devices };
}

/** A device's first status report on its rollout assignment. */
function reportOf(d: RolloutDeviceView, state: NewStatusReport['state']): NewStatusReport {
  const now = new Date().toISOString();
  return { deviceId: d.deviceId, assignmentId: d.assignmentId!, sequence: 1, state, reason: '', bytesDone: 0, bytesTotal: 0, deviceTime: now, receivedAt: now };
}

/** What a report batch in flight holds: PostgreSQL, the rollout's row share-locked; SQLite, the database's write lock. Resolves to its release. */
async function holdReportBatchLock(engine: 'sqlite' | 'postgres', location: string, rolloutId: string): Promise<() => Promise<void>> {
  if (engine === 'postgres') {
    const client = new pg.Client({ connectionString: location });
    await client.connect();
    await client.query('BEGIN');
    await client.query('SELECT id FROM rollouts WHERE id = $1 FOR SHARE', [rolloutId]);
    return async () => {
      await client.query('COMMIT');
      await client.end();
    };
  }
  const db = new Database(location);
  db.exec('BEGIN IMMEDIATE');
  return async () => {
    db.exec('COMMIT');
    db.close();
  };
}

const settle = <T>(p: Promise<T>, ms: number): Promise<'done' | 'waiting'> =>
  Promise.race([p.then(() => 'done' as const), new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), ms))]);

describe('the glance’s partial index', () => {
  it('spells out the contract’s terminal states, so the glance is on', () => {
    // A new terminal state in the contract needs a migration that rebuilds the index; until
    // then the glance turns itself off (every step counts), which this test makes visible.
    expect(new Set(MIGRATION_10_TERMINAL_STATES)).toEqual(new Set(TERMINAL_STATES));
  });
});

describe.each(engines)('rollout steps that glance first, on $name', (engine) => {
  it('a step with nothing to do waits for no lock while a report batch holds one, and the step after the wave’s last report still advances', async () => {
    const location = await engine.fresh();
    const store = await openStore(location);
    try {
      const { rollout } = await seeded(store, 8);
      const ctx: EngineContext = { store, logger: quietLogger };
      const wave0 = (await store.rollouts.listDevices(rollout.id)).filter((d) => d.assignmentId !== null);
      expect(wave0).toHaveLength(4);

      // Three of the four report HEALTHY: the wave is still running, nothing to do.
      await store.recordStatusReports(wave0.slice(0, 3).map((d) => reportOf(d, 'HEALTHY')));
      const release = await holdReportBatchLock(engine.name, location, rollout.id);
      let step: Promise<unknown> | undefined;
      try {
        // A step that locked would wait for the batch (PostgreSQL: FOR UPDATE behind FOR SHARE;
        // SQLite: BEGIN IMMEDIATE retried for 5 s).
        step = driveRollouts(ctx, { rolloutId: rollout.id });
        expect(await settle(step, 2000)).toBe('done');
        expect(await step).toEqual([]);
      } finally {
        await release();
        await step;
      }

      // The last one: the glance sees the wave finished, the locked step advances.
      await store.recordStatusReports([reportOf(wave0[3]!, 'HEALTHY')]);
      expect(await driveRollouts(ctx, { rolloutId: rollout.id })).toEqual([{ rolloutId: rollout.id, action: 'advance', wave: 1 }]);
      expect((await store.rollouts.get(rollout.id))!.currentWave).toBe(1);
    } finally {
      await store.close();
    }
  });

  it('halts from the glance’s failure count: a failure over the tolerance is not settled at a glance', async () => {
    const store = await openStore(await engine.fresh());
    try {
      const { rollout } = await seeded(store, 8);
      const ctx: EngineContext = { store, logger: quietLogger };
      const wave0 = (await store.rollouts.listDevices(rollout.id)).filter((d) => d.assignmentId !== null);
      // 3 of 8 failed (0.375 > 0.25) while the fourth device is still downloading.
      await store.recordStatusReports(wave0.map((d, i) => reportOf(d, i < 3 ? 'FAILED' : 'DOWNLOADING')));
      expect(await store.rollouts.glance!(rollout.id)).toMatchObject({ targeted: 8, failures: 3, someStartedUnfinished: true });
      expect(await driveRollouts(ctx, { rolloutId: rollout.id })).toEqual([{ rolloutId: rollout.id, action: 'halt', wave: 0 }]);
    } finally {
      await store.close();
    }
  });

  it('advances the wave once its only unfinished devices are decommissioned or superseded', async () => {
    const store = await openStore(await engine.fresh());
    try {
      const { rollout } = await seeded(store, 8);
      const ctx: EngineContext = { store, logger: quietLogger };
      const wave0 = (await store.rollouts.listDevices(rollout.id)).filter((d) => d.assignmentId !== null);
      await store.recordStatusReports(wave0.slice(0, 2).map((d) => reportOf(d, 'HEALTHY')));
      const now = new Date().toISOString();
      // One device dies mid-wave and is decommissioned; another is given an assignment of its
      // own by an operator (the rollout's is superseded). Neither holds the wave any more.
      await store.decommissionDevice(wave0[2]!.deviceId, now);
      const artifactId = (await store.rollouts.get(rollout.id))!.artifactId;
      await store.insertAssignment({
        id: crypto.randomUUID(),
        deviceId: wave0[3]!.deviceId,
        artifactId,
        artifactName: 'model',
        rolloutId: null,
        probe: rollout.probe,
        state: 'PENDING',
        reason: '',
        active: true,
        createdAt: now,
        updatedAt: now,
      });
      expect(await driveRollouts(ctx, { rolloutId: rollout.id })).toEqual([{ rolloutId: rollout.id, action: 'advance', wave: 1 }]);
    } finally {
      await store.close();
    }
  });

  it('backfills the device count of rollouts created before migration 10, and the glance then settles on them', async () => {
    const location = await engine.fresh();
    // A database as the version before migration 10 left it, as far as migration 10 goes: a
    // rollout under way, no targeted column, no partial indexes, migration 10 not recorded
    // (later migrations' objects stay; 10 does not touch them). Opening it applies 10 for real.
    let store = await openStore(location);
    const { rollout } = await seeded(store, 6);
    const { db } = store as SqlStore;
    await db.exec(`DROP INDEX assignments_unfinished_by_rollout; DROP INDEX assignments_failed_by_rollout; ALTER TABLE rollouts DROP COLUMN targeted`);
    await db.run('DELETE FROM schema_migrations WHERE version = 10');
    await store.close();
    store = await openStore(location);
    try {
      const glance = (await store.rollouts.glance!(rollout.id))!;
      expect(glance).toMatchObject({ targeted: 6, failures: 0, someStartedUnfinished: true });
      expect(Number((await (store as SqlStore).db.get('SELECT targeted FROM rollouts WHERE id = ?', [rollout.id]))!.targeted)).toBe(6);
      // The wave's devices report: the step after the last one still advances.
      const ctx: EngineContext = { store, logger: quietLogger };
      const wave0 = (await store.rollouts.listDevices(rollout.id)).filter((d) => d.assignmentId !== null);
      await store.recordStatusReports(wave0.map((d) => reportOf(d, 'HEALTHY')));
      expect(await driveRollouts(ctx, { rolloutId: rollout.id })).toEqual([{ rolloutId: rollout.id, action: 'advance', wave: 1 }]);
    } finally {
      await store.close();
    }
  });

  it('reads the unfinished and the failed assignments from migration 10’s partial indexes', async () => {
    const store = (await openStore(await engine.fresh())) as SqlStore;
    try {
      const { db } = store;
      const plan =
        engine.name === 'sqlite'
          ? (await db.all(`EXPLAIN QUERY PLAN ${GLANCE_SQL}`, { id: 'r' })).map((r) => String(r.detail)).join('\n')
          : // An empty table is cheapest to scan whole: forbid that, so the plan shows which indexes the statement can use.
            await db.writeTransaction(async () => {
              await db.run('SET LOCAL enable_seqscan = off');
              return (await db.all(`EXPLAIN ${GLANCE_SQL}`, { id: 'r' })).map((r) => String(r['QUERY PLAN'])).join('\n');
            });
      expect(plan).toMatch(/assignments_unfinished_by_rollout/);
      expect(plan).toMatch(/assignments_failed_by_rollout/);
    } finally {
      await store.close();
    }
  });
});
