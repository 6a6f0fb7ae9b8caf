// Disk full on the device (issue 29), with a real server and a real agent process on
// 127.0.0.1. The agent's data dir is a small tmpfs (downloads are staged there), and its
// artifacts folder a second, smaller one (a device whose applications' data sits on its own
// partition: applying then copies across file systems). Real ENOSPC from the kernel, no mock:
//   - an artifact larger than the data dir's free space: ENOSPC while downloading;
//   - one that downloads but does not fit the artifacts partition: ENOSPC while applying.
// Each must end FAILED or ROLLED_BACK with a reason naming the full disk, with nothing torn
// (v1's bytes live, no temp file left beside it, the partial download gone so the space is
// free again), the agent still running; and once space is back the next assignment succeeds.
// Needs root (mount -t tmpfs); skipped with the reason otherwise.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverCli, startAgent, startServer, waitForAssignment, type Child } from '../../scripts/lib/processes.mjs';
import { assignArgs, publishModel } from '../e2e/helpers/steps.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function canMountTmpfs(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: mounting a tmpfs needs root';
  const probe = path.join(os.tmpdir(), `meshanics-mount-probe-${process.pid}`);
  try {
    execFileSync('mkdir', ['-p', probe]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'pipe' });
    execFileSync('umount', [probe]);
    return undefined;
  } catch (err) {
    return `mount -t tmpfs failed: ${(err as Error).message}`;
  } finally {
    execFileSync('rm', ['-rf', probe]);
  }
}
const skipReason = canMountTmpfs();
if (skipReason) console.warn(`disk-full tests skipped: ${skipReason}`);

let root: string;
let serverDir: string;
let agentDir: string;
let artifactsDir: string;
let readyFile: string;
let server: Child;
let agent: Child;
const mounts: string[] = [];
const v1 = randomBytes(256 * KiB);

function mountTmpfs(dir: string, size: string): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
  mounts.unshift(dir);
}
const liveModel = () => path.join(artifactsDir, 'model', 'detector', 'model');

async function assign(version: string): Promise<{ state: string; reports: Array<{ state: string; message?: string; reason?: string }> }> {
  const { assignmentId } = await serverCli(serverDir, assignArgs({ fleet: 'e2e', device: 'edge-1', artifact: `detector@${version}`, readyFile, probeTimeout: 2 }));
  return waitForAssignment(serverDir, assignmentId, { timeoutMs: 60_000 });
}

/** Every file under `dir` whose name marks it as temporary or partial. */
async function strayFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile() && /\.(tmp|incoming|part)|incoming-|tmp-/.test(e.name)).map((e) => path.join(e.parentPath, e.name));
}

describe.skipIf(skipReason !== undefined)('disk full on the device', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-disk-full-'));
    serverDir = path.join(root, 'server');
    agentDir = path.join(root, 'agent');
    artifactsDir = path.join(agentDir, 'artifacts');
    readyFile = path.join(root, 'ready');
    await writeFile(readyFile, 'ok');
    await mkdir(agentDir);
    mountTmpfs(agentDir, '2m');
    await mkdir(artifactsDir);
    mountTmpfs(artifactsDir, '1m');
    server = await startServer(serverDir);
    const certDir = path.join(root, 'creds');
    await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'e2e', '--name', 'edge-1', '--out', certDir]);
    agent = startAgent(server, certDir, agentDir);
    await agent.waitForLine((l: { msg?: string }) => l?.msg === 'registered');
    await publishModel(serverDir, root, { name: 'detector', version: '1.0.0' }, v1);
    await publishModel(serverDir, root, { name: 'detector', version: '2.0.0' }, randomBytes(4 * MiB));
    await publishModel(serverDir, root, { name: 'detector', version: '3.0.0' }, randomBytes(1200 * KiB));
    expect((await assign('1.0.0')).state).toBe('HEALTHY');
  }, 90_000);

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    for (const dir of mounts) execFileSync('umount', ['-l', dir]);
    if (root) await rm(root, { recursive: true, force: true });
  });

  async function expectNothingTorn(): Promise<void> {
    expect(await readFile(liveModel())).toEqual(v1);
    expect(await strayFiles(agentDir)).toEqual([]);
    expect(agent.proc.exitCode).toBeNull();
  }

  /** Assigns VERSION; it must end FAILED or ROLLED_BACK, its last report naming the full disk at STAGE. */
  async function expectDiskFull(version: string, stage: 'downloading' | 'applying'): Promise<void> {
    const result = await assign(version);
    expect(['FAILED', 'ROLLED_BACK']).toContain(result.state);
    expect(JSON.stringify(result.reports.at(-1))).toContain(`MESH_ERR_DISK_FULL: no space left on the device while ${stage}`);
    await expectNothingTorn();
  }

  it('fails a download that does not fit the data dir with a reason naming the full disk, and frees the space', async () => {
    await expectDiskFull('2.0.0', 'downloading');
  }, 90_000);

  it('fails an apply that does not fit the artifacts partition, v1 stays live', async () => {
    await expectDiskFull('3.0.0', 'applying');
  }, 90_000);

  it('installs the next assignment once there is space again', async () => {
    execFileSync('mount', ['-o', 'remount,size=16m', agentDir]);
    execFileSync('mount', ['-o', 'remount,size=16m', artifactsDir]);
    expect((await assign('2.0.0')).state).toBe('HEALTHY');
    expect((await readFile(liveModel())).length).toBe(4 * MiB);
    expect(await strayFiles(agentDir)).toEqual([]);
  }, 90_000);
});
