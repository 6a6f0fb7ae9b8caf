// REST API authentication and authorization through `inject`: every route's permission,
// the level hierarchy, the approve right, fleet binding, and the API key lifecycle.
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../src/api/app.js';
import { authenticateApiKey, createApiKey, grants, hashApiKey, listApiKeys, normalizePermissions, revokeApiKey } from '../src/api/keys.js';
import { initDataDir, type MeshanicsContext } from '../src/config/data-dir.js';
import { httpStatusFor, isMeshError, MeshError } from '../src/errors.js';
import { ALL_PERMISSIONS, call, key } from './api-helpers.js';
import { tempDir } from './helpers.js';

let ctx: MeshanicsContext;
let app: FastifyInstance;

beforeAll(async () => {
  ctx = await initDataDir({ dataDir: tempDir() });
  // Every bad key below comes from one address: the failed-key rate limit is tested in api-streams.test.ts.
  app = buildApi(ctx, { consoleDir: null, authThrottle: { maxFailures: 1_000_000 } });
  await app.ready();
});
afterAll(async () => {
  await app.close();
  await ctx.close();
});

/** Every route of the contract with the right it needs (bodies valid enough to get past validation). */
const ROUTES: Array<{ method: string; url: string; needs: string; body?: unknown }> = [
  { method: 'GET', url: '/api/v1/devices', needs: 'devices.read' },
  { method: 'GET', url: '/api/v1/devices/lab/dev-1', needs: 'devices.read' },
  { method: 'POST', url: '/api/v1/devices/lab/dev-1/decommission', needs: 'devices.manage' },
  { method: 'POST', url: '/api/v1/enrollment-tokens', needs: 'enrollment.write', body: { fleet: 'lab' } },
  { method: 'GET', url: '/api/v1/enrollment-tokens', needs: 'enrollment.read' },
  { method: 'DELETE', url: '/api/v1/enrollment-tokens/nope', needs: 'enrollment.manage' },
  { method: 'POST', url: '/api/v1/devices/lab/dev-1/log-requests', needs: 'logs.write', body: {} },
  { method: 'GET', url: '/api/v1/log-requests', needs: 'logs.read' },
  { method: 'GET', url: '/api/v1/log-requests/nope/bundle', needs: 'logs.read' },
  { method: 'POST', url: '/api/v1/artifacts', needs: 'artifacts.write' },
  { method: 'GET', url: '/api/v1/artifacts', needs: 'artifacts.read' },
  { method: 'GET', url: '/api/v1/artifacts/nope/1.0.0', needs: 'artifacts.read' },
  { method: 'DELETE', url: '/api/v1/artifacts/nope/1.0.0', needs: 'artifacts.write' },
  { method: 'POST', url: '/api/v1/groups', needs: 'devices.write', body: { fleet: 'lab', name: 'g', devices: [] } },
  { method: 'GET', url: '/api/v1/groups', needs: 'devices.read' },
  { method: 'GET', url: '/api/v1/groups/lab/g', needs: 'devices.read' },
  { method: 'PUT', url: '/api/v1/groups/lab/g', needs: 'devices.write', body: { devices: [] } },
  {
    method: 'POST',
    url: '/api/v1/rollouts',
    needs: 'rollouts.write',
    body: { fleet: 'lab', artifact: { name: 'a', version: '1' }, group: 'g', probe: { type: 'file', spec: { path: '/x' } } },
  },
  { method: 'GET', url: '/api/v1/rollouts', needs: 'rollouts.read' },
  { method: 'GET', url: '/api/v1/rollouts/nope', needs: 'rollouts.read' },
  { method: 'GET', url: '/api/v1/rollouts/nope/events', needs: 'rollouts.read' },
  { method: 'POST', url: '/api/v1/rollouts/nope/approve', needs: 'approve' },
  { method: 'POST', url: '/api/v1/rollouts/nope/resume', needs: 'approve' },
  { method: 'POST', url: '/api/v1/rollouts/nope/abort', needs: 'rollouts.manage', body: { policy: 'keep' } },
  { method: 'GET', url: '/api/v1/audit', needs: 'audit.read' },
  { method: 'GET', url: '/api/v1/audit/export', needs: 'audit.read' },
  { method: 'GET', url: '/api/v1/audit/verify', needs: 'audit.read' },
];

const LOWER: Record<string, string | undefined> = { read: undefined, write: 'read', manage: 'write' };

/** Every right except `needs`, which gets one level below (or nothing). */
function allBut(needs: string): { permissions: string[]; approve: boolean } {
  if (needs === 'approve') return { permissions: ALL_PERMISSIONS, approve: false };
  const [area, level] = needs.split('.') as [string, string];
  const others = ALL_PERMISSIONS.filter((p) => !p.startsWith(`${area}.`));
  const lower = LOWER[level];
  return { permissions: lower ? [...others, `${area}.${lower}`] : others, approve: true };
}

describe('authentication', () => {
  it('answers 401 with { error, code } without a key, with an unknown key, with a malformed header, and with a revoked key', async () => {
    const good = await key(ctx, ['devices.read']);
    expect(await call(app, 'GET', '/api/v1/whoami')).toMatchObject({
      status: 401,
      json: { error: 'missing API key (send Authorization: Bearer <key>)', code: 'MESH_ERR_API_UNAUTHENTICATED' },
    });
    expect(await call(app, 'GET', '/api/v1/whoami', { key: 'mesh_key_' + 'A'.repeat(43) })).toMatchObject({
      status: 401,
      json: { error: 'invalid API key', code: 'MESH_ERR_API_UNAUTHENTICATED' },
    });
    expect(await call(app, 'GET', '/api/v1/whoami', { headers: { authorization: `Basic ${good}` } })).toMatchObject({
      status: 401,
      json: { error: 'invalid API key', code: 'MESH_ERR_API_UNAUTHENTICATED' },
    });
    expect((await call(app, 'GET', '/api/v1/whoami', { key: good })).status).toBe(200);

    const revoked = await createApiKey(ctx, { name: 'to-revoke', fleet: '*', permissions: ['devices.read'] });
    await revokeApiKey(ctx, revoked.id, 'operator:test');
    expect(await call(app, 'GET', '/api/v1/devices', { key: revoked.key })).toMatchObject({
      status: 401,
      json: { error: 'invalid API key', code: 'MESH_ERR_API_UNAUTHENTICATED' },
    });
  });

  it('refuses every protected route without a key (401) and with a bad key (401), before looking at the body', async () => {
    for (const r of ROUTES) {
      const none = await call(app, r.method, r.url, { body: r.body });
      expect(none.status, `${r.method} ${r.url}`).toBe(401);
      expect(none.json).toEqual({ error: 'missing API key (send Authorization: Bearer <key>)', code: 'MESH_ERR_API_UNAUTHENTICATED' });
      const bad = await call(app, r.method, r.url, { key: 'nope', body: { garbage: true } });
      expect(bad.status, `${r.method} ${r.url}`).toBe(401);
      expect(bad.json).toEqual({ error: 'invalid API key', code: 'MESH_ERR_API_UNAUTHENTICATED' });
    }
  });

  it('whoami shows the calling key; public routes need none', async () => {
    const k = await createApiKey(ctx, { name: 'whoami-key', fleet: 'lab', permissions: ['rollouts.write', 'devices.read', 'rollouts.read'], approve: true });
    expect((await call(app, 'GET', '/api/v1/whoami', { key: k.key })).json).toEqual({
      id: k.id,
      name: 'whoami-key',
      fleet: 'lab',
      permissions: ['devices.read', 'rollouts.write'],
      approve: true,
    });
    for (const url of ['/healthz', '/readyz', '/api/v1/openapi.json']) expect((await call(app, 'GET', url)).status).toBe(200);
  });
});

describe('authorization', () => {
  it('answers 403 "missing permission: <right>" on every route for a key one level short, and lets the exact right through', async () => {
    for (const r of ROUTES) {
      const short = allBut(r.needs);
      const denied = await call(app, r.method, r.url, { key: await key(ctx, short.permissions, { approve: short.approve }), body: r.body });
      expect(denied.status, `${r.method} ${r.url}`).toBe(403);
      expect(denied.json).toEqual({ error: `missing permission: ${r.needs}`, code: 'MESH_ERR_API_FORBIDDEN' });

      const exact = r.needs === 'approve' ? await key(ctx, [], { approve: true }) : await key(ctx, [r.needs]);
      const allowed = await call(app, r.method, r.url, { key: exact, body: r.body });
      expect([401, 403], `${r.method} ${r.url}: ${allowed.body}`).not.toContain(allowed.status);
    }
  });

  it('a higher level implies the lower ones (manage > write > read)', async () => {
    const manage = await key(ctx, ['enrollment.manage']);
    expect((await call(app, 'GET', '/api/v1/enrollment-tokens', { key: manage })).status).toBe(200);
    expect((await call(app, 'POST', '/api/v1/enrollment-tokens', { key: manage, body: { fleet: 'lab' } })).status).toBe(201);
    const write = await key(ctx, ['enrollment.write']);
    expect((await call(app, 'GET', '/api/v1/enrollment-tokens', { key: write })).status).toBe(200);
    expect(await call(app, 'DELETE', '/api/v1/enrollment-tokens/x', { key: write })).toMatchObject({
      status: 403,
      json: { error: 'missing permission: enrollment.manage', code: 'MESH_ERR_API_FORBIDDEN' },
    });
  });

  it('a key bound to one fleet may not read the audit trail, which spans every fleet', async () => {
    const bound = await key(ctx, ['audit.read'], { fleet: 'lab' });
    const res = await call(app, 'GET', '/api/v1/audit/verify', { key: bound });
    expect(res.status).toBe(403);
    expect(res.json.error).toMatch(/^missing permission: audit\.read on every fleet/);
  });
});

describe('API keys', () => {
  it('stores only the sha256, prints a mesh_key_ with at least 32 random bytes, and audits creation and revocation with the actor', async () => {
    const created = await createApiKey(ctx, { name: 'ci-deployer', fleet: 'lab', permissions: ['artifacts.write', 'rollouts.read', 'artifacts.read'], actor: 'operator:cli' });
    expect(created.key).toMatch(/^mesh_key_[A-Za-z0-9_-]{43,}$/);
    expect(Buffer.from(created.key.slice('mesh_key_'.length), 'base64url').length).toBeGreaterThanOrEqual(32);
    expect(created.permissions).toEqual(['artifacts.write', 'rollouts.read']);
    const stored = (await ctx.store.apiKeys.get(created.id))!;
    expect(stored.keySha256).toBe(hashApiKey(created.key));
    expect(JSON.stringify(stored)).not.toContain(created.key);
    expect((await authenticateApiKey(ctx, created.key))?.id).toBe(created.id);

    const listed = (await listApiKeys(ctx)).find((k) => k.id === created.id)!;
    expect(listed).toMatchObject({ name: 'ci-deployer', fleet: 'lab', status: 'active', createdBy: 'operator:cli' });
    expect(JSON.stringify(listed)).not.toContain(hashApiKey(created.key));

    expect((await revokeApiKey(ctx, created.id, 'operator:cli')).status).toBe('revoked');
    expect((await revokeApiKey(ctx, created.id, 'operator:cli')).status).toBe('revoked');
    expect(await authenticateApiKey(ctx, created.key)).toBeUndefined();
    expect((await ctx.store.listAudit({ subject: `apikey:${created.id}` })).map((e) => [e.action, e.actor])).toEqual([
      ['apikey.created', 'operator:cli'],
      ['apikey.revoked', 'operator:cli'],
    ]);
    // A revoked key's name is free again.
    expect((await createApiKey(ctx, { name: 'ci-deployer', fleet: 'lab', permissions: ['artifacts.read'] })).name).toBe('ci-deployer');
  });

  it('refuses a duplicate live name (409), an unknown permission, a bad fleet, and a key without any right (400)', async () => {
    await createApiKey(ctx, { name: 'dup', fleet: '*', permissions: ['devices.read'] });
    const fail = async (fn: () => unknown): Promise<MeshError> => {
      try {
        await fn();
      } catch (err) {
        if (isMeshError(err)) return err;
        throw err;
      }
      throw new Error('expected a MeshError');
    };
    const dup = await fail(() => createApiKey(ctx, { name: 'dup', fleet: '*', permissions: ['devices.read'] }));
    expect([dup.code, httpStatusFor(dup.kind)]).toEqual(['MESH_ERR_APIKEY_CONFLICT', 409]);
    expect((await fail(() => createApiKey(ctx, { name: 'x1', fleet: '*', permissions: ['devices.admin'] }))).message).toMatch(/unknown permission "devices\.admin"/);
    expect((await fail(() => createApiKey(ctx, { name: 'x2', fleet: '*', permissions: ['fleet.read'] }))).code).toBe('MESH_ERR_APIKEY_INVALID');
    expect((await fail(() => createApiKey(ctx, { name: 'x3', fleet: 'Not A Label', permissions: ['devices.read'] }))).code).toBe('MESH_ERR_APIKEY_INVALID');
    expect((await fail(() => createApiKey(ctx, { name: 'x4', fleet: '*', permissions: [] }))).code).toBe('MESH_ERR_APIKEY_INVALID');
    expect((await fail(() => revokeApiKey(ctx, 'no-such-id'))).code).toBe('MESH_ERR_APIKEY_NOT_FOUND');
  });

  it('normalizes permissions to the highest level per area, and `approve` in the list is the approve right', () => {
    expect(normalizePermissions(['logs.read', 'logs.manage', 'devices.write', ' approve ', ''])).toEqual({
      permissions: ['devices.write', 'logs.manage'],
      approve: true,
    });
    const k = { permissions: ['devices.write'], approve: false };
    expect([grants(k, 'devices.read'), grants(k, 'devices.write'), grants(k, 'devices.manage'), grants(k, 'approve'), grants(k, 'logs.read')]).toEqual([
      true,
      true,
      false,
      false,
      false,
    ]);
  });
});

describe('web console', () => {
  it('serves console/dist statically at / with index.html for client routes, and never for /api paths', async () => {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>Meshanics</title>');
    fs.mkdirSync(path.join(dir, 'assets'));
    fs.writeFileSync(path.join(dir, 'assets', 'app.js'), 'console.log(1)');
    const withConsole = buildApi(ctx, { consoleDir: dir });
    try {
      const root = await withConsole.inject({ url: '/' });
      expect([root.statusCode, root.body]).toEqual([200, '<!doctype html><title>Meshanics</title>']);
      const clientRoute = await withConsole.inject({ url: '/rollouts/1234?tab=devices' });
      expect([clientRoute.statusCode, clientRoute.headers['content-type']]).toEqual([200, expect.stringMatching(/^text\/html/)]);
      expect((await withConsole.inject({ url: '/assets/app.js' })).body).toBe('console.log(1)');
      const api = await withConsole.inject({ url: '/api/v1/not-a-route' });
      expect([api.statusCode, api.json()]).toEqual([404, { error: 'no route GET /api/v1/not-a-route', code: 'MESH_ERR_API_NOT_FOUND' }]);
      expect((await withConsole.inject({ url: '/api/v1/whoami' })).statusCode).toBe(401);
      expect((await withConsole.inject({ url: '/../../etc/passwd' })).body).not.toContain('root:');
    } finally {
      await withConsole.close();
    }
    // Without a console, / is just an unknown route.
    expect(await call(app, 'GET', '/')).toMatchObject({ status: 404, json: { error: 'no route GET /', code: 'MESH_ERR_API_NOT_FOUND' } });
  });
});
