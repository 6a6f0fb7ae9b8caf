// Heartbeat answers kept in memory (heartbeat-cache.ts), through real gRPC over mTLS on both
// engines: unchanged heartbeats are answered without the database, and a change made by
// another handle on the database (a CLI process; on PostgreSQL, as another replica would)
// reaches the very next heartbeat on SQLite, and within PostgreSQL's notification delay there.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/catalog/publish.js';
import { createAssignment } from '../src/fleet/assignments.js';
import { testEngines } from './engines.js';
import { provision, REGISTER_REQUEST, startDeviceTestServer, tempDir, type DeviceTestServer } from './helpers.js';

const { engines } = await testEngines();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface HeartbeatAnswer {
  assignments: Array<{ assignmentId: string; name: string; version: string; expectedSha256: string }>;
  logRequests: unknown[];
  offboarded: boolean;
}

describe.each(engines)('heartbeat answers kept in memory on $name', (engine) => {
  let t: DeviceTestServer;

  beforeAll(async () => {
    t = await startDeviceTestServer({
      apiListen: '127.0.0.1:0',
      ...(engine.name === 'postgres' ? { databaseUrl: await engine.fresh() } : {}),
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  async function lookups(): Promise<Record<string, number>> {
    const text = await (await fetch(`${t.server.apiUrl}/metrics`)).text();
    const counts: Record<string, number> = {};
    for (const m of text.matchAll(/^meshanics_heartbeat_cache_lookups_total\{result="(\w+)"\} (\d+)$/gm)) counts[m[1]!] = Number(m[2]);
    return counts;
  }

  /** Heartbeats that listed an installed set other than the stored one (the server's own count). */
  async function changedSets(): Promise<number> {
    const text = await (await fetch(`${t.server.apiUrl}/metrics`)).text();
    return [...text.matchAll(/^meshanics_heartbeat_seconds_count\{answer="\w+",installed="changed"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  }

  async function registered(name: string) {
    const creds = await provision(t.ctx, 'lab', name);
    const client = t.client(creds);
    await client.call('Register', { ...REGISTER_REQUEST, capabilities: [{ kind: 'ARTIFACT', name: 'model', version: '0.1.0' }] });
    return client;
  }

  /** Publishes a new model and assigns it to the device (outside any rollout). */
  async function assignNewModel(device: string, name: string): Promise<void> {
    const file = path.join(tempDir(), `${name}.bin`);
    fs.writeFileSync(file, crypto.randomBytes(256));
    await publishArtifact(t.ctx, { file, name, version: '1.0.0', kind: 'model', spec: { fileName: 'm.bin' } });
    await createAssignment(t.ctx, {
      fleet: 'lab',
      device,
      artifact: name,
      version: '1.0.0',
      probe: { type: 'file', spec: { path: '/run/ready' }, timeoutSeconds: 5, attempts: 1 },
    });
  }

  /**
   * The first answer that passes `check`. SQLite: the very next heartbeat must (the feed reads
   * the change log on every lookup). PostgreSQL: another handle's write arrives by NOTIFY,
   * asynchronously, so a few heartbeats may come first.
   */
  async function nextAnswer(client: ReturnType<DeviceTestServer['client']>, check: (a: HeartbeatAnswer) => boolean): Promise<HeartbeatAnswer> {
    const deadline = Date.now() + (engine.name === 'sqlite' ? 0 : 3000);
    for (;;) {
      const answer = await client.call<HeartbeatAnswer>('Heartbeat', { installed: [] });
      if (check(answer) || Date.now() >= deadline) return answer;
      await sleep(10);
    }
  }

  it('answers unchanged heartbeats from memory and a new assignment at once', async () => {
    const client = await registered('cache-1');
    const before = await lookups();
    for (let i = 0; i < 5; i++) expect((await client.call<HeartbeatAnswer>('Heartbeat', { installed: [] })).assignments).toEqual([]);
    const after = await lookups();
    // The first reads the database and keeps the answer; the next four use it.
    expect((after.hit ?? 0) - (before.hit ?? 0)).toBeGreaterThanOrEqual(4);
    expect((after.miss ?? 0) - (before.miss ?? 0)).toBeLessThanOrEqual(1);
    if (engine.name === 'postgres') {
      // The waits for a pooled connection are timed on their own: the heartbeats' reads on the
      // readers' pool, registration's writes on the writers'.
      const text = await (await fetch(`${t.server.apiUrl}/metrics`)).text();
      expect(text).toMatch(/^meshanics_database_seconds_count\{operation="read_pool_wait"\} [1-9]\d*$/m);
      expect(text).toMatch(/^meshanics_database_seconds_count\{operation="pool_wait"\} [1-9]\d*$/m);
    }

    await assignNewModel('cache-1', 'cached-model');
    const answer = await nextAnswer(client, (a) => a.assignments.length > 0);
    expect(answer.assignments).toMatchObject([{ name: 'cached-model', version: '1.0.0' }]);
    // And it stays: the new answer is what is kept now.
    expect((await client.call<HeartbeatAnswer>('Heartbeat', { installed: [] })).assignments).toMatchObject([{ name: 'cached-model' }]);
  });

  it('keeps the answer across status reports that only move an assignment along, and drops it when the install lands', async () => {
    const client = await registered('cache-5');
    await assignNewModel('cache-5', 'moving-model');
    const given = (await nextAnswer(client, (a) => a.assignments.length > 0)).assignments[0]!;
    const { assignmentId } = given;
    const report = (sequence: number, state: string) =>
      client.call('ReportArtifactStatus', { assignmentId, state, sequence, reason: '', bytesDone: 0, bytesTotal: 256, deviceTime: new Date().toISOString() });
    // Outside a halted rollout leaving PENDING changes no answer either; the first heartbeats
    // after the new assignment may still read the database (PostgreSQL: until its notification
    // is in), then the answer is kept.
    expect(await report(1, 'DOWNLOADING')).toEqual({ accepted: true });
    const deadline = Date.now() + 3000;
    for (;;) {
      const before = await lookups();
      await client.call('Heartbeat', { installed: [] });
      if ((await lookups()).hit !== before.hit || Date.now() > deadline) break;
      await sleep(10);
    }
    for (const [sequence, state] of [
      [2, 'DOWNLOADING'],
      [3, 'VERIFYING'],
      [4, 'APPLYING'],
    ] as const) {
      expect(await report(sequence, state)).toEqual({ accepted: true });
      // A report's transaction announces nothing: on PostgreSQL too, no fence holds this device back.
      const before = await lookups();
      expect((await client.call<HeartbeatAnswer>('Heartbeat', { installed: [] })).assignments).toMatchObject([{ name: 'moving-model' }]);
      const after = await lookups();
      expect({ state, hits: (after.hit ?? 0) - (before.hit ?? 0) }).toEqual({ state, hits: 1 });
    }
    // HEALTHY writes the installed set and its digest on the device row: the answer is read again.
    expect(await report(5, 'HEALTHY')).toEqual({ accepted: true });
    const before = await lookups();
    await client.call('Heartbeat', { installed: [{ name: 'moving-model', kind: 'model', version: '1.0.0', sha256: given.expectedSha256, state: 'HEALTHY' }] });
    const after = await lookups();
    expect((after.hit ?? 0) - (before.hit ?? 0)).toBe(0);
  });

  it('tells a device decommissioned after its answer was kept that it is offboarded', async () => {
    const client = await registered('cache-2');
    await client.call('Heartbeat', { installed: [] });
    await client.call('Heartbeat', { installed: [] });
    const device = (await t.ctx.store.getDeviceByName('lab', 'cache-2'))!;
    await t.ctx.store.decommissionDevice(device.id, new Date().toISOString());
    expect((await nextAnswer(client, (a) => a.offboarded)).offboarded).toBe(true);
  });

  it('hands out a log request made after the answer was kept', async () => {
    const client = await registered('cache-3');
    await client.call('Heartbeat', { installed: [] });
    const device = (await t.ctx.store.getDeviceByName('lab', 'cache-3'))!;
    await t.ctx.store.logRequests.insert({
      id: 'lr-cache-3',
      deviceId: device.id,
      since: null,
      until: null,
      maxBytes: 4096,
      requestedAt: new Date().toISOString(),
      requestedBy: 'test',
      fulfilledAt: null,
      sizeBytes: null,
      sha256: null,
    });
    expect((await nextAnswer(client, (a) => a.logRequests.length > 0)).logRequests).toMatchObject([{ logRequestId: 'lr-cache-3', maxBytes: 4096 }]);
  });

  it('writes a changed installed set once, then answers from memory with the digest it wrote', async () => {
    const client = await registered('cache-4');
    const installed = [{ name: 'detector', kind: 'model', version: '1.0.0', sha256: 'a'.repeat(64), state: 'HEALTHY' }];
    await client.call('Heartbeat', { installed });
    await t.server.flushHeartbeatWrites();
    const device = (await t.ctx.store.getDeviceByName('lab', 'cache-4'))!;
    const stored = await t.ctx.store.listInstalled(device.id);
    expect(stored).toMatchObject(installed);
    // Until the write's notification is in (PostgreSQL), heartbeats read the database; then
    // the kept answer carries the new digest, so nothing is written again.
    await sleep(50);
    const before = await lookups();
    const changedBefore = await changedSets();
    for (let i = 0; i < 3; i++) await client.call('Heartbeat', { installed });
    const after = await lookups();
    expect((after.hit ?? 0) - (before.hit ?? 0)).toBeGreaterThanOrEqual(2);
    // A kept answer with the old digest would find each of them changed and queue the set again.
    expect(await changedSets()).toBe(changedBefore);
    await t.server.flushHeartbeatWrites();
    expect(await t.ctx.store.listInstalled(device.id)).toEqual(stored);
  });
});

describe('heartbeat answers with the cache turned off', () => {
  let t: DeviceTestServer;
  beforeAll(async () => {
    t = await startDeviceTestServer({ apiListen: '127.0.0.1:0', heartbeatCache: false });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('reads the database for every heartbeat and counts no lookups', async () => {
    const creds = await provision(t.ctx, 'lab', 'nocache-1');
    const client = t.client(creds);
    await client.call('Register', REGISTER_REQUEST);
    for (let i = 0; i < 3; i++) await client.call('Heartbeat', { installed: [] });
    const text = await (await fetch(`${t.server.apiUrl}/metrics`)).text();
    expect(text).not.toMatch(/^meshanics_heartbeat_cache_lookups_total\{/m);
  });
});
