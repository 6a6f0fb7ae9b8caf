// Online key rotation (issue 29) with real processes: a running `serve` and three real agents,
// root and targets keys already offline (the ceremony of tuf-offline-keys.test.ts). The
// snapshot, timestamp and publisher keys are replaced twice: once while a rollout is in
// progress (the second wave is approved as the import starts) and once between two rollouts.
// Which files an agent's refresh reads across the import's commits is a matter of timing here;
// every interleaving is checked in-process by server/tests/tuf-online-rotation.test.ts. Every assignment must end HEALTHY (none FAILED), every agent
// must trust the new root (TUF spec 5.3: root first, then timestamp and snapshot verified with
// its keys), and the old private keys must be gone from the server's data dir.
import * as crypto from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverCli, startAgent, startServer, type Child } from '../../scripts/lib/processes.mjs';
import { publishModel, rolloutCreateArgs, waitFor } from './helpers/steps.js';

const FLEET = 'e2e';
const AGENTS = ['edge-1', 'edge-2', 'edge-3'];

let root: string;
let serverDir: string;
let offlineKeys: string;
let transfer: string;
let readyFile: string;
let server: Child;
const agents: Child[] = [];
const versions = new Map<string, Buffer>();

interface RolloutView {
  id: string;
  status: string;
  counts: Record<string, number>;
  devices: Array<{ name: string; wave: number; state: string }>;
}

const keysDir = () => path.join(serverDir, 'tuf', 'keys');
const trustedRootVersion = (agent: string) =>
  (JSON.parse(readFileSync(path.join(root, 'agents', agent, 'tuf', 'root.json'), 'utf8')) as { signed: { version: number } }).signed.version;
const liveModel = (agent: string) => path.join(root, 'agents', agent, 'artifacts', 'model', 'detector', 'model');

async function publish(version: string): Promise<void> {
  const bytes = crypto.randomBytes(256 * 1024);
  versions.set(version, bytes);
  await publishModel(serverDir, root, { name: 'detector', version }, bytes);
}

function createRollout(version: string, strategy?: unknown): Promise<RolloutView> {
  return serverCli(serverDir, rolloutCreateArgs({ fleet: FLEET, artifact: `detector@${version}`, group: 'everyone', readyFile, strategy }));
}

const show = (id: string): Promise<RolloutView> => serverCli(serverDir, ['rollout', 'show', id]);

/** Every key id held in a .pem of the server's keys dir. */
function keyidsOnDisk(): string[] {
  return readdirSync(keysDir())
    .filter((f) => f.endsWith('.pem'))
    .map((f) => {
      const hex = Buffer.from(crypto.createPublicKey(crypto.createPrivateKey(readFileSync(path.join(keysDir(), f)))).export({ format: 'jwk' }).x!, 'base64url').toString('hex');
      return crypto
        .createHash('sha256')
        .update(JSON.stringify({ keytype: 'ed25519', keyval: { public: hex }, scheme: 'ed25519' }))
        .digest('hex');
    });
}

/** The offline machine's part: root and targets N+1 naming the keys of EXPORT, signed with the offline keys. */
async function signOffline(exportFile: string, label: string): Promise<{ root: string; targets: string; version: number }> {
  const rootFile = path.join(transfer, `root-${label}.json`);
  const targetsFile = path.join(transfer, `targets-${label}.json`);
  const signed = await serverCli(serverDir, ['tuf', 'sign-root', '--keys', offlineKeys, '--online-keys', exportFile, '--out', rootFile]);
  await serverCli(serverDir, ['tuf', 'sign-targets', '--keys', offlineKeys, '--online-keys', exportFile, '--root', rootFile, '--out', targetsFile]);
  return { root: rootFile, targets: targetsFile, version: signed.version as number };
}

/** Stages a rotation and has it signed offline; returns the files to import and the key ids before and after. */
async function prepareRotation(label: string) {
  const before = await serverCli(serverDir, ['tuf', 'online-keys']);
  const exportFile = path.join(transfer, `rotation-${label}.json`);
  const staged = await serverCli(serverDir, ['tuf', 'rotate-online', '--stage', '--out', exportFile]);
  return { ...(await signOffline(exportFile, label)), old: before.keys as Record<string, { keyid: string }>, next: staged.pending.keyids as Record<string, string> };
}

function expectRotated(rotation: Awaited<ReturnType<typeof prepareRotation>>) {
  const onDisk = keyidsOnDisk();
  for (const role of ['snapshot', 'timestamp', 'publisher']) {
    expect(onDisk).toContain(rotation.next[role]);
    expect(onDisk).not.toContain(rotation.old[role]!.keyid);
  }
  expect(readdirSync(keysDir()).filter((f) => f.startsWith('pending'))).toEqual([]);
}

async function expectAllHealthy(id: string, version: string): Promise<RolloutView> {
  const done = await waitFor(
    `the ${version} rollout to complete`,
    async () => {
      const d = await show(id);
      // A FAILED device halts the rollout (max_failure_rate 0): fail at once instead of timing out.
      if (d.status === 'halted' || d.devices.some((x) => x.state === 'FAILED' || x.state === 'ROLLED_BACK')) return d;
      return d.status === 'completed' && d;
    },
    { timeoutMs: 90_000 },
  );
  expect(done.devices.map((d) => [d.name, d.state]).sort()).toEqual(AGENTS.map((a) => [a, 'HEALTHY']));
  for (const a of AGENTS) expect(await readFile(liveModel(a))).toEqual(versions.get(version));
  return done;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-e2e-tuf-rotate-'));
  serverDir = path.join(root, 'server');
  offlineKeys = path.join(root, 'offline-machine', 'keys');
  transfer = path.join(root, 'transfer');
  readyFile = path.join(root, 'ready');
  await mkdir(transfer, { recursive: true });
  await writeFile(readyFile, 'ok');
  server = await startServer(serverDir);
  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', FLEET, '--names', AGENTS.join(','), '--out', path.join(root, 'creds')]);
  for (const name of AGENTS) {
    await mkdir(path.join(root, 'agents', name), { recursive: true });
    agents.push(startAgent(server, path.join(root, 'creds', name), path.join(root, 'agents', name)));
  }
  await Promise.all(agents.map((a) => a.waitForLine((l: { msg?: string }) => l?.msg === 'registered')));
  await serverCli(serverDir, ['group', 'create', '--fleet', FLEET, '--name', 'everyone', '--devices', AGENTS.join(',')]);
  // Root and targets keys offline first: the state in which online keys are rotated.
  await serverCli(serverDir, ['tuf', 'keygen', '--role', 'root', '--out', offlineKeys]);
  await serverCli(serverDir, ['tuf', 'keygen', '--role', 'targets', '--out', offlineKeys]);
  const onlineKeys = path.join(transfer, 'online-keys.json');
  await serverCli(serverDir, ['tuf', 'online-keys', '--out', onlineKeys]);
  const first = await signOffline(onlineKeys, 'offline');
  await serverCli(serverDir, ['tuf', 'import', '--root', first.root, '--targets', first.targets]);
}, 120_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('online key rotation under a running fleet of real agents', () => {
  it('1.0.0 rolls out under root v2 (root and targets offline)', async () => {
    await publish('1.0.0');
    await expectAllHealthy((await createRollout('1.0.0')).id, '1.0.0');
    for (const a of AGENTS) expect(trustedRootVersion(a)).toBe(2);
  });

  it('rotates snapshot, timestamp and publisher keys while the 2.0.0 rollout runs: first wave before, second wave started as the import runs; all HEALTHY', async () => {
    await publish('2.0.0');
    const rotation = await prepareRotation('during');
    expect(rotation.version).toBe(3);
    const r = await createRollout('2.0.0', {
      waves: [
        { percent: 34, approval: 'auto' },
        { percent: 100, approval: 'manual' },
      ],
      max_failure_rate: 0,
    });
    // The first wave installs with the keys still active (the staged ones sign nothing yet).
    const waiting = await waitFor(
      'the first wave to be done',
      async () => {
        const d = await show(r.id);
        if (d.status === 'halted') return d;
        return d.status === 'waiting_approval' && d;
      },
      { timeoutMs: 90_000 },
    );
    expect(waiting.status).toBe('waiting_approval');
    // The second wave starts as the import runs: its agent gets the assignment within a heartbeat
    // of the approval, while the import's commits are being written or just before. (Approve
    // first, not at the same time: two CLI writers contend for the SQLite write lock, and the
    // import holds it for its whole commit, seconds on a busy machine.)
    await serverCli(serverDir, ['rollout', 'approve', r.id]);
    const imported = await serverCli(serverDir, ['tuf', 'import', '--root', rotation.root, '--targets', rotation.targets]);
    expect(imported.activatedOnlineKeys.keyids).toEqual(rotation.next);
    expectRotated(rotation);
    const done = await expectAllHealthy(r.id, '2.0.0');
    // The first wave's agents still trust root v2 (they resolved before the import); the second
    // wave's raced it: v2 or v3. The next test sees every agent move on to v4.
    for (const d of done.devices.filter((x) => x.wave === 0)) expect(trustedRootVersion(d.name)).toBe(2);
    const secondWave = done.devices.filter((x) => x.wave > 0).map((d) => trustedRootVersion(d.name));
    expect(secondWave.length).toBeGreaterThan(0);
    for (const v of secondWave) expect([2, 3]).toContain(v);
    console.info(`second wave trusted root after the rollout: ${secondWave.join(', ')}`);
  });

  it('rotates again between two rollouts: 3.0.0 installs everywhere under root v4 with the new keys', async () => {
    await publish('3.0.0');
    const rotation = await prepareRotation('between');
    expect(rotation.version).toBe(4);
    await serverCli(serverDir, ['tuf', 'import', '--root', rotation.root, '--targets', rotation.targets]);
    expectRotated(rotation);
    await expectAllHealthy((await createRollout('3.0.0')).id, '3.0.0');
    for (const a of AGENTS) expect(trustedRootVersion(a)).toBe(4);
    const status = await serverCli(serverDir, ['tuf', 'status']);
    expect(status.keys).toEqual({ online: ['snapshot', 'timestamp', 'publisher'], offline: ['root', 'targets'] });
    expect(status.versions.root).toBe(4);
  });

  it('audits each stage and activation in the verified chain, and no agent ever reported FAILED', async () => {
    const auditFile = path.join(root, 'audit.ndjson');
    const audit = await serverCli(serverDir, ['audit', 'export', '--out', auditFile]);
    expect(audit.chain.verified).toBe(true);
    const actions = readFileSync(auditFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { action?: string }).action)
      .filter((a) => a === 'tuf.online_keys_staged' || a === 'tuf.online_keys_rotated');
    expect(actions).toEqual(['tuf.online_keys_staged', 'tuf.online_keys_rotated', 'tuf.online_keys_staged', 'tuf.online_keys_rotated']);
    for (const agent of agents) expect(agent.lines.filter((l) => l.includes('"FAILED"') || l.includes('MESH_ERR_TUF'))).toEqual([]);
  });
});
