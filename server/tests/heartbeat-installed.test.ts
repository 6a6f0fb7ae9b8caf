// The installed set a heartbeat reports is stored only when it changed, told by the digest on
// the device row (migration 5) instead of reading the set back on every heartbeat.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/artifacts.js';
import { createAssignment } from '../src/assignments.js';
import { provision, REGISTER_REQUEST, startDeviceTestServer, tempDir, type DeviceTestServer } from './helpers.js';

let t: DeviceTestServer;

beforeAll(async () => {
  t = await startDeviceTestServer();
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

const entry = (version: string, sha256: string, state = 'HEALTHY') => ({ name: 'detector', kind: 'model', version, sha256, state });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('installed set on heartbeat', () => {
  it('writes a changed set at once and leaves an unchanged one untouched', async () => {
    const { client, device } = await registeredDevice('inst-1');
    const a = entry('1.0.0', 'a'.repeat(64));
    await client.call('Heartbeat', { installed: [a] });
    const first = await t.ctx.store.listInstalled(device.id);
    expect(first).toMatchObject([a]);

    await sleep(5);
    await client.call('Heartbeat', { installed: [a] });
    // Same rows, same updatedAt: the second heartbeat did not rewrite them.
    expect(await t.ctx.store.listInstalled(device.id)).toEqual(first);

    const b = entry('2.0.0', 'b'.repeat(64));
    const other = { name: 'labels', kind: 'model', version: '1', sha256: 'c'.repeat(64), state: 'HEALTHY' };
    await client.call('Heartbeat', { installed: [other, b] });
    expect(await t.ctx.store.listInstalled(device.id)).toMatchObject([b, other]);
    // The order a device lists its set in is not a change.
    const stored = await t.ctx.store.listInstalled(device.id);
    await sleep(5);
    await client.call('Heartbeat', { installed: [b, other] });
    expect(await t.ctx.store.listInstalled(device.id)).toEqual(stored);
  });

  it('stores the set a heartbeat reports after a status report changed an entry, even when it equals the one before', async () => {
    const { client, device } = await registeredDevice('inst-2');
    const file = path.join(tempDir(), 'detector-2');
    fs.writeFileSync(file, crypto.randomBytes(512));
    const v2 = await publishArtifact(t.ctx, { file, name: 'detector-inst', version: '2.0.0', kind: 'model', spec: { fileName: 'm.bin' } });
    const v1 = { name: 'detector-inst', kind: 'model', version: '1.0.0', sha256: 'd'.repeat(64), state: 'HEALTHY' };
    await client.call('Heartbeat', { installed: [v1] });

    const { assignmentId } = await createAssignment(t.ctx, {
      fleet: 'lab',
      device: 'inst-2',
      artifact: 'detector-inst',
      version: '2.0.0',
      probe: { type: 'file', spec: { path: '/run/ready' }, timeoutSeconds: 5, attempts: 1 },
    });
    await client.call('ReportArtifactStatus', { assignmentId, state: 'HEALTHY', sequence: 1, reason: 'probe ok', deviceTime: new Date().toISOString() });
    const afterReport = await t.ctx.store.listInstalled(device.id);
    expect(afterReport).toMatchObject([{ version: '2.0.0', sha256: v2.sha256 }]);

    // The device's next heartbeat lists what the report stored: nothing to write.
    await sleep(5);
    await client.call('Heartbeat', { installed: [{ name: 'detector-inst', kind: 'model', version: '2.0.0', sha256: v2.sha256, state: 'HEALTHY' }] });
    expect(await t.ctx.store.listInstalled(device.id)).toEqual(afterReport);

    // The device went back to 1.0.0 on its own (say, a later rollback): it reports exactly the
    // set it reported before the status report. The stored set must follow it.
    await client.call('Heartbeat', { installed: [v1] });
    expect(await t.ctx.store.listInstalled(device.id)).toMatchObject([v1]);
  });
});
