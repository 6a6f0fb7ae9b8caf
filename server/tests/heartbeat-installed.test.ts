// The installed set a heartbeat reports is stored only when it changed, told by the digest on
// the device row (migration 5) instead of reading the set back on every heartbeat, and it is
// written with the heartbeats' next batch (heartbeat-batcher.ts), not before the answer.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/catalog/publish.js';
import { createAssignment } from '../src/fleet/assignments.js';
import { installedDigest, openStore } from '../src/store/index.js';
import { testEngines } from './engines.js';
import { provision, REGISTER_REQUEST, startDeviceTestServer, tempDir, type DeviceTestServer } from './helpers.js';

const { engines } = await testEngines();
let t: DeviceTestServer;

beforeAll(async () => {
  // A flush interval no test waits for: each flushes when it means to, so what is written
  // before and after a flush is known.
  t = await startDeviceTestServer({ lastSeenFlushMs: 600_000 });
});
afterAll(async () => {
  await t.close();
});

async function registeredDevice(name: string) {
  const creds = await provision(t.ctx, 'lab', name);
  const client = t.client(creds);
  await client.call('Register', { ...REGISTER_REQUEST, capabilities: [{ kind: 'ARTIFACT', name: 'model', version: '0.1.0' }] });
  const device = (await t.ctx.store.getDeviceBySpiffeId(creds.spiffeId))!;
  return { client, device };
}

/** Publishes version 2.0.0 of the model `artifact` and assigns it to `device` (outside any rollout). */
async function assignVersion2(device: string, artifact: string) {
  const file = path.join(tempDir(), `${artifact}-2`);
  fs.writeFileSync(file, crypto.randomBytes(512));
  const v2 = await publishArtifact(t.ctx, { file, name: artifact, version: '2.0.0', kind: 'model', spec: { fileName: 'm.bin' } });
  const { assignmentId } = await createAssignment(t.ctx, {
    fleet: 'lab',
    device,
    artifact,
    version: '2.0.0',
    probe: { type: 'file', spec: { path: '/run/ready' }, timeoutSeconds: 5, attempts: 1 },
  });
  return { v2, assignmentId };
}

const entry = (version: string, sha256: string, state = 'HEALTHY') => ({ name: 'detector', kind: 'model', version, sha256, state });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('installed set on heartbeat', () => {
  it('answers before writing a changed set, writes it with the next batch, and leaves an unchanged one untouched', async () => {
    const { client, device } = await registeredDevice('inst-1');
    const a = entry('1.0.0', 'a'.repeat(64));
    await client.call('Heartbeat', { installed: [a] });
    expect(await t.ctx.store.listInstalled(device.id)).toEqual([]);
    await t.server.flushHeartbeatWrites();
    const first = await t.ctx.store.listInstalled(device.id);
    expect(first).toMatchObject([a]);

    await sleep(5);
    await client.call('Heartbeat', { installed: [a] });
    await t.server.flushHeartbeatWrites();
    // Same rows, same updatedAt: the second heartbeat did not rewrite them.
    expect(await t.ctx.store.listInstalled(device.id)).toEqual(first);

    const b = entry('2.0.0', 'b'.repeat(64));
    const other = { name: 'labels', kind: 'model', version: '1', sha256: 'c'.repeat(64), state: 'HEALTHY' };
    await client.call('Heartbeat', { installed: [other, b] });
    await t.server.flushHeartbeatWrites();
    expect(await t.ctx.store.listInstalled(device.id)).toMatchObject([b, other]);
    // The order a device lists its set in is not a change.
    const stored = await t.ctx.store.listInstalled(device.id);
    await sleep(5);
    await client.call('Heartbeat', { installed: [b, other] });
    await t.server.flushHeartbeatWrites();
    expect(await t.ctx.store.listInstalled(device.id)).toEqual(stored);
  });

  it('does not write a set the device listed and then stopped listing before the batch was flushed', async () => {
    const { client, device } = await registeredDevice('inst-4');
    // Say the device installed 1.0.0 and rolled it back on its own within one flush interval.
    await client.call('Heartbeat', { installed: [entry('1.0.0', 'f'.repeat(64))] });
    await client.call('Heartbeat', { installed: [] });
    await t.server.flushHeartbeatWrites();
    expect(await t.ctx.store.listInstalled(device.id)).toEqual([]);
  });

  it('keeps the set a HEALTHY report stored after a heartbeat whose different set was still waiting for its batch', async () => {
    const { client, device } = await registeredDevice('inst-3');
    const { v2, assignmentId } = await assignVersion2('inst-3', 'detector-late');
    // Answered against the empty set, listing 1.0.0: queued. The report is committed first.
    await client.call('Heartbeat', { installed: [{ name: 'detector-late', kind: 'model', version: '1.0.0', sha256: 'e'.repeat(64), state: 'HEALTHY' }] });
    await client.call('ReportArtifactStatus', { assignmentId, state: 'HEALTHY', sequence: 1, reason: 'probe ok', deviceTime: new Date().toISOString() });
    await t.server.flushHeartbeatWrites();
    expect(await t.ctx.store.listInstalled(device.id)).toMatchObject([{ version: '2.0.0', sha256: v2.sha256 }]);
    // The device's next heartbeat is compared with what the report stored, and written if it differs.
    await client.call('Heartbeat', { installed: [{ name: 'detector-late', kind: 'model', version: '1.0.0', sha256: 'e'.repeat(64), state: 'HEALTHY' }] });
    await t.server.flushHeartbeatWrites();
    expect(await t.ctx.store.listInstalled(device.id)).toMatchObject([{ version: '1.0.0' }]);
  });

  it('stores the set a heartbeat reports after a status report changed an entry, even when it equals the one before', async () => {
    const { client, device } = await registeredDevice('inst-2');
    const v1 = { name: 'detector-inst', kind: 'model', version: '1.0.0', sha256: 'd'.repeat(64), state: 'HEALTHY' };
    await client.call('Heartbeat', { installed: [v1] });
    await t.server.flushHeartbeatWrites();
    expect(await t.ctx.store.listInstalled(device.id)).toMatchObject([v1]);

    const { v2, assignmentId } = await assignVersion2('inst-2', 'detector-inst');
    await client.call('ReportArtifactStatus', { assignmentId, state: 'HEALTHY', sequence: 1, reason: 'probe ok', deviceTime: new Date().toISOString() });
    const afterReport = await t.ctx.store.listInstalled(device.id);
    expect(afterReport).toMatchObject([{ version: '2.0.0', sha256: v2.sha256 }]);

    // The device's next heartbeat lists what the report stored: nothing to write.
    await sleep(5);
    await client.call('Heartbeat', { installed: [{ name: 'detector-inst', kind: 'model', version: '2.0.0', sha256: v2.sha256, state: 'HEALTHY' }] });
    await t.server.flushHeartbeatWrites();
    expect(await t.ctx.store.listInstalled(device.id)).toEqual(afterReport);

    // The device went back to 1.0.0 on its own (say, a later rollback): it reports exactly the
    // set it reported before the status report. The stored set must follow it.
    await client.call('Heartbeat', { installed: [v1] });
    await t.server.flushHeartbeatWrites();
    expect(await t.ctx.store.listInstalled(device.id)).toMatchObject([v1]);
  });
});

describe.each(engines)('replaceInstalledSets on $name', (engine) => {
  it('writes each set whose stored digest is still the expected one, skips the others, and says which it wrote', async () => {
    const location = await engine.fresh();
    const store = await openStore(location);
    try {
      const now = '2026-12-04T10:00:00.000Z';
      const ids: string[] = [];
      for (const name of ['a', 'b', 'c']) ids.push((await store.ensureDevice({ spiffeId: `spiffe://t/lab/${name}`, fleet: 'lab', name, now })).device.id);
      const [a, b, c] = ids as [string, string, string];
      const old = [entry('1.0.0', '1'.repeat(64))];
      await store.replaceInstalled(b, old, now);
      await store.replaceInstalled(c, old, now);
      const fresh = [entry('2.0.0', '2'.repeat(64)), { name: 'labels', kind: 'model', version: '1', sha256: '3'.repeat(64), state: 'HEALTHY' }];
      const written = await store.replaceInstalledSets([
        // a: new rows start with the empty set's digest.
        { deviceId: a, installed: fresh, expectedDigest: installedDigest([]), at: now },
        // b: answered against the empty set, but something stored `old` since.
        { deviceId: b, installed: fresh, expectedDigest: installedDigest([]), at: now },
        // c: the device removed everything it had.
        { deviceId: c, installed: [], expectedDigest: installedDigest(old), at: now },
      ]);
      expect(written.sort()).toEqual([a, c].sort());
      expect(await store.listInstalled(a)).toMatchObject(fresh);
      expect((await store.getCallingDevice('spiffe://t/lab/a'))!.installedDigest).toBe(installedDigest(fresh));
      expect(await store.listInstalled(b)).toMatchObject(old);
      expect((await store.getCallingDevice('spiffe://t/lab/b'))!.installedDigest).toBe(installedDigest(old));
      expect(await store.listInstalled(c)).toEqual([]);
      expect((await store.getCallingDevice('spiffe://t/lab/c'))!.installedDigest).toBe(installedDigest([]));

      // A device row without a digest (one from before migration 5) takes a set expected as null.
      await engine.exec(location, `UPDATE devices SET installed_digest = NULL WHERE id = '${b}'`);
      expect(await store.replaceInstalledSets([{ deviceId: b, installed: [], expectedDigest: installedDigest(old), at: now }])).toEqual([]);
      expect(await store.replaceInstalledSets([{ deviceId: b, installed: [], expectedDigest: null, at: now }])).toEqual([b]);
      expect(await store.listInstalled(b)).toEqual([]);
      expect((await store.getCallingDevice('spiffe://t/lab/b'))!.installedDigest).toBe(installedDigest([]));
    } finally {
      await store.close();
    }
  });
});
