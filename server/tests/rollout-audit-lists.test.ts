// A rollout's audit events name at most 100 devices each; past that they hold how many there
// were and the SHA-256 of the whole list, which must match the list the rollout itself keeps
// (its plan, read back page by page in plan order). Seeded below the rollout service, on
// SQLite: the events are built above the store, the same on both engines.
import * as crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AUDIT_DEVICE_NAMES } from '../src/rollouts/audited-devices.js';
import { startWave } from '../src/rollouts/engine.js';
import { abortRollout, newRolloutRecord } from '../src/rollouts/service.js';
import type { Strategy } from '../src/rollouts/strategy.js';
import { planWaves } from '../src/rollouts/wave-plan.js';
import { openStore, type Store } from '../src/store/index.js';
import { sqliteEngine } from './engines.js';
import { insertModelArtifact, labModelRollout, quietLogger, registerLabDevices, reportEveryStarted } from './helpers/rollout-seed.mjs';

const STRATEGY: Strategy = {
  waves: [
    { percent: 60, approval: 'auto' },
    { percent: 100, approval: 'auto' },
  ],
  max_failure_rate: 0.9,
};

const sha256 = (value: unknown) => crypto.createHash('sha256').update(JSON.stringify(value)).digest('hex');

async function waveNames(store: Store, rolloutId: string, wave: number): Promise<string[]> {
  return (await store.rollouts.listDevices(rolloutId, { wave, limit: 1000 })).map((d) => d.deviceName);
}

describe('devices named by rollout audit events', () => {
  it('lists a small wave in full, and a large one as its first names, its count and the digest of the list the rollout keeps', async () => {
    const store = await openStore(await sqliteEngine.fresh());
    try {
      const now = new Date().toISOString();
      const devices = await registerLabDevices(store, 250, 'test.local', now);
      const rollout = newRolloutRecord(labModelRollout(await insertModelArtifact(store, now), STRATEGY, 'operator:test'), now);
      await store.withWriteLock(async () => {
        await store.rollouts.insert(rollout, planWaves(rollout.id, devices, STRATEGY));
        await startWave(store, rollout, 0, 'operator:test', now);
      });
      const wave0 = await waveNames(store, rollout.id, 0);
      expect(wave0).toHaveLength(150);
      const [started] = await store.listAudit({ subject: `rollout:${rollout.id}`, action: 'rollout.wave_started' });
      expect(started!.details).toEqual({ wave: 0, devices: wave0.slice(0, AUDIT_DEVICE_NAMES), devicesTotal: 150, devicesSha256: sha256(wave0) });

      // A wave of 100 devices or fewer is named in full, with no digest.
      const wave1 = await waveNames(store, rollout.id, 1);
      await store.withWriteLock(() => startWave(store, { ...rollout, currentWave: 1 }, 1, 'operator:test', now));
      const second = (await store.listAudit({ subject: `rollout:${rollout.id}`, action: 'rollout.wave_started' })).find((e) => e.details.wave === 1)!;
      expect(second.details).toEqual({ wave: 1, devices: wave1 });

      // Aborting with revert: 250 updated devices with nothing installed before, each recorded
      // on the rollout; the event names 100 and commits to all 250.
      await reportEveryStarted(store, rollout.id, 'HEALTHY', now);
      const detail = await abortRollout({ store, logger: quietLogger }, rollout.id, { policy: 'revert' }, 'operator:test');
      const [aborted] = await store.listAudit({ subject: `rollout:${rollout.id}`, action: 'rollout.aborted' });
      const expected = detail.devices.map((d) => ({ device: d.name, reason: d.revert!.note }));
      expect(expected).toHaveLength(250);
      expect(aborted!.details).toMatchObject({
        reverted: [],
        notReverted: expected.slice(0, AUDIT_DEVICE_NAMES),
        notRevertedTotal: 250,
        notRevertedSha256: sha256(expected),
      });
    } finally {
      await store.close();
    }
  });
});
