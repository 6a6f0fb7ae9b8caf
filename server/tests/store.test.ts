// The store on both engines (SQLite and PostgreSQL): the same migrations, the same answers,
// the same refusals. PostgreSQL cases need a reachable server (engines.ts says how).
import * as crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isMeshError } from '../src/errors.js';
import { MIGRATIONS, openStore, type SqlStore, type Store } from '../src/store/index.js';
import { testEngines } from './engines.js';
import { insertModelArtifact, labModelRollout, registerLabDevices } from './helpers/rollout-seed.mjs';
import { newRolloutRecord } from '../src/rollouts/service.js';
import { buildRolloutDetail, type RolloutDetail } from '../src/rollouts/detail.js';
import { planWaves } from '../src/rollouts/wave-plan.js';

const { engines } = await testEngines();

/** A rollout of the seeded model artifact to fleet lab, its plan over `deviceIds` inserted. */
async function insertLabRollout(store: Store, deviceIds: readonly string[], strategy: Parameters<typeof planWaves>[2], now: string) {
  const rollout = newRolloutRecord(labModelRollout(await insertModelArtifact(store, now), strategy, 'operator:test'), now);
  const plan = planWaves(rollout.id, deviceIds, strategy);
  await store.withWriteLock(() => store.rollouts.insert(rollout, plan));
  return { rollout, plan };
}

const PROBE = { type: 'file', spec: { path: '/r' }, timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 };

async function deviceWithAssignment(store: Store, name: string, now: string): Promise<{ deviceId: string; assignmentId: string }> {
  const { device } = await store.ensureDevice({ spiffeId: `spiffe://meshanics.local/fleet/f/device/${name}`, fleet: 'f', name, now });
  if (!(await store.getArtifactById('a1'))) {
    await store.insertArtifact({
      id: 'a1',
      name: 'm',
      version: '1',
      kind: 'model',
      fileName: 'm',
      targetPath: 'm/1/m',
      sha256: '0'.repeat(64),
      length: 5_000_000_000,
      spec: {},
      createdAt: now,
    });
  }
  const assignmentId = `as-${name}`;
  await store.insertAssignment({
    id: assignmentId,
    deviceId: device.id,
    artifactId: 'a1',
    artifactName: 'm',
    rolloutId: null,
    probe: PROBE,
    state: 'PENDING',
    reason: '',
    active: true,
    createdAt: now,
    updatedAt: now,
  });
  return { deviceId: device.id, assignmentId };
}

describe.each(engines)('store on $name', (engine) => {
  it('applies migrations once: reopening the same database is a no-op', async () => {
    const location = await engine.fresh();
    await (await openStore(location)).close();
    const again = await openStore(location);
    expect(await again.schemaVersion()).toBe(MIGRATIONS.at(-1)!.version);
    expect(again.dialect).toBe(engine.name);
    await again.close();
    const rows = await engine.exec(location, 'SELECT version, name FROM schema_migrations ORDER BY version');
    expect(rows.map((r) => ({ version: Number(r.version), name: r.name }))).toEqual(MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));
    if (engine.name === 'sqlite') expect((await engine.exec(location, 'PRAGMA journal_mode'))[0]).toEqual({ journal_mode: 'wal' });
  });

  it('refuses a database migrated by a newer server', async () => {
    const location = await engine.fresh();
    await (await openStore(location)).close();
    await engine.exec(location, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')");
    const error = await openStore(location).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(isMeshError(error, 'MESH_ERR_STORE_SCHEMA_TOO_NEW')).toBe(true);
  });

  it('keeps the audit trail append-only even against direct SQL', async () => {
    const location = await engine.fresh();
    const store = await openStore(location);
    await store.appendAudit({ actor: 'test', action: 'x.done', subject: 's', details: { a: 1 } });
    await store.close();
    await expect(engine.exec(location, "UPDATE audit_events SET actor = 'evil'")).rejects.toThrow(/append-only/);
    await expect(engine.exec(location, 'DELETE FROM audit_events')).rejects.toThrow(/append-only/);
    await expect(engine.exec(location, "INSERT INTO audit_events (at, actor, action, subject, details) VALUES ('t', 'a', 'b', 'c', '{}')")).rejects.toThrow(
      /seq, prev_hash and hash/,
    );
  });

  it('upserts a device by SPIFFE ID and drops status reports whose sequence is not above the last', async () => {
    const store = await openStore(await engine.fresh());
    try {
      const now = new Date().toISOString();
      const spiffeId = 'spiffe://meshanics.local/fleet/f/device/d';
      const { created } = await store.ensureDevice({ spiffeId, fleet: 'f', name: 'd', now });
      expect(created).toBe(true);
      expect((await store.ensureDevice({ spiffeId, fleet: 'f', name: 'd', now })).created).toBe(false);
      const { deviceId, assignmentId } = await deviceWithAssignment(store, 'd', now);
      const report = { deviceId, assignmentId, state: 'DOWNLOADING' as const, reason: '', bytesDone: 4_000_000_000, bytesTotal: 5_000_000_000, deviceTime: '', receivedAt: now };
      expect(await store.recordStatusReport({ ...report, sequence: 5 })).toBe(true);
      expect(await store.recordStatusReport({ ...report, sequence: 5, state: 'FAILED' })).toBe(false);
      expect(await store.recordStatusReport({ ...report, sequence: 4, state: 'FAILED' })).toBe(false);
      expect((await store.getAssignment(assignmentId))?.state).toBe('DOWNLOADING');
      // 64-bit sizes survive the round trip on both engines.
      expect((await store.listStatusReports(assignmentId)).map((r) => [r.sequence, r.bytesDone, r.bytesTotal])).toEqual([[5, 4_000_000_000, 5_000_000_000]]);
      expect((await store.getArtifactById('a1'))?.length).toBe(5_000_000_000);
    } finally {
      await store.close();
    }
  });

  it('upgrades a version-1 database in place: existing devices keep their rows and gain the lifecycle columns', async () => {
    const location = await engine.fresh();
    const v1 = await openStore(location, { migrations: [MIGRATIONS[0]!] });
    const now = new Date().toISOString();
    // The row as a version-1 server wrote it (today's ensureDevice fills later columns too).
    const device = { id: 'old-device-id' };
    await (v1 as SqlStore).db.run('INSERT INTO devices (id, spiffe_id, fleet, name, created_at) VALUES (?, ?, ?, ?, ?)', [
      device.id,
      'spiffe://meshanics.local/fleet/f/device/old',
      'f',
      'old',
      now,
    ]);
    await v1.close();
    const v2 = await openStore(location, { migrations: MIGRATIONS.slice(0, 2) });
    try {
      expect(await v2.schemaVersion()).toBe(2);
      expect(await v2.getDeviceById(device.id)).toMatchObject({ name: 'old', decommissionedAt: null, offboardNotifiedAt: null });
      expect(await v2.markOffboardNotified(device.id, now)).toBe(false);
      await v2.decommissionDevice(device.id, now);
      expect(await v2.markOffboardNotified(device.id, now)).toBe(true);
      expect(await v2.markOffboardNotified(device.id, now)).toBe(false);
      expect(await v2.enrollmentTokens.list()).toEqual([]);
      expect(await v2.logRequests.listPending(device.id)).toEqual([]);
    } finally {
      await v2.close();
    }
  });

  it('lets only one caller take the last use of an enrollment token, and never a revoked or expired one', async () => {
    const store = await openStore(await engine.fresh());
    try {
      const now = new Date();
      const base = {
        fleet: 'f',
        deviceName: null,
        usesTotal: 1,
        usesLeft: 1,
        createdAt: now.toISOString(),
        createdBy: 't',
        expiresAt: new Date(now.getTime() + 60_000).toISOString(),
        revokedAt: null,
        revokedBy: null,
      };
      await store.enrollmentTokens.insert({ ...base, id: 'live', tokenSha256: 'a' });
      await store.enrollmentTokens.insert({ ...base, id: 'old', tokenSha256: 'b', expiresAt: new Date(now.getTime() - 1).toISOString() });
      await store.enrollmentTokens.insert({ ...base, id: 'gone', tokenSha256: 'c' });
      expect(await store.enrollmentTokens.revoke('gone', now.toISOString(), 't')).toBe(true);
      expect(await store.enrollmentTokens.revoke('gone', now.toISOString(), 't')).toBe(false);
      const race = await Promise.all([store.enrollmentTokens.consumeUse('live', now.toISOString()), store.enrollmentTokens.consumeUse('live', now.toISOString())]);
      expect(race.sort()).toEqual([false, true]);
      expect(await store.enrollmentTokens.consumeUse('old', now.toISOString())).toBe(false);
      expect(await store.enrollmentTokens.consumeUse('gone', now.toISOString())).toBe(false);
      expect((await store.enrollmentTokens.get('live'))!.usesLeft).toBe(0);
      expect((await store.enrollmentTokens.list()).map((t) => t.id)).toEqual(['live', 'old', 'gone']);
    } finally {
      await store.close();
    }
  });

  it('computes online and filters devices by tag the same way on both engines', async () => {
    const store = await openStore(await engine.fresh());
    try {
      const now = new Date('2026-01-01T00:10:00.000Z');
      const at = (secondsAgo: number) => new Date(now.getTime() - secondsAgo * 1000).toISOString();
      const profile = (tags: Record<string, string>) => ({ hardware: null, agentVersion: '1', tags, capabilities: [] });
      for (const [name, tags] of [
        ['cam-1', { site: 'north' }],
        ['cam-2', { site: 'south' }],
        ['cam-3', { site: 'north', tier: 'gold' }],
      ] as const) {
        await store.registerDevice({ spiffeId: `spiffe://meshanics.local/fleet/lab/device/${name}`, fleet: 'lab', name, profile: profile(tags), now: at(600) });
      }
      const ids = Object.fromEntries(await Promise.all(['cam-1', 'cam-2', 'cam-3'].map(async (n) => [n, (await store.getDeviceByName('lab', n))!.id])));
      // cam-1 seen 40 s ago (online at a 15 s interval: 3 × 15 = 45), cam-2 50 s ago (offline), cam-3 never since 600 s.
      await store.touchLastSeen([
        { deviceId: ids['cam-1']!, at: at(40) },
        { deviceId: ids['cam-2']!, at: at(50) },
      ]);
      // An older time never moves last-seen backwards.
      await store.touchLastSeen([{ deviceId: ids['cam-1']!, at: at(500) }]);
      const filter = { defaultHeartbeatIntervalSeconds: 15, now: now.toISOString() };
      const page = { limit: 10, offset: 0 };
      const all = await store.operatorViews.listDevices(filter, page);
      expect(all.total).toBe(3);
      expect(all.rows.map((r) => [r.device.name, r.online])).toEqual([
        ['cam-1', true],
        ['cam-2', false],
        ['cam-3', false],
      ]);
      expect((await store.operatorViews.listDevices({ ...filter, online: true }, page)).rows.map((r) => r.device.name)).toEqual(['cam-1']);
      const north = await store.operatorViews.listDevices({ ...filter, tags: [['site', 'north']] }, page);
      expect(north.rows.map((r) => r.device.name)).toEqual(['cam-1', 'cam-3']);
      expect(
        (
          await store.operatorViews.listDevices(
            {
              ...filter,
              tags: [
                ['site', 'north'],
                ['tier', 'gold'],
              ],
            },
            page,
          )
        ).total,
      ).toBe(1);
      expect((await store.operatorViews.listDevices({ ...filter, fleet: 'other' }, page)).total).toBe(0);
      expect(await store.operatorViews.isOnline(ids['cam-1'], 15, now.toISOString())).toBe(true);
      expect(await store.operatorViews.isOnline(ids['cam-2'], 15, now.toISOString())).toBe(false);
      expect(await store.countDevices()).toBe(3);
    } finally {
      await store.close();
    }
  });

  it('rolls back a write transaction that throws, and a nested one alone when the caller catches it', async () => {
    const store = await openStore(await engine.fresh());
    try {
      const now = new Date().toISOString();
      await expect(
        store.withWriteLock(async () => {
          await store.appendAudit({ actor: 't', action: 'x.lost', subject: 's' });
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      await store.withWriteLock(async () => {
        await store.appendAudit({ actor: 't', action: 'x.kept', subject: 's', at: now });
        await store
          .withWriteLock(async () => {
            await store.appendAudit({ actor: 't', action: 'x.inner', subject: 's' });
            throw new Error('inner');
          })
          .catch(() => undefined);
      });
      expect((await store.listAudit()).map((e) => [e.seq, e.action])).toEqual([[1, 'x.kept']]);
    } finally {
      await store.close();
    }
  });

  it('serializes concurrent write transactions: appends from two stores on one database never fork the audit chain', async () => {
    const location = await engine.fresh();
    const a = await openStore(location);
    const b = await openStore(location);
    try {
      // Each writer reads the head and appends in separate statements, yielding in between:
      // without the write lock two of them would take the same seq.
      await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).appendAudit({ actor: 't', action: `x.${i}`, subject: 's' })));
      const events = await a.listAudit();
      expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      for (let i = 1; i < events.length; i++) expect(events[i]!.prevHash).toBe(events[i - 1]!.hash);
    } finally {
      await a.close();
      await b.close();
    }
  });
  it("upgrades a version-7 catalog in place: its artifacts become every fleet's, stay listed, and keep owning their names", async () => {
    const location = await engine.fresh();
    const v7 = await openStore(location, { migrations: MIGRATIONS.filter((m) => m.version <= 7) });
    const now = new Date().toISOString();
    // The row as a version-7 server wrote it (no fleet, no withdrawn_at column yet).
    await (v7 as SqlStore).db.run(
      `INSERT INTO artifacts (id, name, version, kind, file_name, target_path, sha256, length, spec, manifest, created_at)
       VALUES ('old-a', 'detector', '1.0.0', 'model', 'd.onnx', 'artifacts/detector/1.0.0/detector', ?, 3, '{}', NULL, ?)`,
      ['1'.repeat(64), now],
    );
    await v7.close();
    const v8 = await openStore(location);
    try {
      expect(await v8.schemaVersion()).toBe(MIGRATIONS.at(-1)!.version);
      expect(await v8.getArtifact('detector', '1.0.0')).toMatchObject({ id: 'old-a', fleet: '*', withdrawnAt: null });
      expect(await v8.artifactNameOwner('detector')).toBe('*');
      // A key bound to any fleet lists it; a filter on another owner does not.
      const page = { limit: 10, offset: 0 };
      expect((await v8.operatorViews.listArtifacts({ visibleTo: 'fleet-a' }, page)).rows.map((a) => a.id)).toEqual(['old-a']);
      expect((await v8.operatorViews.listArtifacts({ fleet: 'fleet-a' }, page)).total).toBe(0);
      // New rows name their fleet; listings keep fleets apart.
      await v8.insertArtifact({
        id: 'b-1',
        name: 'b-only',
        version: '1',
        kind: 'model',
        fileName: 'b',
        targetPath: 'artifacts/b-only/1/b-only',
        sha256: '2'.repeat(64),
        length: 1,
        spec: {},
        createdAt: now,
        fleet: 'fleet-b',
      });
      expect((await v8.operatorViews.listArtifacts({ visibleTo: 'fleet-a' }, page)).rows.map((a) => a.id)).toEqual(['old-a']);
      expect((await v8.operatorViews.listArtifacts({ visibleTo: 'fleet-b' }, page)).rows.map((a) => a.id).sort()).toEqual(['b-1', 'old-a']);
      expect(await v8.artifactNameOwner('b-only')).toBe('fleet-b');
    } finally {
      await v8.close();
    }
  });

  it('names what holds an artifact version, and withdraws it once: withdrawn versions leave the listing but keep their row', async () => {
    const store = await openStore(await engine.fresh());
    try {
      const now = new Date().toISOString();
      const { deviceId, assignmentId } = await deviceWithAssignment(store, 'd1', now);
      const a1 = (await store.getArtifactById('a1'))!;
      expect(await store.artifactHolders(a1, ['running'])).toEqual({ rollouts: [], devices: [{ fleet: 'f', name: 'd1', holds: 'assigned' }] });
      // Superseded by another version: the device is assigned nothing of a1, but still runs it.
      await store.insertArtifact({ ...a1, id: 'a2', version: '2', targetPath: 'm/2/m' });
      await store.insertAssignment({ ...(await store.getAssignment(assignmentId))!, id: 'as-2', artifactId: 'a2', createdAt: now, updatedAt: now });
      await store.replaceInstalled(deviceId, [{ name: 'm', kind: 'model', version: '1', sha256: a1.sha256, state: 'HEALTHY' }], now);
      expect((await store.artifactHolders(a1, ['running'])).devices).toEqual([{ fleet: 'f', name: 'd1', holds: 'installed' }]);
      await store.replaceInstalled(deviceId, [], now);
      expect(await store.artifactHolders(a1, ['running'])).toEqual({ rollouts: [], devices: [] });

      expect(await store.markArtifactWithdrawn('a1', now)).toBe(true);
      expect(await store.markArtifactWithdrawn('a1', now)).toBe(false);
      expect((await store.getArtifactById('a1'))?.withdrawnAt).toBe(now);
      expect((await store.operatorViews.listArtifacts({}, { limit: 10, offset: 0 })).rows.map((a) => a.id)).toEqual(['a2']);
    } finally {
      await store.close();
    }
  });

  it("resolves a group's names, writes a rollout's plan and finds its busy devices across statement chunks, in the order asked", async () => {
    const store = await openStore(await engine.fresh());
    try {
      const now = new Date().toISOString();
      // 2,101 devices; the store reads and writes 2,000 rows per statement (sql-rows.ts), so
      // every list below crosses a chunk edge with real devices on both sides of it.
      const ids = await registerLabDevices(store, 2101, 'test.local', now);
      await store.registerDevice({
        spiffeId: 'spiffe://test.local/other/d1',
        fleet: 'other',
        name: 'd1',
        profile: { hardware: null, agentVersion: '1', tags: {}, capabilities: [] },
        now,
      });
      const nobody = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}-${i}`);
      // Real names at 0, 1999, 2000, 2001 and 4100 of 4,101 names.
      const asked = ['d1', ...nobody(1998, 'a'), 'd1999', 'd2000', 'd0', ...nobody(2098, 'b'), 'd2100'];
      const found = await store.getDevicesByNames('lab', asked);
      expect([...found.keys()].sort()).toEqual(['d0', 'd1', 'd1999', 'd2000', 'd2100']);
      // The same name in another fleet is another device.
      expect(found.get('d1')!.fleet).toBe('lab');
      expect(found.get('d2000')!.id).toBe(ids[2000]);

      const strategy = { waves: [{ percent: 100, approval: 'auto' as const }], max_failure_rate: 0 };
      // d3..d2100 in the rollout: 2,098 plan rows, two statements; d0..d2 not.
      const { rollout, plan } = await insertLabRollout(store, ids.slice(3), strategy, now);
      // Asked in reverse, with ids of no device between them: the answer keeps the order asked.
      const probe = [...ids].reverse().flatMap((id, i) => (i % 2 === 0 ? [id, `no-such-device-${i}`] : [id]));
      const busy = await store.rollouts.busyDevices(probe, 'model');
      expect(busy).toEqual(
        [...ids]
          .reverse()
          .filter((id) => !ids.slice(0, 3).includes(id))
          .map((deviceId) => ({ deviceId, rolloutId: rollout.id })),
      );
      expect(await store.rollouts.busyDevices(probe, 'another-artifact')).toEqual([]);
      // The plan was stored as planned, every row of both statements.
      const stored = await (store as SqlStore).db.all('SELECT device_id, wave, position FROM rollout_devices WHERE rollout_id = ? ORDER BY position', [rollout.id]);
      expect(stored.map((r) => ({ deviceId: String(r.device_id), wave: Number(r.wave), position: Number(r.position) }))).toEqual(
        plan.map((d) => ({ deviceId: d.deviceId, wave: d.wave, position: d.position })),
      );
    } finally {
      await store.close();
    }
  });

  it("counts a rollout's summary in SQL exactly as from its device rows: reverts, decommissioned and superseded devices, waves not started, a wave complete when only a superseded device is left", async () => {
    const store = await openStore(await engine.fresh());
    try {
      const now = new Date().toISOString();
      const ids = await registerLabDevices(store, 12, 'test.local', now);
      const strategy = {
        waves: [
          { percent: 25, approval: 'auto' as const },
          { percent: 50, approval: 'auto' as const },
          { percent: 100, approval: 'manual' as const },
        ],
        max_failure_rate: 1,
      };
      const { rollout } = await insertLabRollout(store, ids, strategy, now);
      const db = (store as SqlStore).db;
      const assignmentOf = async (deviceId: string) =>
        String((await db.get('SELECT assignment_id FROM rollout_devices WHERE rollout_id = ? AND device_id = ?', [rollout.id, deviceId]))!.assignment_id);
      const setState = async (deviceId: string, state: string, active = 1) =>
        db.run('UPDATE assignments SET state = ?, active = ? WHERE id = ?', [state, active, await assignmentOf(deviceId)]);
      // Waves 0 and 1 started (3 + 3 devices); wave 2 (6 devices) waits for approval.
      for (const wave of [0, 1]) {
        await store.withWriteLock(async () => {
          await store.rollouts.startWaveAssignments(rollout, wave, now);
          await store.rollouts.recordWaveStart(rollout.id, { wave, startedAt: now, startedBy: 'operator:test' });
        });
      }
      const planned = await db.all('SELECT device_id, wave FROM rollout_devices WHERE rollout_id = ? ORDER BY position', [rollout.id]);
      const inWave = (w: number) => planned.filter((r) => Number(r.wave) === w).map((r) => String(r.device_id));
      const [a, b, c] = inWave(0) as [string, string, string];
      const [d, e, f] = inWave(1) as [string, string, string];
      // Wave 0 finished: healthy, failed, and a device decommissioned while PENDING (it no
      // longer holds the wave back).
      await setState(a, 'HEALTHY');
      await setState(b, 'FAILED');
      await store.decommissionDevice(c, now);
      // Wave 1 still active: one healthy device sent back (its revert assignment is the state
      // shown), one superseded before it started, one downloading.
      await setState(d, 'HEALTHY');
      const revertId = crypto.randomUUID();
      await store.rollouts.recordReverts(
        rollout.id,
        [{ deviceId: d, revert: { assignmentId: revertId, artifactId: rollout.artifactId, artifactName: 'model', probe: rollout.probe }, note: 'reverting' }],
        now,
      );
      await db.run("UPDATE assignments SET state = 'APPLYING' WHERE id = ?", [revertId]);
      await setState(e, 'PENDING', 0);
      await setState(f, 'DOWNLOADING');
      const record = (await store.rollouts.get(rollout.id))!;
      const withoutDevices = ({ devices: _, ...summary }: RolloutDetail) => summary;
      const fromRows = withoutDevices((await buildRolloutDetail({ store }, { ...record, currentWave: 1 }, true)) as RolloutDetail);
      const fromSql = await buildRolloutDetail({ store }, { ...record, currentWave: 1 }, false);
      expect(fromSql).toEqual(fromRows);
      // And the figures are the ones above, not two paths agreeing on something else.
      expect(fromSql.waves.map((w) => [w.status, w.devices])).toEqual([
        ['complete', 3],
        ['active', 3],
        ['pending', 6],
      ]);
      expect(fromSql.counts).toMatchObject({ HEALTHY: 1, FAILED: 1, APPLYING: 1, DOWNLOADING: 1, PENDING: 8 });

      // The downloading device finishes: only the superseded one is left, which no longer holds
      // the wave. The engine moves on (no started device unfinished), and both paths of the
      // detail call the wave complete, not active for ever.
      await setState(f, 'HEALTHY');
      const settled = { ...(await store.rollouts.get(rollout.id))!, currentWave: 1 };
      expect((await store.rollouts.progress(rollout.id, 1)).startedUnfinished).toBe(0);
      const settledRows = withoutDevices((await buildRolloutDetail({ store }, settled, true)) as RolloutDetail);
      const settledSql = await buildRolloutDetail({ store }, settled, false);
      expect(settledSql).toEqual(settledRows);
      expect(settledSql.waves.map((w) => w.status)).toEqual(['complete', 'complete', 'pending']);
      // A store without the aggregate (one written before it) gives the same summary from its rows.
      const rollouts = new Proxy(store.rollouts, {
        get: (target, key) => (key === 'waveStateCounts' ? undefined : (Reflect.get(target, key, target) as unknown)),
      });
      const withoutAggregate = new Proxy(store, { get: (target, key) => (key === 'rollouts' ? rollouts : (Reflect.get(target, key, target) as unknown)) });
      expect(await buildRolloutDetail({ store: withoutAggregate }, settled, false)).toEqual(settledSql);
    } finally {
      await store.close();
    }
  });
});
