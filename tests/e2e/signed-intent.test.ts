// Strict signed intent (issue 29), end to end with real processes on 127.0.0.1: the server
// binary publishes artifacts (it signs each one's kind and spec into its TUF target as
// custom.meshanics), and agent binaries install them over gRPC/mTLS and the artifact HTTPS
// server. One target is then re-signed without custom.meshanics, as a repository published
// by something other than the Meshanics server would list it: its bin is re-signed with the
// server's own publisher key (what bins are signed with), then snapshot and timestamp with
// theirs (tests/faults/fixtures/tuf-craft.mjs). The catalog and the control plane still say
// kind "model": only the agent can notice that nothing signed says so.
// - A default agent refuses it: FAILED with MESH_ERR_TUF_INTENT_UNSIGNED, reported to the
//   server, nothing applied, the previous version live.
// - An agent whose agent.json sets tuf.allowUnsignedIntent installs it, and warns at every
//   start that the check is off.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverCli, startAgent, waitForAssignment, type Child } from '../../scripts/lib/processes.mjs';
import { Metadata, MetadataKind, ServedRepo, Targets, sign } from '../faults/fixtures/tuf-craft.mjs';
import { e2eDirs, publishModel, startServerWithAgent, stopAndRemove } from './helpers/steps.js';

let root: string;
let serverDir: string;
let certDir: string;
let agentDir: string;
let server: Child;
let agent: Child;
const v1 = randomBytes(64 * 1024);
const v2 = randomBytes(48 * 1024);
const WARNING = "tuf.allowUnsignedIntent is on: targets without a signed kind and spec (custom.meshanics) are accepted on the control plane's word alone";

async function assign(device: string, version: string): Promise<string> {
  const ready = path.join(root, 'ready');
  const { assignmentId } = await serverCli(serverDir, [
    'assign',
    '--fleet',
    'e2e',
    '--device',
    device,
    '--artifact',
    `detector@${version}`,
    '--probe-type',
    'file',
    '--probe-spec',
    JSON.stringify({ path: ready }),
    '--probe-timeout',
    '1',
    '--probe-attempts',
    '1',
  ]);
  return assignmentId as string;
}

/** The target entry the served bin of `targetPath` signs, as JSON. */
function servedTarget(repo: ServedRepo, targetPath: string): Record<string, unknown> {
  const bin = repo.binOf(targetPath);
  return repo.read(MetadataKind.Targets, `${bin.version}.${bin.role}.json`).signed.targets[targetPath]!.toJSON();
}

/** Re-signs the bin holding `targetPath` without its custom field (new bin, snapshot and timestamp versions). */
function stripSignedIntent(repo: ServedRepo, targetPath: string): void {
  const genuine = repo.current().versions;
  const bin = repo.binOf(targetPath);
  const current = repo.read(MetadataKind.Targets, `${bin.version}.${bin.role}.json`).signed;
  const json = current.toJSON();
  delete (json.targets as Record<string, Record<string, unknown>>)[targetPath]!.custom;
  const stripped = new Metadata(Targets.fromJSON({ ...json, version: bin.version + 1 }));
  const binBytes = repo.write(`${bin.version + 1}.${bin.role}.json`, sign(stripped, [repo.key('publisher')]));
  const snapshot = repo.write(`${genuine.snapshot + 1}.snapshot.json`, repo.snapshotFor(genuine.snapshot + 1, bin.version + 1, binBytes, { role: bin.role }));
  repo.write('timestamp.json', repo.timestampFor(genuine.snapshot + 1, snapshot));
}

beforeAll(async () => {
  ({ root, serverDir, certDir, agentDir } = await e2eDirs('meshanics-intent-'));
  await writeFile(path.join(root, 'ready'), 'ok');
  ({ server, agent } = await startServerWithAgent({ serverDir, certDir, agentDir }));
});

afterAll(() => stopAndRemove(root, agent, server));

describe('strict signed intent', () => {
  it('the server signs kind and spec into every target it publishes, and a default agent installs it', async () => {
    const published = await publishModel(serverDir, root, { name: 'detector', version: '1.0.0' }, v1);
    expect(servedTarget(new ServedRepo(serverDir), published.targetPath).custom).toEqual({ meshanics: { kind: 'model', spec: {} } });
    const view = await waitForAssignment(serverDir, await assign('edge-1', '1.0.0'));
    expect(view.state, view.reason).toBe('HEALTHY');
    expect(await readFile(path.join(agentDir, 'artifacts', 'model', 'detector', 'model'))).toEqual(v1);
    expect(agent.lines.some((l) => l.includes('tuf.allowUnsignedIntent'))).toBe(false);
  });

  it('a default agent refuses a target without custom.meshanics before downloading it, and reports why', async () => {
    const published = await publishModel(serverDir, root, { name: 'detector', version: '2.0.0' }, v2);
    const repo = new ServedRepo(serverDir);
    stripSignedIntent(repo, published.targetPath);
    expect(servedTarget(repo, published.targetPath).custom).toBeUndefined();

    const view = await waitForAssignment(serverDir, await assign('edge-1', '2.0.0'));
    expect(view.state).toBe('FAILED');
    expect(view.reason).toBe(
      `MESH_ERR_TUF_INTENT_UNSIGNED: target "${published.targetPath}" carries no signed kind and spec (custom.meshanics in the TUF targets metadata); refusing to take the control plane's word for them (agent config tuf.allowUnsignedIntent allows it)`,
    );
    const states = view.reports.map((r: { state: string }) => r.state);
    expect(states).not.toContain('VERIFYING');
    expect(states).not.toContain('APPLYING');
    expect(await readFile(path.join(agentDir, 'artifacts', 'model', 'detector', 'model'))).toEqual(v1);
    expect(await readdir(path.join(agentDir, 'staging')).catch(() => [])).toEqual([]);
  });

  it('an agent with tuf.allowUnsignedIntent warns at every start and installs it on the control plane word', async () => {
    const creds = path.join(root, 'creds-2');
    const dataDir = path.join(root, 'agent-2');
    await mkdir(dataDir, { recursive: true });
    await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'e2e', '--name', 'edge-2', '--out', creds]);
    const config = path.join(root, 'agent-2.json');
    await writeFile(config, JSON.stringify({ tuf: { allowUnsignedIntent: true } }));
    let second = startAgent(server, creds, dataDir, { extraArgs: ['--config', config] });
    try {
      const warning = await second.waitForLine((l) => l?.msg === WARNING);
      expect(warning).toMatchObject({ level: 40, setting: 'tuf.allowUnsignedIntent', config });
      await second.waitForLine((l) => l?.msg === 'registered');
      const view = await waitForAssignment(serverDir, await assign('edge-2', '2.0.0'));
      expect(view.state, view.reason).toBe('HEALTHY');
      expect(await readFile(path.join(dataDir, 'artifacts', 'model', 'detector', 'model'))).toEqual(v2);
      expect(await second.waitForLine((l) => l?.msg === 'target carries no signed kind and spec: acting on the assignment alone')).toMatchObject({
        level: 40,
        targetPath: 'detector/2.0.0/detector',
      });

      // Every start, not only the first.
      await second.stop();
      second = startAgent(server, creds, dataDir, { extraArgs: ['--config', config] });
      await second.waitForLine((l) => l?.msg === WARNING);
    } finally {
      await second.stop();
    }
  });
});
