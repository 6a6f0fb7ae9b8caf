// Backup and restore end to end (issue 29), with real processes on 127.0.0.1: the server
// binary and three real agent binaries. A rollout waits for approval after its first wave;
// `backup` runs against the live server; afterwards a publish and an assignment move the TUF
// versions the agents trust past the backup's. The server is then killed (SIGKILL) and its data
// dir removed, `restore --bump-tuf-versions` brings the backup back, and a server on the same
// addresses starts from it. The agents, never restarted and never enrolled again, reconnect;
// everything reported before the backup is still there; the approved rollout completes (the
// agent that saw the newer TUF metadata included); the audit chain verifies.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRollout, openDataDir, type MeshanicsContext } from '@meshanics/server';
import { serverCli, startAgent, startServer, waitForAssignment, type Child } from '../../scripts/lib/processes.mjs';
import { assignArgs, publishModel, rolloutCreateArgs, waitFor } from './helpers/steps.js';

const FLEET = 'e2e';
const AGENTS = ['agent-0', 'agent-1', 'agent-2'];

let root: string;
let serverDir: string;
let readyFile: string;
let server: Child;
let observer: MeshanicsContext | undefined;
const agents = new Map<string, Child>();
const v1 = randomBytes(32 * 1024);
const v2 = randomBytes(32 * 1024);
const liveModel = (agent: string, name = 'detector') => path.join(root, 'agents', agent, 'artifacts', 'model', name, 'model');

interface RolloutView {
  id: string;
  status: string;
  counts: Record<string, number>;
  devices: Array<{ name: string; wave: number; state: string }>;
}
interface AuditLine {
  seq: number;
  hash: string;
  action: string;
  subject: string;
}

const show = async (id: string): Promise<RolloutView> => getRollout(observer!, id);

async function exportAudit(): Promise<AuditLine[]> {
  const file = path.join(root, `audit-${Date.now()}.ndjson`);
  const result = await serverCli(serverDir, ['audit', 'export', '--out', file]);
  expect(result.chain.verified).toBe(true);
  return (await readFile(file, 'utf8'))
    .trimEnd()
    .split('\n')
    .slice(0, -1)
    .map((l) => JSON.parse(l) as AuditLine);
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-e2e-backup-'));
  serverDir = path.join(root, 'server');
  readyFile = path.join(root, 'ready');
  await writeFile(readyFile, 'ok');
  server = await startServer(serverDir);
  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', FLEET, '--names', AGENTS.join(','), '--out', path.join(root, 'creds')]);
  observer = await openDataDir({ dataDir: serverDir });
  for (const name of AGENTS) {
    await mkdir(path.join(root, 'agents', name), { recursive: true });
    agents.set(name, startAgent(server, path.join(root, 'creds', name), path.join(root, 'agents', name)));
  }
  await Promise.all([...agents.values()].map((a) => a.waitForLine((l: { msg?: string }) => l?.msg === 'registered')));
  await serverCli(serverDir, ['group', 'create', '--fleet', FLEET, '--name', 'everyone', '--devices', AGENTS.join(',')]);
  await publishModel(serverDir, root, { name: 'detector', version: '1.0.0' }, v1);
  await publishModel(serverDir, root, { name: 'detector', version: '2.0.0' }, v2);
}, 60_000);

afterAll(async () => {
  await Promise.all([...agents.values()].map((a) => a.stop()));
  await observer?.close();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('backup and restore of a running server', () => {
  it('restores a mid-rollout backup after the server is destroyed: agents reconnect without enrolling, the rollout completes, the audit chain verifies', async () => {
    const first = await serverCli(serverDir, rolloutCreateArgs({ fleet: FLEET, artifact: 'detector@1.0.0', group: 'everyone', readyFile }));
    await waitFor('the 1.0.0 rollout to complete', async () => (await show(first.id)).status === 'completed', { timeoutMs: 60_000 });

    // Mid-rollout: one device on 2.0.0, the rest waiting for the manual wave's approval.
    const rollout: RolloutView = await serverCli(
      serverDir,
      rolloutCreateArgs({
        fleet: FLEET,
        artifact: 'detector@2.0.0',
        group: 'everyone',
        readyFile,
        strategy: {
          waves: [
            { percent: 33, approval: 'auto' },
            { percent: 100, approval: 'manual' },
          ],
        },
      }),
    );
    const waiting = await waitFor(
      'the manual wave to wait for approval',
      async () => {
        const d = await show(rollout.id);
        return d.status === 'waiting_approval' && d;
      },
      { timeoutMs: 60_000 },
    );
    expect(waiting.counts).toMatchObject({ HEALTHY: 1, PENDING: 2 });
    const auditBefore = await exportAudit();

    const archive = path.join(root, 'backup', 'meshanics.tar');
    await mkdir(path.dirname(archive));
    const backup = await serverCli(serverDir, ['backup', '--out', archive]);
    expect(backup.manifest).toMatchObject({
      database: { engine: 'sqlite', included: true },
      auditHead: { seq: auditBefore.at(-1)!.seq, hash: auditBefore.at(-1)!.hash },
    });

    // After the backup: a publish and an assignment the backup does not hold. The agent that
    // installs it trusts TUF versions above the backup's from then on.
    const late = waiting.devices.find((d) => d.state === 'PENDING')!.name;
    await publishModel(serverDir, root, { name: 'other', version: '1.0.0' }, randomBytes(1024));
    const assigned = await serverCli(serverDir, assignArgs({ fleet: FLEET, device: late, artifact: 'other@1.0.0', readyFile, probeTimeout: 2 }));
    expect((await waitForAssignment(serverDir, assigned.assignmentId)).state).toBe('HEALTHY');
    const trustedAfterBackup = observer!.tuf.versions();
    expect(trustedAfterBackup.timestamp).toBeGreaterThan(backup.manifest.tuf.timestamp);

    // The server is destroyed.
    const addresses = { grpc: server.grpc, artifacts: new URL(server.artifacts).host, enroll: new URL(server.enroll).host };
    expect((await server.stop('SIGKILL')).signal).toBe('SIGKILL');
    await observer!.close();
    observer = undefined;
    await rm(serverDir, { recursive: true, force: true });

    const restored = await serverCli(serverDir, ['restore', '--from', archive, '--bump-tuf-versions', '10']);
    expect(restored.tuf.restored.timestamp).toBe(backup.manifest.tuf.timestamp + 10);
    expect(restored.tuf.restored.timestamp).toBeGreaterThan(trustedAfterBackup.timestamp);
    server = await startServer(serverDir, {
      extraArgs: ['--grpc-listen', addresses.grpc, '--artifact-listen', addresses.artifacts, '--enroll-listen', addresses.enroll],
    });
    expect(server.grpc).toBe(addresses.grpc);
    observer = await openDataDir({ dataDir: serverDir });

    // Nothing reported before the backup is lost: the rollout's state and the audit trail up to its head.
    expect(await show(rollout.id)).toMatchObject({ status: 'waiting_approval', counts: { HEALTHY: 1, PENDING: 2 } });
    expect((await exportAudit()).slice(0, auditBefore.length)).toEqual(auditBefore);

    await serverCli(serverDir, ['rollout', 'approve', rollout.id]);
    const done = await waitFor(
      'the 2.0.0 rollout to complete on the restored server',
      async () => {
        const d = await show(rollout.id);
        return d.status === 'completed' && d;
      },
      { timeoutMs: 90_000 },
    );
    expect(done.counts.HEALTHY).toBe(3);
    for (const a of AGENTS) expect(await readFile(liveModel(a))).toEqual(v2);

    // The same agent processes all along, never enrolled again.
    for (const [name, agent] of agents) {
      expect(agent.proc.exitCode, name).toBeNull();
      expect(agent.lines.filter((l) => l.includes('"msg":"enrolled"'))).toEqual([]);
    }
    const verify = await serverCli(serverDir, ['audit', 'verify']);
    expect(verify.verified).toBe(true);
    expect(verify.count).toBeGreaterThan(auditBefore.length);
  }, 240_000);
});
