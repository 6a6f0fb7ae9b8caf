// An agent run with options over an enrolled identity, with real processes against a real
// server: offboarding wipes the key and certificate the agent was actually using (not only
// the enrolled ones), and device tags come from --tag / MESHANICS_TAGS / the config file in
// that order of precedence.
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDataDir, type MeshanicsContext } from '@meshanics/server';
import { AGENT_CLI, agentRunArgs, serverCli, spawnAgent, spawnNode, startServer, type Child } from '../../scripts/lib/processes.mjs';

let root: string;
let serverDir: string;
let server: Child;
let ctx: MeshanicsContext;
let caFingerprint: string;
const agents: Child[] = [];

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-e2e-overrides-'));
  serverDir = path.join(root, 'server');
  server = await startServer(serverDir);
  ctx = await openDataDir({ dataDir: serverDir });
  caFingerprint = new X509Certificate(await readFile(path.join(serverDir, 'pki', 'ca.crt'))).fingerprint256;
});

afterAll(async () => {
  for (const a of agents) await a.stop('SIGKILL');
  await ctx?.close();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
});

async function enroll(name: string, dataDir: string): Promise<void> {
  const { token } = await serverCli(serverDir, ['enroll-token', 'create', '--fleet', 'opts']);
  const child = spawnAgent(['enroll', '--server', server.enroll, '--token', token, '--name', name, '--ca-fingerprint', caFingerprint, '--data-dir', dataDir]);
  expect((await child.exit).code).toBe(0);
}

function device(name: string) {
  return ctx.store.getDeviceBySpiffeId(`spiffe://meshanics.local/fleet/opts/device/${name}`);
}

describe('agent options over an enrolled identity', () => {
  it('an enrolled agent run with --cert/--key wipes those files too when decommissioned, and tags from MESHANICS_TAGS reach the server', async () => {
    const dataDir = path.join(root, 'enrolled');
    await enroll('edge-enrolled', dataDir);
    // The identity the agent is told to use instead: another device's key and certificate.
    const creds = path.join(root, 'override-creds');
    await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'opts', '--name', 'edge-override', '--out', creds]);
    const agent = spawnNode(
      'agent',
      AGENT_CLI,
      ['run', '--data-dir', dataDir, '--cert', path.join(creds, 'device.crt'), '--key', path.join(creds, 'device.key'), '--container-runtime', 'none'],
      {
        MESHANICS_TAGS: 'site=lab,rack=7',
      },
    );
    agents.push(agent);
    await agent.waitForLine((l: { msg?: string }) => l?.msg === 'registered');
    expect((await device('edge-override'))?.tags).toEqual({ site: 'lab', rack: '7' });
    expect((await device('edge-enrolled'))?.registeredAt ?? null).toBeNull();

    await serverCli(serverDir, ['device', 'decommission', '--fleet', 'opts', '--name', 'edge-override']);
    expect((await agent.exit).code).toBe(3);
    // The key it held is gone, and so is everything under identity/.
    expect(existsSync(path.join(creds, 'device.key'))).toBe(false);
    expect(existsSync(path.join(creds, 'device.crt'))).toBe(false);
    expect(existsSync(path.join(dataDir, 'identity'))).toBe(false);
    expect(existsSync(path.join(dataDir, 'OFFBOARDED'))).toBe(true);
  }, 90_000);

  it("--tag wins over MESHANICS_TAGS, and both over the config file's tags (which they add to)", async () => {
    const dataDir = path.join(root, 'tags');
    const creds = path.join(root, 'tag-creds');
    await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'opts', '--name', 'edge-tags', '--out', creds]);
    const config = path.join(root, 'agent.json');
    await writeFile(config, JSON.stringify({ tags: { zone: 'from-config', site: 'from-config' }, allowlist: {} }));
    const args = [...agentRunArgs(server, creds, dataDir), '--config', config, '--container-runtime', 'none'];
    const withEnv = spawnNode('agent', AGENT_CLI, args, { MESHANICS_TAGS: 'site=from-env,rack=7' });
    agents.push(withEnv);
    await withEnv.waitForLine((l: { msg?: string }) => l?.msg === 'registered');
    expect((await device('edge-tags'))?.tags).toEqual({ zone: 'from-config', site: 'from-env', rack: '7' });
    await withEnv.stop();

    const withFlag = spawnNode('agent', AGENT_CLI, [...args, '--tag', 'site=from-flag', '--tag', 'row=2'], { MESHANICS_TAGS: 'site=from-env,rack=7' });
    agents.push(withFlag);
    await withFlag.waitForLine((l: { msg?: string }) => l?.msg === 'registered');
    // Register refreshes the tags: the flags replace the variable's list, the file's stay under them.
    expect((await device('edge-tags'))?.tags).toEqual({ zone: 'from-config', site: 'from-flag', row: '2' });
    await withFlag.stop();
  }, 90_000);
});
