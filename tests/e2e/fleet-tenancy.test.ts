// Fleets as tenants of the artifact catalog, end to end with real processes (issue 23): the
// server binary with its REST API, two real agent binaries in two fleets, API keys made with
// `meshanics-server apikey create`. Every hostile action a fleet-A key tries is refused, and
// after each one fleet B's real agent still installs a good artifact HEALTHY. A withdrawn
// version disappears from the signed metadata a real agent holds.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAsDevice } from '@meshanics/core/tuf-verify';
import { serverCli, startAgent, startServer, type Child } from '../../scripts/lib/processes.mjs';
import { waitFor } from './helpers/steps.js';

let root: string;
let serverDir: string;
let readyFile: string;
let server: Child;
let api: string;
const agents: Child[] = [];
const keys: Record<'admin' | 'a' | 'b', string> = { admin: '', a: '', b: '' };
const agentDir = (fleet: string) => path.join(root, 'agents', fleet);

async function call(method: string, urlPath: string, key: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(api + urlPath, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: await res.json() };
}

async function publish(key: string, name: string, version: string, fleet?: string): Promise<{ status: number; json: any }> {
  const form = new FormData();
  for (const [k, v] of Object.entries({ name, version, kind: 'model', ...(fleet !== undefined ? { fleet } : {}) })) form.append(k, v);
  form.append('file', new Blob([randomBytes(16 * 1024)]), `${name}.bin`);
  const res = await fetch(`${api}/api/v1/artifacts`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
  return { status: res.status, json: await res.json() };
}

function rollout(key: string, fleet: string, name: string, version: string) {
  const probe = { type: 'file', spec: { path: readyFile }, timeoutSeconds: 2, attempts: 1 };
  return call('POST', '/api/v1/rollouts', key, { fleet, artifact: { name, version }, group: 'agents', probe });
}

/** Rolls NAME@VERSION out to FLEET's real agent and waits for the rollout to complete with the agent HEALTHY. */
async function installOn(key: string, fleet: string, name: string, version: string): Promise<void> {
  const created = await rollout(key, fleet, name, version);
  expect(created.status, JSON.stringify(created.json)).toBe(201);
  const done = await waitFor(
    `${name}@${version} on ${fleet}`,
    async () => {
      const r = (await call('GET', `/api/v1/rollouts/${created.json.id}`, key)).json;
      return ['completed', 'halted', 'aborted'].includes(r.status) && r;
    },
    { timeoutMs: 60_000 },
  );
  expect(done.status).toBe('completed');
  expect(done.devices.map((d: { state: string }) => d.state)).toEqual(['HEALTHY']);
}

let good = 0;
/** After a hostile action: fleet B's agent still installs a good artifact of its fleet, HEALTHY. */
async function fleetBStillInstalls(): Promise<void> {
  good += 1;
  expect((await publish(keys.b, 'b-good', `${good}.0.0`)).status).toBe(201);
  await installOn(keys.b, 'fleet-b', 'b-good', `${good}.0.0`);
}

/** The TUF metadata files the fleet's real agent verified and keeps. */
async function agentMetadata(fleet: string): Promise<string> {
  const dir = path.join(agentDir(fleet), 'tuf');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  return (await Promise.all(files.map((f) => readFile(path.join(dir, f), 'utf8')))).join('\n');
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-e2e-tenancy-'));
  serverDir = path.join(root, 'server');
  readyFile = path.join(root, 'ready');
  await writeFile(readyFile, 'ok');
  server = await startServer(serverDir, { extraArgs: ['--api-listen', '127.0.0.1:0'] });
  api = server.api;
  for (const fleet of ['fleet-a', 'fleet-b']) {
    await serverCli(serverDir, ['device', 'issue-cert', '--fleet', fleet, '--name', 'agent-1', '--out', path.join(root, 'creds', fleet)]);
    await mkdir(agentDir(fleet), { recursive: true });
    const agent = startAgent(server, path.join(root, 'creds', fleet), agentDir(fleet));
    agents.push(agent);
    await agent.waitForLine((l: { msg?: string }) => l?.msg === 'registered');
  }
  const all = 'devices.manage,artifacts.manage,rollouts.manage';
  for (const [k, fleet] of [
    ['admin', '*'],
    ['a', 'fleet-a'],
    ['b', 'fleet-b'],
  ] as const) {
    keys[k] = (await serverCli(serverDir, ['apikey', 'create', '--name', `e2e-${k}`, '--fleet', fleet, '--permissions', all])).key;
  }
  for (const [k, fleet] of [
    ['a', 'fleet-a'],
    ['b', 'fleet-b'],
  ] as const) {
    expect((await call('POST', '/api/v1/groups', keys[k], { fleet, name: 'agents', devices: ['agent-1'] })).status).toBe(201);
  }
}, 120_000);

afterAll(async () => {
  for (const a of agents) await a.stop();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('artifact catalog tenancy with real agents', () => {
  it("refuses every hostile action of a fleet-A key against fleet B's artifacts; fleet B's agent keeps installing", async () => {
    expect((await publish(keys.b, 'b-model', '1.0.0')).status).toBe(201);
    await fleetBStillInstalls();

    // Publish into fleet B's name, or into fleet B, or for every fleet.
    expect((await publish(keys.a, 'b-model', '2.0.0')).status).toBe(409);
    await fleetBStillInstalls();
    expect((await publish(keys.a, 'a-sneaky', '1.0.0', 'fleet-b')).status).toBe(403);
    expect((await publish(keys.a, 'a-sneaky', '1.0.0', '*')).status).toBe(403);
    await fleetBStillInstalls();

    // Read fleet B's catalog.
    expect((await call('GET', '/api/v1/artifacts/b-model/1.0.0', keys.a)).status).toBe(404);
    expect((await call('GET', '/api/v1/artifacts?name=b-model', keys.a)).json.total).toBe(0);

    // Roll fleet B's artifact out to fleet A (and a * key doing the same), withdraw it.
    expect((await rollout(keys.a, 'fleet-a', 'b-model', '1.0.0')).status).toBe(404);
    const mismatch = await rollout(keys.admin, 'fleet-a', 'b-model', '1.0.0');
    expect([mismatch.status, mismatch.json.error]).toEqual([409, 'artifact b-model@1.0.0 belongs to fleet "fleet-b": devices of fleet "fleet-a" may not use it']);
    expect((await call('DELETE', '/api/v1/artifacts/b-model/1.0.0', keys.a)).status).toBe(404);
    await fleetBStillInstalls();

    // An all-fleet artifact from a * key installs on both fleets' agents.
    expect((await publish(keys.admin, 'shared', '1.0.0')).json.fleet).toBe('*');
    await installOn(keys.a, 'fleet-a', 'shared', '1.0.0');
    await installOn(keys.b, 'fleet-b', 'shared', '1.0.0');
  }, 240_000);

  it("withdraws fleet A's version only once nothing holds it; the agent's verified metadata no longer lists it", async () => {
    const v1 = await publish(keys.a, 'a-app', '1.0.0');
    expect(v1.json.fleet).toBe('fleet-a');
    await installOn(keys.a, 'fleet-a', 'a-app', '1.0.0');
    expect(await agentMetadata('fleet-a')).toContain(v1.json.targetPath);

    const held = await call('DELETE', '/api/v1/artifacts/a-app/1.0.0', keys.a);
    expect([held.status, held.json.error]).toEqual([409, expect.stringContaining('device fleet-a/agent-1 (assigned), device fleet-a/agent-1 (installed)')]);
    await fleetBStillInstalls();

    const v2 = await publish(keys.a, 'a-app', '2.0.0');
    await installOn(keys.a, 'fleet-a', 'a-app', '2.0.0');
    const withdrawn = await call('DELETE', '/api/v1/artifacts/a-app/1.0.0', keys.a);
    expect(withdrawn.status, JSON.stringify(withdrawn.json)).toBe(200);

    // The agent refreshes its metadata for its next install: 1.0.0 is gone from what it verified.
    const v3 = await publish(keys.a, 'a-app', '3.0.0');
    await installOn(keys.a, 'fleet-a', 'a-app', '3.0.0');
    const metadata = await agentMetadata('fleet-a');
    expect(metadata).toContain(v3.json.targetPath);
    // Hash bins (tuf/bins.ts): the agent keeps the bins it looked up, so its copy of 1.0.0's bin
    // may be the one it fetched before the withdrawal. What a device resolves now, walking the
    // server's metadata from the root this agent trusts, no longer has 1.0.0.
    const served = path.join(serverDir, 'tuf', 'repo', 'metadata');
    await verifyAsDevice({
      trustedRoot: await readFile(path.join(agentDir('fleet-a'), 'tuf', 'root.json')),
      file: (name) => (existsSync(path.join(served, name)) ? readFileSync(path.join(served, name)) : undefined),
      targets: [{ path: v1.json.targetPath, expect: null }, { path: v2.json.targetPath }, { path: v3.json.targetPath }],
    });
    await fleetBStillInstalls();
  }, 240_000);
});
