// Groups, rollouts and the audit trail through the REST API (`inject`) against a real server:
// simulated devices report over real mTLS gRPC, and those reports drive the rollout engine.
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../src/api/app.js';
import { ALL_PERMISSIONS, call, closeDeviceClients, FILE_PROBE, key, publishModel, simDevices, type SimDevice } from './api-helpers.js';
import { startTestServer, type TestServer } from './helpers.js';

let t: TestServer;
let app: FastifyInstance;
let admin: string;
let operator: string;
let approver: string;
let otherFleet: string;

beforeAll(async () => {
  t = await startTestServer();
  app = buildApi(t.ctx, { consoleDir: null });
  await app.ready();
  admin = await key(t.ctx, ALL_PERMISSIONS, { approve: true, name: 'api-admin' });
  // Can start and abort rollouts, but not approve or resume them.
  operator = await key(t.ctx, ['rollouts.manage', 'devices.write'], { fleet: 'lab', name: 'api-operator' });
  approver = await key(t.ctx, ['rollouts.read'], { fleet: 'lab', approve: true, name: 'api-approver' });
  otherFleet = await key(t.ctx, ALL_PERMISSIONS, { fleet: 'other', approve: true, name: 'other-admin' });
});
afterAll(async () => {
  closeDeviceClients();
  await app.close();
  await t.close();
});

function byName(sims: SimDevice[]): Map<string, SimDevice> {
  return new Map(sims.map((s) => [s.name, s]));
}

async function assignmentOf(device: SimDevice, rolloutId: string): Promise<string | undefined> {
  return (await device.heartbeat()).assignments.find((a) => a.rolloutId === rolloutId)?.assignmentId;
}

describe('groups', () => {
  it('creates a group (201) returning names that do not resolve, lists and shows it, replaces its devices; a duplicate is a 409', async () => {
    await simDevices(t, 'lab', ['grp-1', 'grp-2']);
    const created = await call(app, 'POST', '/api/v1/groups', { key: operator, body: { fleet: 'lab', name: 'canary', devices: ['grp-1', 'ghost', 'grp-2'] } });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ fleet: 'lab', name: 'canary', devices: ['grp-1', 'grp-2'], unresolved: ['ghost'] });

    const dup = await call(app, 'POST', '/api/v1/groups', { key: operator, body: { fleet: 'lab', name: 'canary', devices: [] } });
    expect(dup).toMatchObject({ status: 409, json: { error: 'group "canary" already exists in fleet lab', code: 'MESH_ERR_GROUP_CONFLICT' } });

    expect((await call(app, 'GET', '/api/v1/groups/lab/canary', { key: admin })).json).toMatchObject({ devices: ['grp-1', 'grp-2'], unresolved: ['ghost'] });
    const listed = await call(app, 'GET', '/api/v1/groups?fleet=lab', { key: admin });
    expect(listed.json).toMatchObject({ total: 1, limit: 50, offset: 0, items: [{ name: 'canary' }] });

    const replaced = await call(app, 'PUT', '/api/v1/groups/lab/canary', { key: operator, body: { devices: ['grp-2'] } });
    expect(replaced.json).toMatchObject({ devices: ['grp-2'], unresolved: [] });
    expect((await t.ctx.store.listAudit({ subject: 'group:lab/canary' })).map((e) => [e.action, e.actor])).toEqual([
      ['group.created', 'api-operator'],
      ['group.devices_set', 'api-operator'],
    ]);
  });

  it("keeps another fleet's groups out of reach (404) and validates names (400)", async () => {
    expect((await call(app, 'GET', '/api/v1/groups/lab/canary', { key: otherFleet })).status).toBe(404);
    expect((await call(app, 'PUT', '/api/v1/groups/lab/canary', { key: otherFleet, body: { devices: [] } })).status).toBe(404);
    expect(await call(app, 'POST', '/api/v1/groups', { key: otherFleet, body: { fleet: 'lab', name: 'x', devices: [] } })).toMatchObject({
      status: 404,
      json: { error: 'no fleet lab', code: 'MESH_ERR_API_NOT_FOUND' },
    });
    expect((await call(app, 'GET', '/api/v1/groups', { key: otherFleet })).json.items).toEqual([]);
    expect((await call(app, 'GET', '/api/v1/groups/lab/missing', { key: admin })).status).toBe(404);
    expect((await call(app, 'POST', '/api/v1/groups', { key: admin, body: { fleet: 'lab', name: 'Bad Name', devices: [] } })).json.error).toMatch(/^body\/name must match pattern/);
    expect(await call(app, 'POST', '/api/v1/groups', { key: admin, body: { fleet: 'lab', name: 'x' } })).toMatchObject({
      status: 400,
      json: { error: 'body/devices is required', code: 'MESH_ERR_API_INVALID' },
    });
  });
});

describe('groups at fleet scale', () => {
  it('takes more than the old cap of 10,000 names and refuses more than 100,000 naming the rule; a rollout reaches the names that resolve', async () => {
    await simDevices(t, 'lab', ['big-1', 'big-2']);
    await publishModel(t.ctx, 'fleetwide', '1.0.0');
    const ghosts = Array.from({ length: 12_000 }, (_, i) => `ghost-${i}`);
    // The store takes 2,000 names per statement: big-2 is the first name of the second chunk.
    const names = ['big-1', ...ghosts.slice(0, 1999), 'big-2', ...ghosts.slice(1999)];
    const created = await call(app, 'POST', '/api/v1/groups', { key: operator, body: { fleet: 'lab', name: 'large', devices: names } });
    expect(created.status).toBe(201);
    expect(created.json.devices).toEqual(['big-1', 'big-2']);
    expect(created.json.unresolved).toEqual(ghosts);
    // Read back from the database: every member, in the order given.
    expect((await call(app, 'GET', '/api/v1/groups/lab/large', { key: admin })).json).toMatchObject({ devices: ['big-1', 'big-2'], unresolved: ghosts });

    const tooMany = await call(app, 'POST', '/api/v1/groups', {
      key: operator,
      body: { fleet: 'lab', name: 'too-large', devices: Array.from({ length: 100_001 }, (_, i) => `n${i}`) },
    });
    expect(tooMany).toMatchObject({ status: 400, json: { error: 'body/devices must NOT have more than 100000 items', code: 'MESH_ERR_API_INVALID' } });
    expect((await call(app, 'GET', '/api/v1/groups/lab/too-large', { key: admin })).status).toBe(404);

    const rollout = await call(app, 'POST', '/api/v1/rollouts', {
      key: operator,
      body: { fleet: 'lab', artifact: { name: 'fleetwide', version: '1.0.0' }, group: 'large', probe: FILE_PROBE },
    });
    expect(rollout.status).toBe(201);
    expect(rollout.json.devices.map((d: { name: string }) => d.name).sort()).toEqual(['big-1', 'big-2']);

    // Refusals name ten devices and count the rest instead of listing 12,000 names.
    await call(app, 'POST', '/api/v1/groups', { key: operator, body: { fleet: 'lab', name: 'only-ghosts', devices: ghosts } });
    const none = await call(app, 'POST', '/api/v1/rollouts', {
      key: operator,
      body: { fleet: 'lab', artifact: { name: 'fleetwide', version: '1.0.0' }, group: 'only-ghosts', probe: FILE_PROBE },
    });
    expect(none.json.error).toBe(`group "only-ghosts" resolves to no device of fleet lab (unresolved: ${ghosts.slice(0, 10).join(', ')}, and 11990 more)`);
    const busy = await call(app, 'POST', '/api/v1/rollouts', {
      key: operator,
      body: { fleet: 'lab', artifact: { name: 'fleetwide', version: '1.0.0' }, group: 'large', probe: FILE_PROBE },
    });
    expect(busy).toMatchObject({
      status: 409,
      json: { error: `device(s) big-1, big-2 already in an active rollout of "fleetwide" (${rollout.json.id})`, code: 'MESH_ERR_ROLLOUT_DEVICE_BUSY' },
    });
  });
});

describe('rollouts', () => {
  it('creates a rollout (201) answering the full detail', async () => {
    const sims = await simDevices(t, 'lab', ['det-1', 'det-2', 'det-3', 'det-4']);
    await publishModel(t.ctx, 'detector', '2.0.0');
    await call(app, 'POST', '/api/v1/groups', { key: operator, body: { fleet: 'lab', name: 'detail', devices: sims.map((s) => s.name) } });
    const strategy = {
      waves: [
        { percent: 25, approval: 'auto' },
        { percent: 100, approval: 'manual' },
      ],
      max_failure_rate: 0.05,
    };
    const res = await call(app, 'POST', '/api/v1/rollouts', {
      key: operator,
      body: { fleet: 'lab', artifact: { name: 'detector', version: '2.0.0' }, group: 'detail', probe: FILE_PROBE, strategy },
    });
    expect(res.status).toBe(201);
    const d = res.json;
    expect(d).toMatchObject({
      id: expect.any(String),
      fleet: 'lab',
      status: 'running',
      artifact: { name: 'detector', version: '2.0.0', kind: 'model' },
      group: 'detail',
      probe: FILE_PROBE,
      strategy,
      currentWave: 0,
      halt: null,
      abortPolicy: null,
      counts: { PENDING: 4, DOWNLOADING: 0, VERIFYING: 0, APPLYING: 0, HEALTHY: 0, ROLLED_BACK: 0, FAILED: 0 },
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    expect(d.waves).toEqual([
      expect.objectContaining({ index: 0, percent: 25, approval: 'auto', status: 'active', devices: 1, counts: expect.objectContaining({ PENDING: 1 }) }),
      expect.objectContaining({ index: 1, percent: 100, approval: 'manual', status: 'pending', devices: 3 }),
    ]);
    expect(d.devices).toHaveLength(4);
    for (const dev of d.devices) expect(dev).toEqual(expect.objectContaining({ name: expect.any(String), wave: expect.any(Number), state: 'PENDING', reason: expect.any(String) }));
    expect(d.devices.filter((x: any) => x.assignedAt !== null)).toHaveLength(1);

    const shown = await call(app, 'GET', `/api/v1/rollouts/${d.id}`, { key: approver });
    expect(shown.json).toEqual(d);
    const listed = await call(app, 'GET', '/api/v1/rollouts?status=running', { key: admin });
    expect(listed.json).toMatchObject({ limit: 50, offset: 0 });
    expect(listed.json.items.map((r: any) => r.id)).toContain(d.id);
    expect(listed.json.items[0]).not.toHaveProperty('devices');

    // A device already in this artifact's active rollout cannot join another one.
    await call(app, 'POST', '/api/v1/groups', { key: operator, body: { fleet: 'lab', name: 'overlap', devices: ['det-1'] } });
    const busy = await call(app, 'POST', '/api/v1/rollouts', {
      key: operator,
      body: { fleet: 'lab', artifact: { name: 'detector', version: '2.0.0' }, group: 'overlap', probe: FILE_PROBE },
    });
    expect(busy.status).toBe(409);
    expect(busy.json.error).toContain('det-1');
  });

  it('validates the body naming the path and the rule: probe bounds and spec (plugin schema), strategy, unknown fields', async () => {
    const body = (over: Record<string, unknown>) => ({ fleet: 'lab', artifact: { name: 'detector', version: '2.0.0' }, group: 'detail', probe: FILE_PROBE, ...over });
    const post = (b: unknown) => call(app, 'POST', '/api/v1/rollouts', { key: operator, body: b });
    expect(await post(body({ probe: { ...FILE_PROBE, timeoutSeconds: 301 } }))).toMatchObject({
      status: 400,
      json: { error: 'body/probe/timeoutSeconds must be <= 300', code: 'MESH_ERR_API_INVALID' },
    });
    expect(await post(body({ probe: { type: 'file', spec: {} } }))).toMatchObject({
      status: 400,
      json: { error: 'body/probe/spec/path is required', code: 'MESH_ERR_API_INVALID' },
    });
    expect((await post(body({ probe: { type: 'exec', spec: { argv: ['relative/bin'] } } }))).json.error).toMatch(/^body\/probe\/spec\/argv\/0 must match pattern "\^\/"/);
    expect((await post(body({ probe: { type: 'carrier-pigeon', spec: {} } }))).json.error).toMatch(/^body\/probe\/type must be one of "exec", "file", "http"/);
    expect(await post(body({ strategy: { waves: [{ percent: 50 }, { percent: 40 }, { percent: 100 }] } }))).toMatchObject({
      status: 400,
      json: { error: expect.stringMatching(/^body\/strategy\/waves\/1\/percent must be greater than the previous wave's 50/) },
    });
    expect(await post(body({ strategy: { waves: [{ percent: 50 }] } }))).toMatchObject({
      status: 400,
      json: { error: 'body/strategy/waves/0/percent must be 100 (the last wave covers every device)', code: 'MESH_ERR_API_INVALID' },
    });
    expect(await post(body({ strategy: { max_failure_rate: 1 } }))).toMatchObject({
      status: 400,
      json: { error: 'body/strategy/max_failure_rate must be < 1', code: 'MESH_ERR_API_INVALID' },
    });
    expect(await post(body({ surprise: true }))).toMatchObject({ status: 400, json: { error: 'body must NOT have additional property "surprise"', code: 'MESH_ERR_API_INVALID' } });
    expect(await post(body({ group: 'nope' }))).toMatchObject({ status: 404 });
    expect(await post(body({ fleet: 'other' }))).toMatchObject({ status: 404, json: { error: 'no fleet other', code: 'MESH_ERR_API_NOT_FOUND' } });
  });

  it('approve needs the approve right (403 otherwise); it starts the manual wave once the rollout waits for it', async () => {
    const sims = await simDevices(t, 'lab', ['man-1', 'man-2', 'man-3', 'man-4']);
    await publishModel(t.ctx, 'manual-model', '1.0.0');
    await call(app, 'POST', '/api/v1/groups', { key: operator, body: { fleet: 'lab', name: 'manual', devices: sims.map((s) => s.name) } });
    const created = await call(app, 'POST', '/api/v1/rollouts', {
      key: operator,
      body: {
        fleet: 'lab',
        artifact: { name: 'manual-model', version: '1.0.0' },
        group: 'manual',
        probe: FILE_PROBE,
        strategy: { waves: [{ percent: 25 }, { percent: 100, approval: 'manual' }] },
      },
    });
    const id = created.json.id as string;
    expect(await call(app, 'POST', `/api/v1/rollouts/${id}/approve`, { key: operator })).toMatchObject({
      status: 403,
      json: { error: 'missing permission: approve', code: 'MESH_ERR_API_FORBIDDEN' },
    });
    // Not waiting yet: a conflict, not a silent success.
    expect((await call(app, 'POST', `/api/v1/rollouts/${id}/approve`, { key: approver })).status).toBe(409);

    const devices = byName(sims);
    const first = created.json.devices.find((d: any) => d.wave === 0).name as string;
    await devices.get(first)!.run((await assignmentOf(devices.get(first)!, id))!, 'HEALTHY');
    expect((await call(app, 'GET', `/api/v1/rollouts/${id}`, { key: approver })).json).toMatchObject({ status: 'waiting_approval' });

    expect((await call(app, 'POST', `/api/v1/rollouts/${id}/approve`, { key: otherFleet })).status).toBe(404);
    const approved = await call(app, 'POST', `/api/v1/rollouts/${id}/approve`, { key: approver, headers: { 'content-type': 'application/json' } });
    expect(approved.status).toBe(200);
    expect(approved.json).toMatchObject({ status: 'running', currentWave: 1 });
    expect(approved.json.waves[1]).toMatchObject({ status: 'active', startedBy: 'api-approver' });
    expect(await t.ctx.store.listAudit({ subject: `rollout:${id}`, action: 'rollout.approved' })).toMatchObject([{ actor: 'api-approver' }]);
  });

  it('a failure halts the rollout; resume needs the approve right and acknowledges the failures seen so far', async () => {
    const sims = await simDevices(t, 'lab', ['halt-1', 'halt-2', 'halt-3']);
    await publishModel(t.ctx, 'halt-model', '1.0.0');
    await call(app, 'POST', '/api/v1/groups', { key: operator, body: { fleet: 'lab', name: 'halt', devices: sims.map((s) => s.name) } });
    const id = (
      await call(app, 'POST', '/api/v1/rollouts', {
        key: operator,
        body: { fleet: 'lab', artifact: { name: 'halt-model', version: '1.0.0' }, group: 'halt', probe: FILE_PROBE },
      })
    ).json.id as string;
    await sims[0]!.run((await assignmentOf(sims[0]!, id))!, 'FAILED');
    const halted = (await call(app, 'GET', `/api/v1/rollouts/${id}`, { key: admin })).json;
    expect(halted).toMatchObject({ status: 'halted', halt: { wave: 0, failures: 1, tolerance: 0 } });

    expect(await call(app, 'POST', `/api/v1/rollouts/${id}/resume`, { key: operator })).toMatchObject({
      status: 403,
      json: { error: 'missing permission: approve', code: 'MESH_ERR_API_FORBIDDEN' },
    });
    const resumed = await call(app, 'POST', `/api/v1/rollouts/${id}/resume`, { key: approver });
    expect(resumed.json).toMatchObject({ status: 'running', halt: null, acknowledgedFailures: 1 });
    expect((await call(app, 'POST', `/api/v1/rollouts/${id}/resume`, { key: approver })).status).toBe(409);
  });

  it('abort needs rollouts.manage, validates its body, and reverts or keeps', async () => {
    const sims = await simDevices(t, 'lab', ['ab-1', 'ab-2']);
    await publishModel(t.ctx, 'abort-model', '1.0.0');
    await call(app, 'POST', '/api/v1/groups', { key: operator, body: { fleet: 'lab', name: 'abort', devices: sims.map((s) => s.name) } });
    const id = (
      await call(app, 'POST', '/api/v1/rollouts', {
        key: operator,
        body: { fleet: 'lab', artifact: { name: 'abort-model', version: '1.0.0' }, group: 'abort', probe: FILE_PROBE },
      })
    ).json.id as string;
    expect(await call(app, 'POST', `/api/v1/rollouts/${id}/abort`, { key: approver, body: { policy: 'keep' } })).toMatchObject({
      status: 403,
      json: { error: 'missing permission: rollouts.manage', code: 'MESH_ERR_API_FORBIDDEN' },
    });
    expect(await call(app, 'POST', `/api/v1/rollouts/${id}/abort`, { key: operator, body: { policy: 'rewind' } })).toMatchObject({
      status: 400,
      json: { error: 'body/policy must be one of "keep", "revert"', code: 'MESH_ERR_API_INVALID' },
    });
    expect(await call(app, 'POST', `/api/v1/rollouts/${id}/abort`, { key: operator, body: { policy: 'keep', force: true } })).toMatchObject({
      status: 400,
      json: { error: 'body must NOT have additional property "force"', code: 'MESH_ERR_API_INVALID' },
    });
    expect((await call(app, 'POST', `/api/v1/rollouts/${id}/abort`, { key: otherFleet, body: { policy: 'keep' } })).status).toBe(404);
    const aborted = await call(app, 'POST', `/api/v1/rollouts/${id}/abort`, { key: operator, body: { policy: 'revert' } });
    expect(aborted.status).toBe(200);
    expect(aborted.json).toMatchObject({ status: 'aborted', abortPolicy: 'revert' });
    expect((await call(app, 'POST', `/api/v1/rollouts/${id}/abort`, { key: operator })).status).toBe(409);
  });

  it("pages a rollout's devices in plan order, by wave and by state, and gives its summary without them", async () => {
    const sims = await simDevices(t, 'lab', ['pg-1', 'pg-2', 'pg-3', 'pg-4', 'pg-5', 'pg-6', 'pg-7']);
    await publishModel(t.ctx, 'paged', '1.0.0');
    await call(app, 'POST', '/api/v1/groups', { key: operator, body: { fleet: 'lab', name: 'paged', devices: sims.map((s) => s.name) } });
    const strategy = { waves: [{ percent: 50 }, { percent: 100, approval: 'manual' }], max_failure_rate: 0.5 };
    const created = await call(app, 'POST', '/api/v1/rollouts', {
      key: operator,
      body: { fleet: 'lab', artifact: { name: 'paged', version: '1.0.0' }, group: 'paged', probe: FILE_PROBE, strategy },
    });
    const id = created.json.id as string;
    const first = created.json.devices.find((d: any) => d.wave === 0).name as string;
    const device = byName(sims).get(first)!;
    await device.run((await assignmentOf(device, id))!, 'HEALTHY');
    const detail = (await call(app, 'GET', `/api/v1/rollouts/${id}`, { key: approver })).json;

    // Three pages of three, in the detail's (plan) order; the last one says there is no next.
    const pages: any[] = [];
    let after: number | null | undefined;
    do {
      const res = await call(app, 'GET', `/api/v1/rollouts/${id}/devices?limit=3${after !== undefined ? `&after=${after}` : ''}`, { key: approver });
      expect(res.status).toBe(200);
      pages.push(res.json);
      after = res.json.next;
    } while (after !== null && pages.length < 10);
    expect(pages.map((p) => p.items.length)).toEqual([3, 3, 1]);
    expect(pages.flatMap((p) => p.items)).toEqual(detail.devices);
    // Filters: one wave; one shown state.
    const wave1 = await call(app, 'GET', `/api/v1/rollouts/${id}/devices?wave=1`, { key: approver });
    expect(wave1.json).toEqual({ items: detail.devices.filter((d: any) => d.wave === 1), next: null });
    expect(wave1.json.items).toHaveLength(3);
    // A full page that ends the list says so; `after` and a filter go together.
    expect((await call(app, 'GET', `/api/v1/rollouts/${id}/devices?limit=7`, { key: approver })).json).toEqual({ items: detail.devices, next: null });
    const w1a = (await call(app, 'GET', `/api/v1/rollouts/${id}/devices?wave=1&limit=2`, { key: approver })).json;
    const w1b = (await call(app, 'GET', `/api/v1/rollouts/${id}/devices?wave=1&limit=2&after=${w1a.next}`, { key: approver })).json;
    expect([w1a.items.length, w1b.items.length, w1b.next]).toEqual([2, 1, null]);
    expect([...w1a.items, ...w1b.items]).toEqual(wave1.json.items);
    const healthy = await call(app, 'GET', `/api/v1/rollouts/${id}/devices?state=HEALTHY`, { key: approver });
    expect(healthy.json.items.map((d: any) => d.name)).toEqual([first]);
    // Bad input names the path and the rule.
    expect((await call(app, 'GET', `/api/v1/rollouts/${id}/devices?limit=1001`, { key: approver })).json).toEqual({
      error: 'querystring/limit must be <= 1000',
      code: 'MESH_ERR_API_INVALID',
    });
    expect((await call(app, 'GET', `/api/v1/rollouts/${id}/devices?state=DONE`, { key: approver })).json.error).toMatch(/^querystring\/state must be one of "PENDING"/);

    // The summary is the detail without its device list, counted in SQL.
    const summary = await call(app, 'GET', `/api/v1/rollouts/${id}/summary`, { key: approver });
    const { devices: _, ...withoutDevices } = detail;
    expect(summary.json).toEqual(withoutDevices);
    expect(summary.json.counts).toMatchObject({ HEALTHY: 1, PENDING: 6 });
    for (const path of ['summary', 'devices']) expect((await call(app, 'GET', `/api/v1/rollouts/${id}/${path}`, { key: otherFleet })).status).toBe(404);
    // An action can answer with the summary too; a view that is neither is refused before anything happens.
    expect((await call(app, 'POST', `/api/v1/rollouts/${id}/abort?view=devices`, { key: operator })).json).toEqual({
      error: 'querystring/view must be one of "detail", "summary"',
      code: 'MESH_ERR_API_INVALID',
    });
    expect((await call(app, 'GET', `/api/v1/rollouts/${id}/summary`, { key: approver })).json.status).toBe('running');
    const aborted = await call(app, 'POST', `/api/v1/rollouts/${id}/abort?view=summary`, { key: operator });
    expect(aborted.status).toBe(200);
    expect(aborted.json).toMatchObject({ id, status: 'aborted', abortPolicy: 'keep' });
    expect(aborted.json).not.toHaveProperty('devices');
  });

  it("answers 404 for another fleet's rollout exactly as for one that does not exist", async () => {
    const id = (await call(app, 'GET', '/api/v1/rollouts?fleet=lab', { key: admin })).json.items[0].id as string;
    const foreign = await call(app, 'GET', `/api/v1/rollouts/${id}`, { key: otherFleet });
    expect(foreign).toEqual(expect.objectContaining({ status: 404, json: { error: `no rollout ${id}`, code: 'MESH_ERR_ROLLOUT_NOT_FOUND' } }));
    expect((await call(app, 'GET', '/api/v1/rollouts/00000000-0000-0000-0000-000000000000', { key: otherFleet })).json).toEqual({
      error: 'no rollout 00000000-0000-0000-0000-000000000000',
      code: 'MESH_ERR_ROLLOUT_NOT_FOUND',
    });
    expect((await call(app, 'GET', `/api/v1/rollouts/${id}/events`, { key: otherFleet })).status).toBe(404);
    expect((await call(app, 'GET', '/api/v1/rollouts', { key: otherFleet })).json).toEqual({ items: [], total: 0, limit: 50, offset: 0 });
    expect((await call(app, 'GET', '/api/v1/rollouts?status=paused', { key: admin })).json.error).toMatch(/^querystring\/status must be one of/);
  });
});

describe('audit', () => {
  it('lists events newest first with their chain links, paginated', async () => {
    const page = await call(app, 'GET', '/api/v1/audit?limit=5', { key: admin });
    expect(page.status).toBe(200);
    expect(page.json).toMatchObject({ limit: 5, offset: 0 });
    expect(page.json.items).toHaveLength(5);
    const seqs = page.json.items.map((e: any) => e.seq);
    expect(seqs[0]).toBe(page.json.total);
    expect(seqs).toEqual([...seqs].sort((a: number, b: number) => b - a));
    expect(page.json.items[0]).toEqual({
      seq: expect.any(Number),
      at: expect.any(String),
      actor: expect.any(String),
      action: expect.any(String),
      subject: expect.any(String),
      details: expect.any(Object),
      prevHash: page.json.items[1].hash,
      hash: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    const next = await call(app, 'GET', '/api/v1/audit?limit=5&offset=5', { key: admin });
    expect(next.json.items[0].hash).toBe(page.json.items[4].prevHash);
  });

  it('exports NDJSON oldest first whose last line is the chain summary, and verifies', async () => {
    const res = await call(app, 'GET', '/api/v1/audit/export', { key: admin });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/x-ndjson/);
    const lines = res.body
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    const events = lines.slice(0, -1);
    expect(lines.at(-1)).toEqual({ chain: { count: events.length, verified: true, headHash: events.at(-1).hash } });
    expect(events[0].prevHash).toBe('0'.repeat(64));
    expect(events.some((e: any) => e.actor === 'api-operator' && e.action === 'rollout.created')).toBe(true);
    const verify = await call(app, 'GET', '/api/v1/audit/verify', { key: admin });
    expect(verify.json).toMatchObject({ verified: true, headHash: expect.any(String) });
    expect(verify.json.count).toBeGreaterThanOrEqual(events.length);
  });
});
