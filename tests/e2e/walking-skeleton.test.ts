// The walking skeleton, end to end with real processes on 127.0.0.1: the server and the
// agent binaries, real mTLS, a real TUF repository, real files.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, readdir, writeFile, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceClient } from '@meshanics/core';
import { serverCli, startAgent, waitForAssignment, type Child } from '../../scripts/lib/processes.mjs';
import { assignArgs, e2eDirs, publishModel, startServerWithAgent, stopAndRemove } from './helpers/steps.js';

let root: string;
let serverDir: string;
let certDir: string;
let agentDir: string;
let server: Child;
let agent: Child;
const v1 = randomBytes(300 * 1024);
const live = () => path.join(agentDir, 'artifacts', 'model', 'detector', 'model');

function publish(version: string, bytes: Buffer) {
  return publishModel(serverDir, root, { name: 'detector', version }, bytes);
}

async function assign(version: string, readyFile: string, attempts = 2) {
  const { assignmentId } = await serverCli(serverDir, assignArgs({ fleet: 'e2e', device: 'edge-1', artifact: `detector@${version}`, readyFile, probeAttempts: attempts }));
  return assignmentId as string;
}

beforeAll(async () => {
  ({ root, serverDir, certDir, agentDir } = await e2eDirs('meshanics-e2e-'));
  await mkdir(path.join(root, 'ready'), { recursive: true });
  ({ server, agent } = await startServerWithAgent({ serverDir, certDir, agentDir }));
});

afterAll(() => stopAndRemove(root, agent, server));

describe('walking skeleton', () => {
  it('installs v1 and reports every state in order until HEALTHY', async () => {
    const p = await publish('1.0.0', v1);
    expect(p.targetPath).toBe('detector/1.0.0/detector');
    const ready = path.join(root, 'ready', 'v1');
    await writeFile(ready, 'ok');
    const id = await assign('1.0.0', ready);
    const view = await waitForAssignment(serverDir, id);
    expect(view.state).toBe('HEALTHY');
    const states = view.reports.map((r: { state: string }) => r.state);
    expect(states[0]).toBe('DOWNLOADING');
    expect(states.slice(-3)).toEqual(['VERIFYING', 'APPLYING', 'HEALTHY']);
    const seqs = view.reports.map((r: { sequence: number }) => r.sequence);
    expect(seqs).toEqual([...seqs].sort((a: number, b: number) => a - b));
    expect(await readFile(live())).toEqual(v1);
    expect((await stat(live())).mode & 0o777).toBe(0o644);
  });

  it('rolls v2 back on its own when its readiness file never appears, leaving v1 live', async () => {
    await publish('2.0.0', randomBytes(200 * 1024));
    const id = await assign('2.0.0', path.join(root, 'ready', 'never'));
    const view = await waitForAssignment(serverDir, id);
    expect(view.state).toBe('ROLLED_BACK');
    expect(view.reason).toContain('attempt 2/2');
    expect(view.reason).toContain('does not exist');
    expect(await readFile(live())).toEqual(v1);
  });

  it('never applies a target whose bytes were altered on the server disk', async () => {
    const bytes = randomBytes(100 * 1024);
    const p = await publish('3.0.0', bytes);
    // Tamper with the stored target behind TUF's back (same length, different bytes).
    const dir = path.join(serverDir, 'tuf', 'repo', 'targets', 'detector', '3.0.0');
    const [stored] = await readdir(dir);
    expect(stored).toBe(`${p.sha256}.detector`);
    const evil = Buffer.from(bytes);
    evil[0] = evil[0]! ^ 0xff;
    await writeFile(path.join(dir, stored!), evil);
    const ready = path.join(root, 'ready', 'v3');
    await writeFile(ready, 'ok');
    const id = await assign('3.0.0', ready);
    const view = await waitForAssignment(serverDir, id);
    expect(view.state).toBe('FAILED');
    expect(view.reason).toContain('MESH_ERR_DIGEST_MISMATCH');
    expect(view.reports.map((r: { state: string }) => r.state)).not.toContain('APPLYING');
    expect(await readFile(live())).toEqual(v1);
    const leftovers = await readdir(path.join(agentDir, 'staging')).catch(() => []);
    expect(leftovers).toEqual([]);
  });

  it('advertises the artifact kinds and probe types of its plugins, without container when the runtime is "none"', async () => {
    const creds2 = path.join(root, 'creds-2');
    await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'e2e', '--name', 'edge-2', '--out', creds2]);
    const second = startAgent(server, creds2, path.join(root, 'agent-2'), { extraArgs: ['--container-runtime', 'none'] });
    try {
      await second.waitForLine((l) => l?.msg === 'registered');
    } finally {
      await second.stop();
    }
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(path.join(serverDir, 'meshanics.db'), { readonly: true });
    try {
      const caps = (name: string) =>
        (JSON.parse((db.prepare('SELECT capabilities FROM devices WHERE name = ?').get(name) as { capabilities: string }).capabilities) as Array<{ kind: string; name: string }>)
          .map((c) => `${c.kind}:${c.name}`)
          .sort();
      expect(caps('edge-1')).toEqual(['ARTIFACT:agent', 'ARTIFACT:config', 'ARTIFACT:container', 'ARTIFACT:model', 'PROBE:exec', 'PROBE:file', 'PROBE:http']);
      expect(caps('edge-2')).toEqual(['ARTIFACT:agent', 'ARTIFACT:config', 'ARTIFACT:model', 'PROBE:exec', 'PROBE:file', 'PROBE:http']);
    } finally {
      db.close();
    }
  });

  it('refuses a client certificate issued by another CA', async () => {
    const otherServer = path.join(root, 'other-server');
    const otherCreds = path.join(root, 'other-creds');
    await serverCli(otherServer, ['device', 'issue-cert', '--fleet', 'e2e', '--name', 'edge-1', '--out', otherCreds]);
    // The impostor trusts our server's CA (so the failure is ours refusing it, not the reverse).
    const client = new DeviceClient(
      server.grpc,
      {
        ca: await readFile(path.join(certDir, 'ca.crt')),
        cert: await readFile(path.join(otherCreds, 'device.crt')),
        key: await readFile(path.join(otherCreds, 'device.key')),
      },
      // Fail at once with the refused handshake's status (the agent's calls wait for the channel instead).
      { deadlineMs: 5000, waitForReady: false },
    );
    try {
      const err = await client.register({ hardware: null, agentVersion: 'x', tags: {}, capabilities: [] }).then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
      expect(err).toBeDefined();
      expect(err!.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      client.close();
    }
    // The agent's own policy waits for the channel until its deadline; the deadline then says
    // why the channel never connected, not only that time ran out.
    const waiting = new DeviceClient(
      server.grpc,
      { ca: await readFile(path.join(certDir, 'ca.crt')), cert: await readFile(path.join(otherCreds, 'device.crt')), key: await readFile(path.join(otherCreds, 'device.key')) },
      { deadlineMs: 3000 },
    );
    try {
      const err = await waiting.register({ hardware: null, agentVersion: 'x', tags: {}, capabilities: [] }).then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
      expect(err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      // What the network gave the device: the server's alert, a reset, or a close right after the handshake.
      expect(err?.details).toMatch(/the last connection attempt failed: (read ECONNRESET|the server closed the connection|.*(certificate|unknown ca|alert))/i);
    } finally {
      waiting.close();
    }
    // And the artifact server gives it nothing either.
    const https = await import('node:https');
    const outcome = await new Promise<string>((resolve) => {
      const req = https.get(
        new URL('/tuf/metadata/timestamp.json', server.artifacts),
        {
          ca: readFileSync(path.join(certDir, 'ca.crt')),
          cert: readFileSync(path.join(otherCreds, 'device.crt')),
          key: readFileSync(path.join(otherCreds, 'device.key')),
        },
        (res) => resolve(`HTTP ${res.statusCode}`),
      );
      req.on('error', (e) => resolve(`error ${e.message}`));
    });
    expect(outcome).toMatch(/^error /);
  });
});
