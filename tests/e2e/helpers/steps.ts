// Steps several end-to-end tests take the same way: make their temp dirs, start a server with one enrolled agent, stop it,
// publish a file as a model artifact, build `assign`'s and `rollout create`'s arguments, poll for a state.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { serverCli, startAgent, startServer, type Child } from '../../../scripts/lib/processes.mjs';

/** A fresh temp ROOT (named from PREFIX) and the server, credentials and agent dirs under it that startServerWithAgent takes. */
export async function e2eDirs(prefix: string): Promise<{ root: string; serverDir: string; certDir: string; agentDir: string }> {
  const root = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { root, serverDir: path.join(root, 'server'), certDir: path.join(root, 'creds'), agentDir: path.join(root, 'agent') };
}

/** Stops CHILDREN in order (those a failed beforeAll never started are undefined), then removes ROOT. */
export async function stopAndRemove(root: string, ...children: Array<Child | undefined>): Promise<void> {
  for (const child of children) await child?.stop();
  await rm(root, { recursive: true, force: true });
}

/**
 * `serve` on SERVERDIR and one agent on AGENTDIR with the credentials `device issue-cert`
 * wrote into CERTDIR; resolves once the agent has registered.
 */
export async function startServerWithAgent(
  dirs: { serverDir: string; certDir: string; agentDir: string },
  device: { fleet: string; name: string } = { fleet: 'e2e', name: 'edge-1' },
): Promise<{ server: Child; agent: Child }> {
  const server = await startServer(dirs.serverDir);
  await serverCli(dirs.serverDir, ['device', 'issue-cert', '--fleet', device.fleet, '--name', device.name, '--out', dirs.certDir]);
  const agent = startAgent(server, dirs.certDir, dirs.agentDir);
  await agent.waitForLine((l) => l?.msg === 'registered');
  return { server, agent };
}

/**
 * Writes `bytes` to WORKDIR/NAME-VERSION and publishes it as a model artifact; resolves to
 * what `artifact publish` prints. `extraArgs`: e.g. --database-url for a PostgreSQL server.
 */
export async function publishModel(serverDir: string, workDir: string, artifact: { name: string; version: string }, bytes: Buffer, extraArgs: string[] = []): Promise<any> {
  const file = path.join(workDir, `${artifact.name}-${artifact.version}`);
  await writeFile(file, bytes);
  return serverCli(serverDir, ['artifact', 'publish', file, '--name', artifact.name, '--version', artifact.version, '--kind', 'model', ...extraArgs]);
}

/** `assign` of NAME@VERSION to one device with a file probe on READYFILE (default: one attempt, 1 s). */
export function assignArgs(input: { fleet: string; device: string; artifact: string; readyFile: string; probeTimeout?: number; probeAttempts?: number }): string[] {
  return [
    'assign',
    '--fleet',
    input.fleet,
    '--device',
    input.device,
    '--artifact',
    input.artifact,
    '--probe-type',
    'file',
    '--probe-spec',
    JSON.stringify({ path: input.readyFile }),
    '--probe-timeout',
    String(input.probeTimeout ?? 1),
    '--probe-attempts',
    String(input.probeAttempts ?? 1),
  ];
}

/** `rollout create` of NAME@VERSION to GROUP with a file probe on READYFILE (one attempt, 2 s). */
export function rolloutCreateArgs(input: { fleet: string; artifact: string; group: string; readyFile: string; strategy?: unknown }): string[] {
  return [
    'rollout',
    'create',
    '--fleet',
    input.fleet,
    '--artifact',
    input.artifact,
    '--group',
    input.group,
    '--probe-type',
    'file',
    '--probe-spec',
    JSON.stringify({ path: input.readyFile }),
    '--probe-timeout',
    '2',
    '--probe-attempts',
    '1',
    ...(input.strategy ? ['--strategy', JSON.stringify(input.strategy)] : []),
  ];
}

/** Polls `probe` until it returns something truthy, which it resolves to. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  { timeoutMs = 30_000, intervalMs = 250 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
