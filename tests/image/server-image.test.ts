// The server image as an operator runs it: built by `npm run image`, started with podman, data
// in a named volume, configured by MESHANICS_* variables. A real agent from the checkout (on the
// host) updates a model through it; the container is stopped (SIGTERM) and started again and
// everything it knew is still there. Then the same image against the host's PostgreSQL.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, TERMINAL, type Child } from '../../scripts/lib/processes.mjs';
import { assignArgs, waitFor } from '../e2e/helpers/steps.js';
import { freePorts, podman, podmanAvailable, runServerContainer, serverCliIn } from './podman.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const execFileP = promisify(execFile);
const inCi = process.env.CI === 'true' || process.env.CI === '1';
const missing = podmanAvailable();
if (missing && inCi) throw new Error(`CI must run the server image tests: ${missing}`);
const PG_URL = process.env.MESHANICS_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const suffix = randomBytes(4).toString('hex');

let image: string;
let root: string;
const containers: string[] = [];
const volumes: string[] = [];
const agents: Child[] = [];

interface Started {
  name: string;
  api: string;
  grpc: string;
  artifacts: string;
}

async function startContainer(label: string, volume: string, extraEnv: Record<string, string> = {}): Promise<Started> {
  const [grpc, artifacts, enroll, api] = await freePorts(4);
  const name = `meshanics-image-${label}-${suffix}`;
  const env = {
    MESHANICS_GRPC_LISTEN: `127.0.0.1:${grpc}`,
    MESHANICS_ARTIFACT_LISTEN: `127.0.0.1:${artifacts}`,
    MESHANICS_ENROLL_LISTEN: `127.0.0.1:${enroll}`,
    MESHANICS_API_LISTEN: `127.0.0.1:${api}`,
    MESHANICS_HEARTBEAT_INTERVAL: '1',
    ...extraEnv,
  };
  await podman(['rm', '-f', name], { allowFail: true });
  await runServerContainer(image, { name, volume, env });
  if (!containers.includes(name)) containers.push(name);
  const started = { name, api: `http://127.0.0.1:${api}`, grpc: `127.0.0.1:${grpc}`, artifacts: `https://127.0.0.1:${artifacts}` };
  await waitReady(started);
  return started;
}

async function restart(c: Started): Promise<void> {
  await podman(['start', c.name]);
  await waitReady(c);
}

async function waitReady(c: Started): Promise<void> {
  await waitFor(
    `${c.name} /readyz`,
    async () => {
      const state = await podman(['inspect', '-f', '{{.State.Status}}', c.name]);
      if (state.stdout.trim() === 'exited') {
        const logs = await podman(['logs', c.name], { allowFail: true });
        throw new Error(`${c.name} exited: ${logs.stdout}${logs.stderr}`);
      }
      try {
        return (await fetch(`${c.api}/readyz`)).status === 200;
      } catch {
        return false;
      }
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
}

/** Issues a device certificate inside the container and copies the credentials out to the host. */
async function enrollDevice(c: Started, fleet: string, name: string): Promise<string> {
  const inside = `/var/lib/meshanics/creds-${name}`;
  await serverCliIn(c.name, ['device', 'issue-cert', '--fleet', fleet, '--name', name, '--out', inside]);
  const dir = path.join(root, `creds-${c.name}-${name}`);
  await podman(['cp', `${c.name}:${inside}`, dir]);
  return dir;
}

async function publishAndAssign(c: Started, input: { fleet: string; device: string; version: string; bytes: Buffer; readyFile: string }) {
  const file = path.join(root, `detector-${input.version}-${c.name}`);
  await writeFile(file, input.bytes);
  await podman(['cp', file, `${c.name}:/tmp/detector-${input.version}`]);
  await serverCliIn(c.name, ['artifact', 'publish', `/tmp/detector-${input.version}`, '--name', 'detector', '--version', input.version, '--kind', 'model']);
  const { assignmentId } = await serverCliIn(
    c.name,
    assignArgs({ fleet: input.fleet, device: input.device, artifact: `detector@${input.version}`, readyFile: input.readyFile, probeAttempts: 2 }),
  );
  return assignmentId as string;
}

async function waitTerminal(c: Started, id: string): Promise<any> {
  return waitFor(
    `assignment ${id}`,
    async () => {
      const view = await serverCliIn(c.name, ['assignment', 'show', id]);
      return TERMINAL.has(view.state) ? view : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 300 },
  );
}

/** The uid the container's main process runs as, read from the host's /proc (not from inside). */
async function mainProcessUid(c: Started): Promise<number> {
  const pid = (await podman(['inspect', '-f', '{{.State.Pid}}', c.name])).stdout.trim();
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
}

describe.skipIf(Boolean(missing))('the server image', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-image-'));
    // The suite's build already ran; this stages and builds the image (cached layers and deps).
    const { stdout } = await execFileP(process.execPath, [path.join(ROOT, 'scripts/image/build.mjs'), '--no-build'], {
      cwd: ROOT,
      maxBuffer: 64 * 1024 * 1024,
      timeout: 15 * 60_000,
    });
    image = JSON.parse(stdout.trim().split('\n').at(-1)!).tag;
  }, 16 * 60_000);

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    for (const c of containers) await podman(['rm', '-f', '-t', '2', c], { allowFail: true });
    for (const v of volumes) await podman(['volume', 'rm', '-f', v], { allowFail: true });
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('runs as a non-root user, updates a model through a real agent, and keeps devices, history and the audit chain across a restart', async () => {
    const volume = `meshanics-image-data-${suffix}`;
    volumes.push(volume);
    await podman(['volume', 'create', volume]);
    const c = await startContainer('sqlite', volume);

    expect(await mainProcessUid(c)).toBe(10001);
    expect((await podman(['healthcheck', 'run', c.name], { allowFail: true })).code).toBe(0);

    const creds = await enrollDevice(c, 'lab', 'edge-1');
    const agentDir = path.join(root, 'agent-sqlite');
    const agent = startAgent(c, creds, agentDir);
    agents.push(agent);
    await agent.waitForLine((l: any) => l?.msg === 'registered');

    const ready = path.join(root, 'ready-v1');
    await writeFile(ready, 'ok');
    const v1 = randomBytes(64 * 1024);
    const good = await publishAndAssign(c, { fleet: 'lab', device: 'edge-1', version: '1.0.0', bytes: v1, readyFile: ready });
    expect((await waitTerminal(c, good)).state).toBe('HEALTHY');
    const bad = await publishAndAssign(c, {
      fleet: 'lab',
      device: 'edge-1',
      version: '2.0.0',
      bytes: randomBytes(32 * 1024),
      readyFile: path.join(root, 'never'),
    });
    expect((await waitTerminal(c, bad)).state).toBe('ROLLED_BACK');
    expect(await readFile(path.join(agentDir, 'artifacts', 'model', 'detector', 'model'))).toEqual(v1);

    // SIGTERM drains and exits 0; the volume keeps everything for the next start.
    await podman(['stop', '-t', '20', c.name]);
    expect((await podman(['inspect', '-f', '{{.State.ExitCode}}', c.name])).stdout.trim()).toBe('0');
    await restart(c);
    const view = await serverCliIn(c.name, ['assignment', 'show', bad]);
    expect(view.state).toBe('ROLLED_BACK');
    expect(view.reports.map((r: { state: string }) => r.state)).toContain('APPLYING');
    const audit = await podman(['exec', c.name, 'meshanics-server', 'audit', 'verify'], { allowFail: true });
    expect(audit.code, audit.stderr).toBe(0);
    // The device, its certificate and the TUF repository survived: the same agent, with the
    // credentials it already has, takes one more update from the restarted server.
    const v3 = randomBytes(48 * 1024);
    const after = await publishAndAssign(c, { fleet: 'lab', device: 'edge-1', version: '3.0.0', bytes: v3, readyFile: ready });
    expect((await waitTerminal(c, after)).state).toBe('HEALTHY');
    expect(await readFile(path.join(agentDir, 'artifacts', 'model', 'detector', 'model'))).toEqual(v3);
  }, 180_000);

  it('runs the same image against the host PostgreSQL (host network, MESHANICS_DATABASE_URL)', async () => {
    const db = `meshanics_image_${suffix}`;
    const admin = new pg.Client({ connectionString: PG_URL });
    try {
      await admin.connect();
    } catch (err) {
      if (inCi) throw err;
      console.warn(`PostgreSQL unavailable at ${PG_URL}: skipping the PostgreSQL image case`);
      return;
    }
    await admin.query(`CREATE DATABASE ${db}`);
    const url = new URL(PG_URL);
    url.pathname = `/${db}`;
    const volume = `meshanics-image-pg-${suffix}`;
    volumes.push(volume);
    try {
      await podman(['volume', 'create', volume]);
      const c = await startContainer('postgres', volume, { MESHANICS_DATABASE_URL: url.toString() });
      const creds = await enrollDevice(c, 'lab', 'edge-pg');
      const agent = startAgent(c, creds, path.join(root, 'agent-pg'));
      agents.push(agent);
      await agent.waitForLine((l: any) => l?.msg === 'registered');
      const ready = path.join(root, 'ready-pg');
      await writeFile(ready, 'ok');
      const id = await publishAndAssign(c, { fleet: 'lab', device: 'edge-pg', version: '1.0.0', bytes: randomBytes(16 * 1024), readyFile: ready });
      expect((await waitTerminal(c, id)).state).toBe('HEALTHY');
      // The records are in PostgreSQL, not in a SQLite file in the volume.
      const check = new pg.Client({ connectionString: url.toString() });
      await check.connect();
      const { rows } = await check.query('SELECT count(*)::int AS n FROM devices');
      await check.end();
      expect(rows[0].n).toBe(1);
      await agent.stop();
      await podman(['rm', '-f', '-t', '5', c.name]);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      await admin.end();
    }
  }, 180_000);
});
