// Status reports written as a set (store.recordStatusReports, what a batch of the device
// service's group commit calls): each report gets the answer it would get alone, on both
// engines, whatever else shares its statements.
import * as crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { installedDigest, openStore, type NewStatusReport, type Store } from '../src/store/index.js';
import { testEngines } from './engines.js';

const { engines } = await testEngines();

async function deviceWithAssignment(store: Store, name: string, artifactId: string): Promise<{ deviceId: string; assignmentId: string }> {
  const now = new Date().toISOString();
  const { device } = await store.ensureDevice({ spiffeId: `spiffe://t/lab/${name}`, fleet: 'lab', name, now });
  const assignmentId = crypto.randomUUID();
  await store.insertAssignment({
    id: assignmentId,
    deviceId: device.id,
    artifactId,
    artifactName: 'model-a',
    rolloutId: null,
    probe: { type: 'file', spec: { path: '/run/ready' }, timeoutSeconds: 5, attempts: 1, initialDelaySeconds: 0 },
    state: 'PENDING',
    reason: '',
    active: true,
    createdAt: now,
    updatedAt: now,
  });
  return { deviceId: device.id, assignmentId };
}

describe.each(engines)('recordStatusReports on $name', (engine) => {
  it('stores a batch with two reports of one device in order, drops stale ones, and writes installed sets and their digests', async () => {
    const store = await openStore(await engine.fresh());
    try {
      const artifactId = crypto.randomUUID();
      await store.insertArtifact({
        id: artifactId,
        name: 'model-a',
        version: '2.0.0',
        kind: 'model',
        fileName: 'model.bin',
        targetPath: 'model-a/2.0.0/model.bin',
        sha256: 'ab'.repeat(32),
        length: 1024,
        spec: { fileName: 'model.bin' },
        createdAt: new Date().toISOString(),
      });
      const a = await deviceWithAssignment(store, 'a', artifactId);
      const b = await deviceWithAssignment(store, 'b', artifactId);
      const c = await deviceWithAssignment(store, 'c', artifactId);
      const at = new Date().toISOString();
      const report = (d: { deviceId: string; assignmentId: string }, sequence: number, state: NewStatusReport['state'], healthy = false): NewStatusReport => ({
        deviceId: d.deviceId,
        assignmentId: d.assignmentId,
        sequence,
        state,
        reason: `${state} ${sequence}`,
        bytesDone: 0,
        bytesTotal: 1024,
        deviceTime: at,
        receivedAt: at,
        ...(healthy ? { installed: { name: 'model-a', kind: 'model', version: '2.0.0', sha256: 'ab'.repeat(32), state: 'HEALTHY' } } : {}),
      });
      expect(await store.recordStatusReport(report(c, 5, 'DOWNLOADING'))).toBe(true);

      const accepted = await store.withWriteLock(() =>
        store.recordStatusReports([
          report(a, 1, 'DOWNLOADING'),
          report(b, 1, 'DOWNLOADING'),
          // The second report of a in the same batch: newer, stored after the first.
          report(a, 2, 'HEALTHY', true),
          // A replay for c (its last stored sequence is 5).
          report(c, 5, 'FAILED'),
          // A repeat of a's first report within the batch.
          report(a, 1, 'DOWNLOADING'),
          report(b, 2, 'HEALTHY', true),
        ]),
      );
      expect(accepted).toEqual([true, true, true, false, false, true]);

      expect((await store.listStatusReports(a.assignmentId)).map((r) => [r.sequence, r.state])).toEqual([
        [1, 'DOWNLOADING'],
        [2, 'HEALTHY'],
      ]);
      expect((await store.listStatusReports(c.assignmentId)).map((r) => [r.sequence, r.state])).toEqual([[5, 'DOWNLOADING']]);
      for (const d of [a, b]) {
        const device = (await store.getDeviceById(d.deviceId))!;
        expect(device.lastReportSeq).toBe(2);
        const installed = await store.listInstalled(d.deviceId);
        expect(installed).toMatchObject([{ name: 'model-a', version: '2.0.0', state: 'HEALTHY' }]);
        // The heartbeat compares against this digest: it must be the set as stored.
        const found = await store.getCallingDevice(device.spiffeId);
        expect(found?.installedDigest).toBe(installedDigest(installed));
      }
      const assignmentA = await store.getAssignment(a.assignmentId);
      expect([assignmentA?.state, assignmentA?.reason]).toEqual(['HEALTHY', 'HEALTHY 2']);
      expect((await store.getAssignment(c.assignmentId))?.state).toBe('DOWNLOADING');
      expect((await store.getDeviceById(c.deviceId))!.lastReportSeq).toBe(5);
    } finally {
      await store.close();
    }
  });

  it('appends audit events as consecutive links of one chain', async () => {
    const store = await openStore(await engine.fresh());
    try {
      await store.appendAudit({ actor: 'test', action: 'first', subject: 'x' });
      const appended = await store.appendAuditEvents([
        { actor: 'test', action: 'second', subject: 'x', details: { n: 2 } },
        { actor: 'test', action: 'third', subject: 'y' },
      ]);
      const all = await store.listAudit({});
      expect(all.map((e) => [e.seq, e.action])).toEqual([
        [1, 'first'],
        [2, 'second'],
        [3, 'third'],
      ]);
      expect(appended.map((e) => e.id)).toEqual(all.slice(1).map((e) => e.id));
      expect(all[1]!.prevHash).toBe(all[0]!.hash);
      expect(all[2]!.prevHash).toBe(all[1]!.hash);
      expect(await store.appendAuditEvents([])).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

describe.each(engines)('getReportingDevice on $name', (engine) => {
  it("reads the device with its own assignment and artifact in one statement, and never another device's assignment", async () => {
    const store = await openStore(await engine.fresh());
    try {
      const artifactId = crypto.randomUUID();
      await store.insertArtifact({
        id: artifactId,
        name: 'model-a',
        version: '2.0.0',
        kind: 'model',
        fileName: 'm.bin',
        targetPath: 'model-a/2.0.0/m.bin',
        sha256: 'e'.repeat(64),
        length: 3,
        spec: {},
        createdAt: new Date().toISOString(),
      });
      const mine = await deviceWithAssignment(store, 'rep-1', artifactId);
      const theirs = await deviceWithAssignment(store, 'rep-2', artifactId);

      const found = await store.getReportingDevice('spiffe://t/lab/rep-1', mine.assignmentId);
      expect(found?.device).toMatchObject({ id: mine.deviceId, name: 'rep-1' });
      expect(found?.assignment).toEqual(await store.getAssignment(mine.assignmentId));
      expect(found?.artifact).toMatchObject({ id: artifactId, name: 'model-a', version: '2.0.0', sha256: 'e'.repeat(64), length: 3 });

      const probing = await store.getReportingDevice('spiffe://t/lab/rep-1', theirs.assignmentId);
      expect(probing?.device.id).toBe(mine.deviceId);
      expect(probing?.assignment).toBeUndefined();
      expect(probing?.artifact).toBeUndefined();
      expect((await store.getReportingDevice('spiffe://t/lab/rep-1', crypto.randomUUID()))?.assignment).toBeUndefined();
      expect(await store.getReportingDevice('spiffe://t/lab/nobody', mine.assignmentId)).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
