// Config artifacts end to end with real processes: the server and agent binaries, a device
// config with allowlists, an allowlisted reload binary, real files.
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverCli, startAgent, startServer, waitForAssignment, type Child } from '../../scripts/lib/processes.mjs';
import { assignArgs } from './helpers/steps.js';

let root: string;
let serverDir: string;
let certDir: string;
let agentDir: string;
let agentConfig: string;
let etc: string;
let reload: string;
let reloadLog: string;
let server: Child;
let agent: Child;
let version = 0;

function runAgent(): Child {
  return startAgent(server, certDir, agentDir, { extraArgs: ['--config', agentConfig] });
}

async function deploy(content: string, probe: { initialDelay?: number } = {}) {
  version += 1;
  const file = path.join(root, `app-${version}.conf`);
  await writeFile(file, content);
  const dest = path.join(etc, 'app.conf');
  await serverCli(serverDir, [
    'artifact',
    'publish',
    file,
    '--name',
    'app-conf',
    '--version',
    `${version}.0`,
    '--kind',
    'config',
    '--spec',
    JSON.stringify({ destination: dest, mode: '0644', reload: { exec: [reload, dest] } }),
  ]);
  const ready = path.join(root, 'ready');
  const { assignmentId } = await serverCli(serverDir, [
    ...assignArgs({ fleet: 'cfg', device: 'edge-1', artifact: `app-conf@${version}.0`, readyFile: ready }),
    '--probe-initial-delay',
    String(probe.initialDelay ?? 0),
  ]);
  return { assignmentId: assignmentId as string, dest };
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-e2e-config-'));
  serverDir = path.join(root, 'server');
  certDir = path.join(root, 'creds');
  agentDir = path.join(root, 'agent');
  etc = path.join(root, 'etc', 'app');
  await mkdir(etc, { recursive: true });
  await writeFile(path.join(root, 'ready'), 'ok');
  reloadLog = path.join(root, 'reloads.log');
  // Like a daemon that refuses a bad file on reload.
  reload = path.join(root, 'reload-app');
  await writeFile(reload, `#!/bin/sh\necho "$(cat "$1")" >> ${reloadLog}\nif grep -q broken "$1"; then echo "app: invalid config" >&2; exit 1; fi\n`);
  await chmod(reload, 0o755);
  agentConfig = path.join(root, 'agent.json');
  await writeFile(agentConfig, JSON.stringify({ allowlist: { writePaths: [path.join(root, 'etc')], execBinaries: [reload] } }));
  server = await startServer(serverDir);
  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'cfg', '--name', 'edge-1', '--out', certDir]);
  agent = runAgent();
  await agent.waitForLine((l) => l?.msg === 'registered');
});

afterAll(async () => {
  await agent?.stop();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('config artifacts end to end', () => {
  it('rolls back a config whose reload fails; the old file is byte-identical', async () => {
    const good = await deploy('threads = 4\n');
    expect((await waitForAssignment(serverDir, good.assignmentId)).state).toBe('HEALTHY');
    const before = await readFile(good.dest);

    const bad = await deploy('threads = broken\n');
    const view = await waitForAssignment(serverDir, bad.assignmentId);
    expect(view.state).toBe('ROLLED_BACK');
    expect(view.reason).toContain('MESH_ERR_RELOAD_FAILED');
    expect(view.reason).toContain('app: invalid config');
    expect(await readFile(good.dest)).toEqual(before);
    // Reloaded for the good file, the bad one, and the good one again after the rollback.
    expect((await readFile(reloadLog, 'utf8')).trim().split('\n').slice(-3)).toEqual(['threads = 4', 'threads = broken', 'threads = 4']);
  });

  it('rolls back when the agent is killed between the swap and the probe', async () => {
    const before = await readFile(path.join(etc, 'app.conf'));
    // A long initial delay holds the agent between swap and probe.
    const next = await deploy('threads = 8\n', { initialDelay: 120 });
    const deadline = Date.now() + 30_000;
    // Live and reloaded: the agent is now waiting to probe.
    while ((await readFile(reloadLog, 'utf8')).trim().split('\n').at(-1) !== 'threads = 8') {
      if (Date.now() > deadline) throw new Error('the new config never went live');
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 300));
    const killed = await agent.stop('SIGKILL');
    expect(killed.signal).toBe('SIGKILL');
    expect(await readFile(next.dest, 'utf8')).toBe('threads = 8\n');

    agent = runAgent();
    const view = await waitForAssignment(serverDir, next.assignmentId);
    expect(view.state).toBe('ROLLED_BACK');
    expect(view.reason).toContain('agent restarted during probing; previous version restored');
    expect(await readFile(next.dest)).toEqual(before);
    expect((await readFile(reloadLog, 'utf8')).trim().split('\n').at(-1)).toBe('threads = 4');
    // No report was lost or counted twice: sequences strictly increase.
    const seqs = view.reports.map((r: { sequence: number }) => r.sequence);
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it('fails an assignment outside the allowlist without touching the disk', async () => {
    const file = path.join(root, 'evil.conf');
    await writeFile(file, 'evil\n');
    await serverCli(serverDir, [
      'artifact',
      'publish',
      file,
      '--name',
      'evil-conf',
      '--version',
      '1',
      '--kind',
      'config',
      '--spec',
      JSON.stringify({ destination: path.join(root, 'outside', 'evil.conf'), mode: '0644' }),
    ]);
    const { assignmentId } = await serverCli(serverDir, [
      'assign',
      '--fleet',
      'cfg',
      '--device',
      'edge-1',
      '--artifact',
      'evil-conf@1',
      '--probe-type',
      'file',
      '--probe-spec',
      JSON.stringify({ path: path.join(root, 'ready') }),
    ]);
    const view = await waitForAssignment(serverDir, assignmentId);
    expect(view.state).toBe('FAILED');
    expect(view.reason).toContain('allowlist.writePaths');
    await expect(readFile(path.join(root, 'outside', 'evil.conf'))).rejects.toThrow(/ENOENT/);
  });
});
