// A device's whole life with real processes: enroll with a token, run from the data dir
// alone, renew its certificate, answer a log request, get decommissioned, wipe its keys and
// stay down; its old certificate is refused afterwards.
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdtemp, readFile, readlink, rm, stat, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceClient } from '@meshanics/core';
import { AGENT_CLI, serverCli, spawnAgent, startServer, type Child } from '../../scripts/lib/processes.mjs';

const run = promisify(execFile);
let root: string;
let serverDir: string;
let agentDir: string;
let server: Child;
let agent: Child;
let caFingerprint: string;

function agentProcess(args: string[]) {
  return run(process.execPath, [AGENT_CLI, ...args]).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

async function token(extra: string[] = []): Promise<string> {
  const created = await serverCli(serverDir, ['enroll-token', 'create', '--fleet', 'life', ...extra]);
  return created.token as string;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-e2e-life-'));
  serverDir = path.join(root, 'server');
  agentDir = path.join(root, 'agent');
  server = await startServer(serverDir, { extraArgs: ['--cert-validity', '24s'] });
  caFingerprint = new X509Certificate(await readFile(path.join(serverDir, 'pki', 'ca.crt'))).fingerprint256;
});

afterAll(async () => {
  await agent?.stop();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('device identity and lifecycle', () => {
  it('refuses to enroll without pinning the server, and with a revoked token writes nothing', async () => {
    const unpinned = await agentProcess(['enroll', '--server', server.enroll, '--token', 'x', '--name', 'edge-1', '--data-dir', agentDir]);
    expect(unpinned.code).toBe(2);
    expect(unpinned.stderr).toContain('--ca-file or --ca-fingerprint');
    const t = await token();
    const listed = await serverCli(serverDir, ['enroll-token', 'ls', '--fleet', 'life']);
    const id = (Array.isArray(listed) ? listed : listed.tokens).at(-1).id;
    await serverCli(serverDir, ['enroll-token', 'revoke', id]);
    const refused = await agentProcess(['enroll', '--server', server.enroll, '--token', t, '--name', 'edge-1', '--ca-fingerprint', caFingerprint, '--data-dir', agentDir]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/HTTP 401.*revoked/i);
    expect(existsSync(path.join(agentDir, 'identity'))).toBe(false);
  });

  it('enrolls with a token and a pinned CA fingerprint, keeping the private key on the device', async () => {
    const enrolled = await agentProcess([
      'enroll',
      '--server',
      server.enroll,
      '--token',
      await token(),
      '--name',
      'edge-1',
      '--ca-fingerprint',
      caFingerprint,
      '--data-dir',
      agentDir,
    ]);
    expect(enrolled.stderr).toBe('');
    expect(enrolled.code).toBe(0);
    const out = JSON.parse(enrolled.stdout);
    expect(out.spiffeId).toBe('spiffe://meshanics.local/fleet/life/device/edge-1');
    const key = path.join(agentDir, 'identity', 'current', 'device.key');
    expect((await stat(key)).mode & 0o777).toBe(0o600);
    const cert = new X509Certificate(await readFile(path.join(agentDir, 'identity', 'current', 'device.crt')));
    expect(cert.subjectAltName).toBe('URI:spiffe://meshanics.local/fleet/life/device/edge-1');
    expect(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(await readFile(key)))).toBe(true);
  });

  it('runs from the data dir alone and renews its certificate with a new key pair', async () => {
    const before = await readlink(path.join(agentDir, 'identity', 'current'));
    const keyBefore = await readFile(path.join(agentDir, 'identity', 'current', 'device.key'), 'utf8');
    agent = spawnAgent(['run', '--data-dir', agentDir]);
    await agent.waitForLine((l) => l?.msg === 'registered');
    await agent.waitForLine((l) => l?.msg === 'device certificate renewed with a new key pair', 40_000);
    const after = await readlink(path.join(agentDir, 'identity', 'current'));
    expect(after).not.toBe(before);
    expect(await readFile(path.join(agentDir, 'identity', 'current', 'device.key'), 'utf8')).not.toBe(keyBefore);
    // Still the same device, still talking: a heartbeat after the switch succeeds.
    const heartbeats = agent.lines.length;
    await new Promise((r) => setTimeout(r, 2500));
    expect(agent.lines.slice(heartbeats).some((l) => l.includes('heartbeat failed'))).toBe(false);
    const devices = await serverCli(serverDir, ['device', 'ls', '--fleet', 'life']).catch(() => undefined);
    if (devices) expect((Array.isArray(devices) ? devices : devices.devices).filter((d: { name: string }) => d.name === 'edge-1')).toHaveLength(1);
  });

  it('answers a log request from its own log only; the bundle gunzips to the agent log bytes', async () => {
    const { logRequestId } = await serverCli(serverDir, ['logs', 'request', '--fleet', 'life', '--device', 'edge-1', '--max-bytes', '1000000']);
    const deadline = Date.now() + 20_000;
    const out = path.join(root, 'bundle.gz');
    for (;;) {
      const listed = await serverCli(serverDir, ['logs', 'ls', '--fleet', 'life', '--device', 'edge-1']);
      const req = (Array.isArray(listed) ? listed : listed.logRequests).find((r: { id?: string; logRequestId?: string }) => (r.id ?? r.logRequestId) === logRequestId);
      if (req?.fulfilledAt || req?.status === 'fulfilled') break;
      if (Date.now() > deadline) throw new Error('log request never fulfilled');
      await new Promise((r) => setTimeout(r, 300));
    }
    await serverCli(serverDir, ['logs', 'download', logRequestId, '--out', out]);
    const text = gunzipSync(await readFile(out)).toString('utf8');
    const source = await readFile(path.join(agentDir, 'logs', 'agent.log'), 'utf8');
    expect(text.length).toBeGreaterThan(100);
    expect(source.startsWith(text)).toBe(true);
    for (const line of text.trim().split('\n')) expect(JSON.parse(line).service).toBe('meshanics-agent');
  });

  it('rejects a log upload nobody asked for', async () => {
    const dir = path.join(agentDir, 'identity');
    const client = new DeviceClient(server.grpc, {
      ca: await readFile(path.join(dir, 'ca.crt')),
      cert: await readFile(path.join(dir, 'current', 'device.crt')),
      key: await readFile(path.join(dir, 'current', 'device.key')),
    });
    try {
      const err = await client.uploadLogs('never-requested', gzipSync('secrets')).then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
      expect(err).toBeDefined();
      expect([grpc.status.NOT_FOUND, grpc.status.INVALID_ARGUMENT, grpc.status.FAILED_PRECONDITION, grpc.status.PERMISSION_DENIED]).toContain(err!.code);
    } finally {
      client.close();
    }
  });

  it('wipes its key material and exits with the terminal code when decommissioned; the old certificate is refused', async () => {
    const saved = path.join(root, 'saved');
    await mkdir(saved);
    const dir = path.join(agentDir, 'identity');
    await copyFile(path.join(dir, 'current', 'device.crt'), path.join(saved, 'device.crt'));
    await copyFile(path.join(dir, 'current', 'device.key'), path.join(saved, 'device.key'));
    await copyFile(path.join(dir, 'ca.crt'), path.join(saved, 'ca.crt'));

    await serverCli(serverDir, ['device', 'decommission', '--fleet', 'life', '--name', 'edge-1']);
    const exit = await agent.exit;
    expect(exit.code).toBe(3);
    expect(existsSync(path.join(agentDir, 'identity'))).toBe(false);
    expect(existsSync(path.join(agentDir, 'OFFBOARDED'))).toBe(true);
    const again = await agentProcess(['run', '--data-dir', agentDir]);
    expect(again.code).toBe(3);
    expect(again.stderr).toContain('offboarded');

    const client = new DeviceClient(server.grpc, {
      ca: await readFile(path.join(saved, 'ca.crt')),
      cert: await readFile(path.join(saved, 'device.crt')),
      key: await readFile(path.join(saved, 'device.key')),
    });
    try {
      for (const call of [() => client.register({ hardware: null, agentVersion: 'x', tags: {}, capabilities: [] }), () => client.heartbeat({ installed: [] })]) {
        const err = await call().then(
          () => undefined,
          (e: grpc.ServiceError) => e,
        );
        expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
      }
    } finally {
      client.close();
    }
  });
});
