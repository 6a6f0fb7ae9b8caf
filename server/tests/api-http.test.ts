// The REST API over a real socket: `startServer({ apiListen: '127.0.0.1:0' })`, real fetch,
// multipart uploads streamed to disk, server-sent events, the NDJSON audit export, and the
// `serve --api-listen` / `apikey create` CLI as an operator bootstraps it.
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_PERMISSIONS, closeDeviceClients, FILE_PROBE, key, publishModel, simDevices, sseEvents } from './api-helpers.js';
import { startTestServer, tempDir, type TestServer } from './helpers.js';

const MAX_UPLOAD = 256 * 1024;

let t: TestServer;
let base: string;
let admin: string;

beforeAll(async () => {
  t = await startTestServer({ apiListen: '127.0.0.1:0', apiMaxArtifactBytes: MAX_UPLOAD, consoleDir: null });
  base = t.server.apiUrl!;
  admin = await key(t.ctx, ALL_PERMISSIONS, { approve: true, name: 'http-admin' });
});
afterAll(async () => {
  closeDeviceClients();
  await t.close();
});

function auth(k = admin): Record<string, string> {
  return { authorization: `Bearer ${k}` };
}

async function getJson(urlPath: string, k = admin): Promise<{ status: number; json: any }> {
  const res = await fetch(base + urlPath, { headers: auth(k) });
  return { status: res.status, json: await res.json() };
}

function form(fields: Record<string, string>, file?: { bytes: Buffer | string; name: string }): FormData {
  const f = new FormData();
  for (const [k, v] of Object.entries(fields)) f.append(k, v);
  if (file) f.append('file', new Blob([file.bytes]), file.name);
  return f;
}

async function upload(fields: Record<string, string>, file?: { bytes: Buffer | string; name: string }, k = admin) {
  const res = await fetch(`${base}/api/v1/artifacts`, { method: 'POST', headers: auth(k), body: form(fields, file) });
  return { status: res.status, json: (await res.json()) as any };
}

const sha256 = (b: Buffer | string) => crypto.createHash('sha256').update(b).digest('hex');

describe('REST API over a real socket', () => {
  it('listens on the bound port; healthz, readyz, unknown routes', async () => {
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', schemaVersion: expect.any(Number), apiKeys: expect.any(Number), tuf: { root: 1 } });
    const missing = await fetch(`${base}/api/v1/nothing-here`, { headers: auth() });
    expect([missing.status, await missing.json()]).toEqual([404, { error: 'no route GET /api/v1/nothing-here', code: 'MESH_ERR_API_NOT_FOUND' }]);
    const noKey = await fetch(`${base}/api/v1/devices`);
    expect([noKey.status, await noKey.json()]).toEqual([401, { error: 'missing API key (send Authorization: Bearer <key>)', code: 'MESH_ERR_API_UNAUTHENTICATED' }]);
  });

  it('serves an OpenAPI 3.1 document listing every route, with bearer auth', async () => {
    const res = await fetch(`${base}/api/v1/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const doc = JSON.parse(await res.text());
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.security).toEqual([{ bearerAuth: [] }]);
    const expected: Array<[string, string]> = [
      ['get', '/api/v1/openapi.json'],
      ['get', '/api/v1/whoami'],
      ['post', '/api/v1/stream-tickets'],
      ['get', '/api/v1/devices'],
      ['get', '/api/v1/devices/{fleet}/{name}'],
      ['post', '/api/v1/devices/{fleet}/{name}/decommission'],
      ['post', '/api/v1/enrollment-tokens'],
      ['get', '/api/v1/enrollment-tokens'],
      ['delete', '/api/v1/enrollment-tokens/{id}'],
      ['post', '/api/v1/devices/{fleet}/{name}/log-requests'],
      ['get', '/api/v1/log-requests'],
      ['get', '/api/v1/log-requests/{id}/bundle'],
      ['post', '/api/v1/artifacts'],
      ['get', '/api/v1/artifacts'],
      ['get', '/api/v1/artifacts/{name}/{version}'],
      ['delete', '/api/v1/artifacts/{name}/{version}'],
      ['post', '/api/v1/groups'],
      ['get', '/api/v1/groups'],
      ['get', '/api/v1/groups/{fleet}/{name}'],
      ['post', '/api/v1/rollouts'],
      ['get', '/api/v1/rollouts'],
      ['get', '/api/v1/rollouts/{id}'],
      ['get', '/api/v1/rollouts/{id}/events'],
      ['post', '/api/v1/rollouts/{id}/approve'],
      ['post', '/api/v1/rollouts/{id}/resume'],
      ['post', '/api/v1/rollouts/{id}/abort'],
      ['get', '/api/v1/audit'],
      ['get', '/api/v1/audit/export'],
      ['get', '/api/v1/audit/verify'],
      ['get', '/healthz'],
      ['get', '/readyz'],
    ];
    for (const [method, p] of expected) {
      const op = doc.paths[p]?.[method];
      expect(op, `${method} ${p}`).toBeDefined();
      expect(Object.keys(op.responses).length, `${method} ${p}`).toBeGreaterThan(0);
    }
    // Public routes say so; the plugin schemas are in the rollout body, the limits in the lists.
    expect(doc.paths['/healthz'].get.security).toEqual([]);
    const rolloutBody = doc.paths['/api/v1/rollouts'].post.requestBody.content['application/json'].schema;
    expect(rolloutBody.properties.probe.properties.timeoutSeconds).toMatchObject({ maximum: 300 });
    expect(JSON.stringify(rolloutBody.properties.probe.allOf)).toContain('"path"');
    const limit = doc.paths['/api/v1/devices'].get.parameters.find((p: any) => p.name === 'limit');
    expect(limit).toMatchObject({ in: 'query', schema: { maximum: 200, default: 50 } });
    expect(doc.paths['/api/v1/artifacts'].post.requestBody.content).toHaveProperty('multipart/form-data');
  });

  it('publishes an uploaded artifact (streamed to disk, signed into TUF), then shows it with its sha256; a duplicate is a 409', async () => {
    const bytes = crypto.randomBytes(100_000);
    const created = await upload(
      { name: 'detector', version: '2.0.0', kind: 'model', spec: '{"fileName":"model.onnx"}', manifest: '{"accuracy":"0.93"}' },
      { bytes, name: 'detector.onnx' },
    );
    expect(created.status).toBe(201);
    expect(created.json).toEqual({
      name: 'detector',
      version: '2.0.0',
      kind: 'model',
      targetPath: 'detector/2.0.0/detector',
      sha256: sha256(bytes),
      length: bytes.length,
      fleet: '*',
    });

    const shown = await getJson('/api/v1/artifacts/detector/2.0.0');
    expect(shown.status).toBe(200);
    expect(shown.json).toMatchObject({ sha256: sha256(bytes), length: bytes.length, fileName: 'detector.onnx', spec: { fileName: 'model.onnx' }, manifest: { accuracy: '0.93' } });
    // Signed first: the target is in its hash bin under the publisher delegation, with the
    // manifest's sha256 and length (the manifest itself stays out of signed metadata).
    const metadataDir = t.ctx.layout.tufMetadataDir;
    const state = t.ctx.tuf.readState();
    const bin = state.publisher!.metadata.signed.delegations!.succinctRoles!.getRoleForTarget('detector/2.0.0/detector');
    const targets = JSON.parse(fs.readFileSync(path.join(metadataDir, `${state.snapshot.metadata.signed.meta[`${bin}.json`]!.version}.${bin}.json`), 'utf8'));
    const manifestBytes = Buffer.from('{"accuracy":"0.93"}');
    expect(targets.signed.targets['detector/2.0.0/detector']).toMatchObject({
      hashes: { sha256: sha256(bytes) },
      custom: { meshanics: { kind: 'model', manifest: { sha256: sha256(manifestBytes), length: manifestBytes.length } } },
    });
    expect(await t.ctx.store.listAudit({ subject: 'artifact:detector@2.0.0' })).toMatchObject([{ action: 'artifact.published', actor: 'http-admin' }]);

    const dup = await upload({ name: 'detector', version: '2.0.0', kind: 'model' }, { bytes: 'other', name: 'x' });
    expect(dup).toEqual({ status: 409, json: { error: 'artifact detector@2.0.0 is already published; publish a new version', code: 'MESH_ERR_ARTIFACT_CONFLICT' } });

    const list = await getJson('/api/v1/artifacts?kind=model&name=detector');
    expect(list.json).toMatchObject({ total: 1, items: [{ name: 'detector', version: '2.0.0' }] });
    expect((await getJson('/api/v1/artifacts/detector/9.9.9')).status).toBe(404);
    // Nothing is left in the staging dir.
    expect(fs.readdirSync(t.ctx.layout.tufStagingDir)).toEqual([]);
  });

  it("validates fields with the kind plugin's own schema before storing anything (400 naming the path and the rule)", async () => {
    const relative = await upload({ name: 'app-config', version: '1', kind: 'config', spec: '{"destination":"etc/app.conf","mode":"0644"}' }, { bytes: 'x=1\n', name: 'app.conf' });
    expect(relative.status).toBe(400);
    expect(relative.json.error).toMatch(/^body\/spec\/destination must match pattern "/);
    const missingMode = await upload({ name: 'app-config', version: '1', kind: 'config', spec: '{"destination":"/etc/app.conf"}' }, { bytes: 'x', name: 'a' });
    expect(missingMode.json).toEqual({ error: 'body/spec/mode is required', code: 'MESH_ERR_API_INVALID' });
    expect((await upload({ name: 'Bad Name', version: '1', kind: 'model' }, { bytes: 'x', name: 'a' })).json.error).toMatch(/^body\/name must match pattern/);
    expect((await upload({ name: 'a', version: '1', kind: 'firmware' }, { bytes: 'x', name: 'a' })).json.error).toMatch(/^body\/kind must be one of /);
    expect(await upload({ name: 'a', version: '1', kind: 'model', spec: '{nope' }, { bytes: 'x', name: 'a' })).toMatchObject({
      status: 400,
      json: { error: expect.stringMatching(/^body\/spec is not valid JSON/) },
    });
    expect(await upload({ name: 'a', version: '1', kind: 'model' })).toEqual({ status: 400, json: { error: 'body/file is required', code: 'MESH_ERR_API_INVALID' } });
    const json = await fetch(`${base}/api/v1/artifacts`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: '{}' });
    expect(json.status).toBe(400);
    // Refused by Fastify before any route runs: still the stable code, and its own status.
    const garbled = await fetch(`${base}/api/v1/groups`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: '{nope' });
    expect([garbled.status, ((await garbled.json()) as { code: string }).code]).toEqual([400, 'MESH_ERR_API_REFUSED']);
    const plain = await fetch(`${base}/api/v1/groups`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/xml' }, body: '<x/>' });
    expect([plain.status, ((await plain.json()) as { code: string }).code]).toEqual([415, 'MESH_ERR_API_REFUSED']);
    // A valid config publishes.
    expect(
      (await upload({ name: 'app-config', version: '1', kind: 'config', spec: '{"destination":"/etc/app.conf","mode":"0644"}' }, { bytes: 'x=1\n', name: 'app.conf' })).status,
    ).toBe(201);
    expect(fs.readdirSync(t.ctx.layout.tufStagingDir)).toEqual([]);
  });

  it('refuses an upload above the configured limit with 413 and keeps nothing', async () => {
    const res = await upload({ name: 'huge', version: '1', kind: 'model' }, { bytes: crypto.randomBytes(MAX_UPLOAD + 1), name: 'huge.bin' });
    expect(res.status).toBe(413);
    expect(res.json.error).toContain(`larger than the ${MAX_UPLOAD} bytes`);
    expect(await t.ctx.store.getArtifact('huge', '1')).toBeUndefined();
    expect(fs.readdirSync(t.ctx.layout.tufStagingDir)).toEqual([]);
  });

  it('for kind container, the uploaded file is the descriptor: it becomes the spec, and a different spec is refused', async () => {
    const descriptor = { image: `registry.example.com/team/web@sha256:${'a'.repeat(64)}`, name: 'web', ports: [{ container: 80, host: 8080 }] };
    const mismatch = await upload(
      { name: 'web', version: '1.0.0', kind: 'container', spec: JSON.stringify({ ...descriptor, name: 'other' }) },
      { bytes: JSON.stringify(descriptor), name: 'web.json' },
    );
    expect(mismatch.status).toBe(400);
    expect(mismatch.json.error).toMatch(/^body\/spec must equal the descriptor/);
    const tagged = await upload(
      { name: 'web', version: '1.0.0', kind: 'container' },
      { bytes: JSON.stringify({ ...descriptor, image: 'registry.example.com/team/web:latest' }), name: 'web.json' },
    );
    expect(tagged.json.error).toMatch(/^body\/file\/image must match pattern/);
    const ok = await upload({ name: 'web', version: '1.0.0', kind: 'container' }, { bytes: JSON.stringify(descriptor), name: 'web.json' });
    expect(ok.status).toBe(201);
    expect((await getJson('/api/v1/artifacts/web/1.0.0')).json.spec).toEqual(descriptor);
  });

  it('streams rollout changes as server-sent events, opened with a stream ticket (never the key in the URL)', async () => {
    const devices = await simDevices(t, 'lab', ['sse-1', 'sse-2']);
    await publishModel(t.ctx, 'sse-model', '1.0.0');
    expect(
      (
        await fetch(`${base}/api/v1/groups`, {
          method: 'POST',
          headers: { ...auth(), 'content-type': 'application/json' },
          body: JSON.stringify({ fleet: 'lab', name: 'sse', devices: ['sse-1', 'sse-2'] }),
        })
      ).status,
    ).toBe(201);
    const created = await fetch(`${base}/api/v1/rollouts`, {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'application/json' },
      body: JSON.stringify({ fleet: 'lab', artifact: { name: 'sse-model', version: '1.0.0' }, group: 'sse', probe: FILE_PROBE }),
    });
    expect(created.status).toBe(201);
    const rollout = (await created.json()) as any;

    const readKey = await key(t.ctx, ['rollouts.read']);
    expect((await fetch(`${base}/api/v1/rollouts/${rollout.id}/events`)).status).toBe(401);
    const controller = new AbortController();
    expect((await fetch(`${base}/api/v1/rollouts/${rollout.id}/events?access_token=${readKey}`)).status).toBe(401);
    const minted = await fetch(`${base}/api/v1/stream-tickets`, { method: 'POST', headers: auth(readKey) });
    expect(minted.status).toBe(201);
    const { ticket } = (await minted.json()) as { ticket: string };
    const res = await fetch(`${base}/api/v1/rollouts/${rollout.id}/events?ticket=${ticket}`, { signal: controller.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = sseEvents(res.body!);
    const first = await events.next();
    expect(first.value).toMatchObject({ event: 'rollout', data: { id: rollout.id, status: 'running', counts: { PENDING: 2 } } });

    const assignment = (await devices[0]!.heartbeat()).assignments.find((a) => a.rolloutId === rollout.id)!;
    await devices[0]!.report(assignment.assignmentId, 'DOWNLOADING');
    const second = await events.next();
    expect(second.value).toMatchObject({ event: 'rollout', data: { id: rollout.id, counts: { PENDING: 1, DOWNLOADING: 1 } } });
    controller.abort();
  });

  it('exports the audit trail as NDJSON over the socket, the last line the chain summary', async () => {
    const res = await fetch(`${base}/api/v1/audit/export`, { headers: auth() });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
    const lines = (await res.text())
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    const chain = lines.at(-1).chain;
    expect(chain).toMatchObject({ count: lines.length - 1, verified: true, headHash: lines.at(-2).hash });
    expect(lines.slice(0, -1).map((e: any) => e.seq)).toEqual(Array.from({ length: lines.length - 1 }, (_, i) => i + 1));
  });
});

describe('serve --api-listen and apikey (the built CLI)', () => {
  const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
  const execFileP = promisify(execFile);
  let serve: ReturnType<typeof spawn> | undefined;

  afterAll(async () => {
    if (serve && serve.exitCode === null) {
      serve.kill('SIGTERM');
      await new Promise((resolve) => serve!.once('exit', resolve));
    }
  });

  it('bootstraps the first key with `apikey create`, announces the API in the listening line, and the key works', async () => {
    expect(fs.existsSync(CLI), 'run `npx tsc -b` first').toBe(true);
    const dataDir = tempDir();
    const run = async (args: string[]) => JSON.parse((await execFileP(process.execPath, [CLI, ...args, '--data-dir', dataDir])).stdout);
    const created = await run(['apikey', 'create', '--name', 'bootstrap', '--fleet', '*', '--permissions', 'devices.read,rollouts.manage', '--approve']);
    expect(created).toMatchObject({ name: 'bootstrap', fleet: '*', permissions: ['devices.read', 'rollouts.manage'], approve: true, key: expect.stringMatching(/^mesh_key_/) });
    const listed = await run(['apikey', 'ls']);
    expect(listed.keys).toEqual([expect.objectContaining({ id: created.id, status: 'active' })]);
    expect(JSON.stringify(listed)).not.toContain(created.key);

    serve = spawn(
      process.execPath,
      [CLI, 'serve', '--data-dir', dataDir, '--grpc-listen', '127.0.0.1:0', '--artifact-listen', '127.0.0.1:0', '--enroll-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const listening = await new Promise<{ api: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no listening line')), 20_000);
      readline.createInterface({ input: serve!.stdout! }).on('line', (line) => {
        const parsed = JSON.parse(line) as { msg: string; api: string };
        if (parsed.msg === 'server listening') {
          clearTimeout(timer);
          resolve(parsed);
        }
      });
    });
    expect(listening.api).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const whoami = await fetch(`${listening.api}/api/v1/whoami`, { headers: { authorization: `Bearer ${created.key}` } });
    expect(await whoami.json()).toMatchObject({ name: 'bootstrap', approve: true });

    const revoked = await run(['apikey', 'revoke', created.id]);
    expect(revoked).toMatchObject({ id: created.id, status: 'revoked' });
    expect((await fetch(`${listening.api}/api/v1/whoami`, { headers: { authorization: `Bearer ${created.key}` } })).status).toBe(401);
  });
});
