// Shared by the CLI and console tests: a real server with its REST API, API keys made with
// `meshanics-server apikey create`, the `meshanics` CLI as a process, and simulated devices
// that speak the real device gRPC API over mTLS (register, heartbeat, report), as agents do.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { DeviceClient } from '@meshanics/core';
import type { AssignmentMessage, InstalledArtifact } from '@meshanics/core/contract';
import { serverCli, startServer, type Child } from '../../scripts/lib/processes.mjs';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MESHANICS_CLI = path.join(ROOT, 'cli/dist/cli.js');

export const ALL_PERMISSIONS = ['devices.manage', 'artifacts.manage', 'rollouts.manage', 'enrollment.manage', 'audit.manage', 'logs.manage'];

export interface ApiServer {
  child: Child;
  dataDir: string;
  /** http://127.0.0.1:PORT */
  api: string;
}

/** `meshanics-server serve` with the REST API on an ephemeral port. */
export async function startApiServer(dataDir: string, heartbeatSeconds = 1): Promise<ApiServer> {
  const child = await startServer(dataDir, { heartbeatSeconds, extraArgs: ['--api-listen', '127.0.0.1:0'] });
  const line = (await child.waitForLine((l: { msg?: string }) => l?.msg === 'server listening')) as { api?: string };
  if (!line.api) throw new Error('the server did not report its API listener ("api" in the "server listening" line)');
  return { child, dataDir, api: line.api };
}

export async function createApiKey(dataDir: string, name: string, options: { fleet?: string; permissions?: string[]; approve?: boolean } = {}): Promise<string> {
  const created = await serverCli(dataDir, [
    'apikey',
    'create',
    '--name',
    name,
    '--fleet',
    options.fleet ?? '*',
    '--permissions',
    (options.permissions ?? ALL_PERMISSIONS).join(','),
    ...(options.approve ? ['--approve'] : []),
  ]);
  return created.key as string;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `meshanics ARGS` as a process; never throws on a non-zero exit. */
export function meshanics(args: string[], env: Record<string, string | undefined> = {}, input?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [MESHANICS_CLI, ...args],
      { env: { ...process.env, MESHANICS_API_URL: '', MESHANICS_API_KEY: '', MESHANICS_FLEET: '', MESHANICS_CONFIG: '', ...env }, maxBuffer: 32 * 1024 * 1024, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

export type Outcome = 'HEALTHY' | 'ROLLED_BACK' | 'FAILED';

/** A device as the server sees an agent: register, heartbeat with its installed set, report. */
export class SimDevice {
  seq = 0;
  installed: InstalledArtifact[] = [];
  readonly handled = new Set<string>();
  readonly assignments: AssignmentMessage[] = [];
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<void> = Promise.resolve();
  stopped = false;

  constructor(
    readonly name: string,
    readonly client: DeviceClient,
    /** What each assignment ends in (default HEALTHY). */
    public outcome: (a: AssignmentMessage) => Outcome = () => 'HEALTHY',
    /** Pause between two reported states. */
    public stepMs = 150,
  ) {}

  static async provision(server: ApiServer, certRoot: string, fleet: string, names: string[]): Promise<SimDevice[]> {
    await serverCli(server.dataDir, ['device', 'issue-cert', '--fleet', fleet, '--names', names.join(','), '--out', certRoot]);
    return Promise.all(
      names.map(async (name) => {
        const dir = path.join(certRoot, name);
        const client = new DeviceClient(server.child.grpc, {
          ca: await readFile(path.join(dir, 'ca.crt')),
          cert: await readFile(path.join(dir, 'device.crt')),
          key: await readFile(path.join(dir, 'device.key')),
        });
        const device = new SimDevice(name, client);
        await client.register({
          hardware: { model: 'sim-board', soc: 'sim', arch: 'x86_64', cpuCores: 4, memoryBytes: 4 * 1024 ** 3, accelerators: [], os: 'linux', kernel: '6.1' },
          agentVersion: '0.1.0-sim',
          tags: { sim: 'true' },
          capabilities: [
            { kind: 'ARTIFACT', name: 'model', version: '0.1.0' },
            { kind: 'PROBE', name: 'file', version: '0.1.0' },
          ],
        });
        return device;
      }),
    );
  }

  report(assignmentId: string, state: Outcome | 'DOWNLOADING' | 'VERIFYING' | 'APPLYING', reason = ''): Promise<unknown> {
    return this.client.reportArtifactStatus({
      assignmentId,
      state,
      sequence: ++this.seq,
      reason,
      bytesDone: 0,
      bytesTotal: 0,
      deviceTime: new Date().toISOString(),
    });
  }

  async heartbeat(): Promise<AssignmentMessage[]> {
    const res = await this.client.heartbeat({ installed: this.installed });
    for (const lr of res.logRequests ?? []) {
      if (this.handled.has(`log:${lr.logRequestId}`)) continue;
      this.handled.add(`log:${lr.logRequestId}`);
      const lines = Array.from({ length: 20 }, (_, i) => JSON.stringify({ service: 'meshanics-agent', device: this.name, msg: `line ${i}` })).join('\n');
      await this.client.uploadLogs(lr.logRequestId, gzipSync(`${lines}\n`));
    }
    return res.assignments;
  }

  async #run(a: AssignmentMessage): Promise<void> {
    const sleep = () => new Promise((r) => setTimeout(r, this.stepMs));
    const outcome = this.outcome(a);
    await this.report(a.assignmentId, 'DOWNLOADING');
    await sleep();
    if (outcome === 'FAILED') {
      await this.report(a.assignmentId, 'FAILED', 'download failed: connection reset (simulated)');
      return;
    }
    await this.report(a.assignmentId, 'VERIFYING');
    await sleep();
    await this.report(a.assignmentId, 'APPLYING');
    await sleep();
    if (outcome === 'ROLLED_BACK') {
      await this.report(a.assignmentId, 'ROLLED_BACK', 'probe file: /run/app/ready missing on every attempt (3 of 3); previous version restored');
      return;
    }
    await this.report(a.assignmentId, 'HEALTHY', 'probe ok');
    this.installed = [...this.installed.filter((i) => i.name !== a.name), { name: a.name, kind: a.kind, version: a.version, sha256: a.expectedSha256, state: 'HEALTHY' }];
  }

  /** Heartbeats every `intervalMs` and runs every new assignment to its outcome. */
  start(intervalMs = 300): this {
    const loop = async () => {
      if (this.stopped) return;
      try {
        for (const a of await this.heartbeat()) {
          if (this.handled.has(a.assignmentId)) continue;
          this.handled.add(a.assignmentId);
          this.assignments.push(a);
          await this.#run(a);
        }
      } catch {
        // the server restarting or the test ending: try again next tick
      }
      if (!this.stopped) {
        this.#timer = setTimeout(() => {
          this.#tick = loop(); // stop() awaits the tick in flight
        }, intervalMs);
      }
    };
    this.#tick = loop();
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#tick.catch(() => {});
    this.client.close();
  }
}

export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface CliEnvironment {
  root: string;
  server: ApiServer;
  adminKey: string;
  /** devices.read + rollouts.read on fleet lab, no approve. */
  readerKey: string;
  /** Every permission, but on fleet "other". */
  otherFleetKey: string;
  /** Env of a CLI run with the admin key (through MESHANICS_API_URL / MESHANICS_API_KEY). */
  admin: Record<string, string>;
  sims: SimDevice[];
  close(): Promise<void>;
}

/** A server with its API, three keys, and simulated devices of fleet "lab" that heartbeat. */
export async function cliEnvironment(prefix: string, simNames: string[]): Promise<CliEnvironment> {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const os = await import('node:os');
  const root = await mkdtemp(path.join(os.tmpdir(), prefix));
  const server = await startApiServer(path.join(root, 'server'));
  const [adminKey, readerKey, otherFleetKey, sims] = await Promise.all([
    createApiKey(server.dataDir, 'admin', { approve: true }),
    createApiKey(server.dataDir, 'reader', { fleet: 'lab', permissions: ['devices.read', 'rollouts.read'] }),
    createApiKey(server.dataDir, 'other', { fleet: 'other' }),
    simNames.length ? SimDevice.provision(server, path.join(root, 'certs'), 'lab', simNames) : Promise.resolve([]),
  ]);
  return {
    root,
    server,
    adminKey,
    readerKey,
    otherFleetKey,
    admin: { MESHANICS_API_URL: server.api, MESHANICS_API_KEY: adminKey },
    sims,
    async close() {
      await Promise.all(sims.map((s) => s.stop()));
      await server.child.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Publishes a file through POST /api/v1/artifacts from this process (multipart, from disk). */
export async function publishViaApi(server: ApiServer, key: string, file: string, fields: { name: string; version: string; kind: string }): Promise<{ sha256: string }> {
  const { openAsBlob } = await import('node:fs');
  const form = new FormData();
  form.set('name', fields.name);
  form.set('version', fields.version);
  form.set('kind', fields.kind);
  form.set('file', await openAsBlob(file), path.basename(file));
  const res = await fetch(`${server.api}/api/v1/artifacts`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
  if (res.status !== 201) throw new Error(`publishing ${fields.name}@${fields.version}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as { sha256: string };
}

/**
 * Registers devices of `fleet` straight into the server's database, in one transaction, for
 * tests that need hundreds of them: they never connect, so a rollout of them stays pending.
 * (The server's own `device issue-cert` takes 20 ms a device, most of it fsyncing key files.)
 */
export async function registerIdleDevices(dataDir: string, fleet: string, names: readonly string[]): Promise<void> {
  const { dataDirLayout, openStore } = await import('@meshanics/server');
  const store = await openStore(dataDirLayout(dataDir).databaseFile);
  try {
    const now = new Date().toISOString();
    const profile = {
      hardware: null,
      agentVersion: '1.0.0',
      tags: {},
      capabilities: [
        { kind: 'ARTIFACT' as const, name: 'model', version: '0.1.0' },
        { kind: 'PROBE' as const, name: 'file', version: '0.1.0' },
      ],
    };
    await store.withWriteLock(async () => {
      for (const name of names) await store.registerDevice({ spiffeId: `spiffe://idle.test/${fleet}/${name}`, fleet, name, profile, now });
    });
  } finally {
    await store.close();
  }
}
