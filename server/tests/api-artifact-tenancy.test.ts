// Fleets as tenants of the artifact catalog, and withdrawal (issue 23), through the REST API
// on a real socket (multipart uploads with fetch), devices over real mTLS gRPC, and a TUF
// client as the agent runs it (pinned root, mTLS fetcher) reading the signed metadata.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Updater } from 'tuf-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAssignment } from '../src/fleet/assignments.js';
import { isMeshError } from '../src/errors.js';
import type { DeviceCredentials } from '../src/fleet/devices.js';
import { ALL_PERMISSIONS, closeDeviceClients, FILE_PROBE, key, simDevices, type SimDevice } from './api-helpers.js';
import { MtlsFetcher, provision, startTestServer, tempDir, type TestServer } from './helpers.js';

let t: TestServer;
let base: string;
let admin: string;
let keyA: string;
let keyB: string;
let devA: SimDevice;
let devB: SimDevice;
let tufDevice: DeviceCredentials;

beforeAll(async () => {
  t = await startTestServer({ apiListen: '127.0.0.1:0', consoleDir: null });
  base = t.server.apiUrl!;
  admin = await key(t.ctx, ALL_PERMISSIONS, { approve: true, name: 'tenancy-admin' });
  keyA = await key(t.ctx, ALL_PERMISSIONS, { fleet: 'fleet-a', name: 'fleet-a-operator' });
  keyB = await key(t.ctx, ALL_PERMISSIONS, { fleet: 'fleet-b', name: 'fleet-b-operator' });
  [devA] = (await simDevices(t, 'fleet-a', ['a-1'])) as [SimDevice];
  [devB] = (await simDevices(t, 'fleet-b', ['b-1'])) as [SimDevice];
  tufDevice = await provision(t.ctx, 'fleet-b', 'tuf-reader');
  for (const [k, fleet, device] of [
    [keyA, 'fleet-a', 'a-1'],
    [keyB, 'fleet-b', 'b-1'],
  ] as const) {
    expect((await api('POST', '/api/v1/groups', { key: k, body: { fleet, name: 'all', devices: [device] } })).status).toBe(201);
  }
});
afterAll(async () => {
  closeDeviceClients();
  await t.close();
});

async function api(method: string, urlPath: string, options: { key?: string; body?: unknown } = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(base + urlPath, {
    method,
    headers: { authorization: `Bearer ${options.key ?? admin}`, ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  return { status: res.status, json: await res.json() };
}

/** Publishes random bytes as a model through a multipart upload; `fleet` is sent only when given. */
async function publish(k: string, name: string, version: string, fleet?: string): Promise<{ status: number; json: any }> {
  const f = new FormData();
  f.append('name', name);
  f.append('version', version);
  f.append('kind', 'model');
  if (fleet !== undefined) f.append('fleet', fleet);
  f.append('file', new Blob([crypto.randomBytes(256)]), `${name}.bin`);
  const res = await fetch(`${base}/api/v1/artifacts`, { method: 'POST', headers: { authorization: `Bearer ${k}` }, body: f });
  return { status: res.status, json: await res.json() };
}

function rollout(k: string, fleet: string, name: string, version: string) {
  return api('POST', '/api/v1/rollouts', { key: k, body: { fleet, artifact: { name, version }, group: 'all', probe: FILE_PROBE } });
}

/** Rolls NAME@VERSION out to DEVICE's one-device group and has the device install it HEALTHY. */
async function install(k: string, device: SimDevice, name: string, version: string): Promise<string> {
  const created = await rollout(k, device.fleet, name, version);
  expect(created.status, JSON.stringify(created.json)).toBe(201);
  const id = created.json.id as string;
  const assignment = (await device.heartbeat()).assignments.find((a) => a.rolloutId === id);
  expect(assignment).toMatchObject({ name, version });
  await device.run(assignment!.assignmentId, 'HEALTHY');
  for (let i = 0; i < 100 && (await api('GET', `/api/v1/rollouts/${id}`, { key: k })).json.status !== 'completed'; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  expect((await api('GET', `/api/v1/rollouts/${id}`, { key: k })).json.status).toBe('completed');
  return id;
}

/** A fleet-B device's TUF client after a fresh refresh: what the signed metadata lists. */
async function signedTarget(targetPath: string) {
  const metadataDir = tempDir();
  fs.writeFileSync(path.join(metadataDir, 'root.json'), tufDevice.tufRootJson);
  const updater = new Updater({
    metadataDir,
    targetDir: tempDir(),
    metadataBaseUrl: `${t.server.artifactsUrl}/tuf/metadata`,
    targetBaseUrl: `${t.server.artifactsUrl}/tuf/targets`,
    fetcher: new MtlsFetcher(tufDevice),
  });
  await updater.refresh();
  return updater.getTargetInfo(targetPath);
}

/** After each hostile action: fleet B's device is still served a good artifact of its own and installs it. */
let goodVersion = 0;
async function fleetBStillInstalls(): Promise<void> {
  goodVersion += 1;
  const published = await publish(keyB, 'b-good', `${goodVersion}.0.0`);
  expect(published.status, JSON.stringify(published.json)).toBe(201);
  await install(keyB, devB, 'b-good', `${goodVersion}.0.0`);
  expect(await signedTarget(published.json.targetPath)).toMatchObject({ hashes: { sha256: published.json.sha256 } });
}

describe('artifacts as fleet tenants', () => {
  it("a fleet key publishes into its own fleet, and another fleet's key can neither see its artifacts nor publish into its names", async () => {
    const a = await publish(keyA, 'a-model', '1.0.0');
    expect(a.status).toBe(201);
    expect(a.json.fleet).toBe('fleet-a');

    // Fleet B meets fleet A's artifact as if it did not exist.
    expect((await api('GET', '/api/v1/artifacts/a-model/1.0.0', { key: keyB })).status).toBe(404);
    expect((await api('GET', '/api/v1/artifacts?name=a-model', { key: keyB })).json).toMatchObject({ items: [], total: 0 });
    expect((await api('GET', '/api/v1/artifacts/a-model/1.0.0', { key: keyA })).json).toMatchObject({ fleet: 'fleet-a', name: 'a-model' });
    expect((await api('GET', '/api/v1/artifacts?name=a-model', { key: admin })).json.total).toBe(1);

    // Publishing a new version into fleet A's name: taken (never whose, nor what it holds).
    const intoA = await publish(keyB, 'a-model', '2.0.0');
    expect(intoA.status).toBe(409);
    expect(intoA.json.error).toBe('artifact name "a-model" belongs to another fleet; names are unique across fleets: choose another name');
    expect(intoA.json.error).not.toContain('fleet-a');
    // Naming another fleet, or every fleet, needs a * key.
    const asA = await publish(keyB, 'b-sneaky', '1.0.0', 'fleet-a');
    expect([asA.status, asA.json.error]).toEqual([403, expect.stringContaining('this key is bound to fleet "fleet-b"')]);
    expect((await publish(keyB, 'b-sneaky', '1.0.0', '*')).status).toBe(403);
    expect((await api('GET', '/api/v1/artifacts?name=b-sneaky', { key: admin })).json.total).toBe(0);
    // Nothing of it was signed.
    expect(await signedTarget(`${a.json.targetPath.replace('1.0.0', '2.0.0')}`)).toBeUndefined();
    expect(await signedTarget(a.json.targetPath)).toBeDefined();
    await fleetBStillInstalls();
  });

  it('a * key publishes for every fleet (the default) or for a named one; every fleet sees and uses an all-fleet artifact', async () => {
    const shared = await publish(admin, 'shared-model', '1.0.0');
    expect([shared.status, shared.json.fleet]).toEqual([201, '*']);
    const forB = await publish(admin, 'b-by-admin', '1.0.0', 'fleet-b');
    expect([forB.status, forB.json.fleet]).toEqual([201, 'fleet-b']);
    expect((await publish(admin, 'bad-fleet', '1.0.0', 'Not A Fleet')).json.error).toMatch(/invalid artifact fleet "Not A Fleet"/);

    for (const k of [keyA, keyB]) {
      expect((await api('GET', '/api/v1/artifacts/shared-model/1.0.0', { key: k })).json.fleet).toBe('*');
    }
    expect((await api('GET', '/api/v1/artifacts?fleet=*', { key: keyA })).json.items.map((i: any) => i.name)).toEqual(['shared-model']);
    expect((await api('GET', '/api/v1/artifacts?fleet=fleet-b', { key: keyA })).json.total).toBe(0);
    // A fleet key may not add versions to an all-fleet name.
    const intoShared = await publish(keyA, 'shared-model', '2.0.0');
    expect([intoShared.status, intoShared.json.error]).toEqual([409, expect.stringContaining('belongs to every fleet (only a * key publishes its versions)')]);
    await install(keyA, devA, 'shared-model', '1.0.0');
    await fleetBStillInstalls();
  });

  it("refuses to assign a fleet-B artifact to a fleet-A device: 404 for fleet A's key, 409 naming both fleets for a * key, and on the CLI path", async () => {
    const b = await publish(keyB, 'b-only', '1.0.0');
    expect(b.status).toBe(201);
    expect(await rollout(keyA, 'fleet-a', 'b-only', '1.0.0')).toMatchObject({ status: 404, json: { error: 'no artifact b-only@1.0.0', code: 'MESH_ERR_ARTIFACT_NOT_FOUND' } });
    expect(await rollout(admin, 'fleet-a', 'b-only', '1.0.0')).toMatchObject({
      status: 409,
      json: { error: 'artifact b-only@1.0.0 belongs to fleet "fleet-b": devices of fleet "fleet-a" may not use it', code: 'MESH_ERR_ARTIFACT_FLEET_MISMATCH' },
    });
    const err = await createAssignment(t.ctx, { fleet: 'fleet-a', device: 'a-1', artifact: 'b-only', version: '1.0.0', probe: FILE_PROBE }).catch((e: unknown) => e);
    expect(isMeshError(err, 'MESH_ERR_ARTIFACT_FLEET_MISMATCH')).toBe(true);
    // Nothing reached the device.
    expect((await devA.heartbeat()).assignments.map((a) => a.name)).not.toContain('b-only');
    await fleetBStillInstalls();
  });
});

describe('withdrawing an artifact version', () => {
  it('is refused while a rollout or a device holds it, then takes it out of the signed targets, audited', async () => {
    const v1 = await publish(keyA, 'a-app', '1.0.0');
    expect(v1.status).toBe(201);
    expect(await signedTarget(v1.json.targetPath)).toBeDefined();

    // Held by a running rollout (and the device it assigned).
    const running = await rollout(keyA, 'fleet-a', 'a-app', '1.0.0');
    expect(running.status).toBe(201);
    const held = await api('DELETE', '/api/v1/artifacts/a-app/1.0.0', { key: keyA });
    expect(held.status).toBe(409);
    expect(held.json.error).toBe(
      `artifact a-app@1.0.0 is still held by rollout ${running.json.id} (running), device fleet-a/a-1 (assigned): finish or abort the rollouts and move the devices to another version first`,
    );
    const assignment = (await devA.heartbeat()).assignments.find((a) => a.rolloutId === running.json.id)!;
    await devA.run(assignment.assignmentId, 'HEALTHY');
    // The rollout is over, but the device runs it.
    await new Promise((r) => setTimeout(r, 200));
    expect((await api('DELETE', '/api/v1/artifacts/a-app/1.0.0', { key: keyA })).json.error).toContain('device fleet-a/a-1 (assigned), device fleet-a/a-1 (installed)');

    // Another fleet's key: not found; the untouched version is still signed.
    expect((await api('DELETE', '/api/v1/artifacts/a-app/1.0.0', { key: keyB })).status).toBe(404);
    await fleetBStillInstalls();

    // The device moves on to 2.0.0: nothing holds 1.0.0 any more.
    expect((await publish(keyA, 'a-app', '2.0.0')).status).toBe(201);
    await install(keyA, devA, 'a-app', '2.0.0');
    const withdrawn = await api('DELETE', '/api/v1/artifacts/a-app/1.0.0', { key: keyA });
    expect(withdrawn.status, JSON.stringify(withdrawn.json)).toBe(200);
    expect(withdrawn.json).toMatchObject({ name: 'a-app', version: '1.0.0', fleet: 'fleet-a', targetPath: v1.json.targetPath });

    // Gone from the signed metadata a device reads, from the catalog, and from the artifact server.
    expect(await signedTarget(v1.json.targetPath)).toBeUndefined();
    expect((await api('GET', '/api/v1/artifacts/a-app/1.0.0', { key: keyA })).status).toBe(404);
    expect((await api('GET', '/api/v1/artifacts?name=a-app', { key: keyA })).json.items.map((i: any) => i.version)).toEqual(['2.0.0']);
    expect((await api('DELETE', '/api/v1/artifacts/a-app/1.0.0', { key: keyA })).status).toBe(404);
    // A version is never reused, and a withdrawn one cannot be assigned.
    const again = await publish(keyA, 'a-app', '1.0.0');
    expect([again.status, again.json.error]).toEqual([409, expect.stringMatching(/^artifact a-app@1\.0\.0 was withdrawn at .*; a version is never reused/)]);
    expect((await rollout(admin, 'fleet-a', 'a-app', '1.0.0')).status).toBe(404);

    const audit = await api('GET', '/api/v1/audit?limit=200', { key: admin });
    expect(audit.json.items.filter((e: any) => e.action === 'artifact.withdrawn')).toEqual([
      expect.objectContaining({
        actor: 'fleet-a-operator',
        subject: 'artifact:a-app@1.0.0',
        details: expect.objectContaining({ fleet: 'fleet-a', targetPath: v1.json.targetPath }),
      }),
    ]);
    expect((await api('GET', '/api/v1/audit/verify', { key: admin })).json.verified).toBe(true);
    await fleetBStillInstalls();
  });

  it('an all-fleet artifact is withdrawn only with a * key', async () => {
    expect((await publish(admin, 'shared-tool', '1.0.0')).status).toBe(201);
    const refused = await api('DELETE', '/api/v1/artifacts/shared-tool/1.0.0', { key: keyA });
    expect([refused.status, refused.json.error]).toEqual([403, expect.stringContaining('belongs to every fleet: only a * key withdraws it')]);
    expect((await api('DELETE', '/api/v1/artifacts/shared-tool/1.0.0', { key: admin })).status).toBe(200);
    await fleetBStillInstalls();
  });
});
