// Two `meshanics-server serve` processes (replicas) on one PostgreSQL database and one shared
// data dir (device CA, TUF keys and metadata), with simulated devices spread across both:
// half of them connect to replica A first, half to replica B first. Each device talks the real
// device API over mTLS with its own certificate; its channel lists both replicas' addresses
// (gRPC pick_first), so when its replica goes away it reconnects to the other one, and it
// resends a report that got no answer with the same sequence (the agent's own rule).
// Shown: a waved rollout advances exactly once per wave (one wave-start event per wave in
// the audit trail) while both replicas drive it; a halt decided through one replica stops
// assignments served by the other; killing one replica (SIGKILL) mid-rollout loses no status
// report: every report a device got an answer for is stored, and the rollout completes.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDeviceService, type AssignmentMessage, type InstalledArtifact, type ReportArtifactStatusRequest } from '@meshanics/core/contract';
import { openDataDir, provisionDevice, type MeshanicsContext } from '@meshanics/server';
import { freshPostgresDatabase, postgresUnavailable, IN_CI } from '../../server/tests/engines.js';
import { serverCli, startServer, type Child } from '../../scripts/lib/processes.mjs';
import { SimDevice, SIM_REGISTER_REQUEST, type SimTransport } from './helpers/sim-device.js';
import { publishModel, rolloutCreateArgs, waitFor } from './helpers/steps.js';

const FLEET = 'rep';
const DEVICES = 12;

const unavailable = await postgresUnavailable();
if (unavailable && !IN_CI) console.warn(`skipping the replicas test: ${unavailable}`);

let root: string;
let dataDir: string;
let databaseUrl: string;
let readyFile: string;
const replicas: Child[] = [];
let observer: MeshanicsContext;
const sims: SimDevice[] = [];

type Unary = (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void;

/** A device API channel to both replicas; a call is resent (same request) until one answers. */
class FailoverChannel implements SimTransport {
  readonly #client: grpc.Client & Record<string, Unary>;

  constructor(addresses: string[], tls: { keyPem: string; certPem: string; caPem: string }) {
    const { Client } = loadDeviceService();
    const credentials = grpc.credentials.createSsl(Buffer.from(tls.caPem), Buffer.from(tls.keyPem), Buffer.from(tls.certPem));
    // ipv4:A,B with pick_first: connect to A, and to B when A is gone. The (shared) server
    // certificate names localhost, which is what TLS checks whichever address answers.
    this.#client = new Client(`ipv4:${addresses.join(',')}`, credentials, {
      'grpc.ssl_target_name_override': 'localhost',
      'grpc.default_authority': 'localhost',
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 500,
    }) as grpc.Client & Record<string, Unary>;
  }

  /** One call, retried (same request) until some replica answers; refusals are thrown. */
  async call<T>(method: string, request: unknown): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await new Promise<T>((resolve, reject) =>
          this.#client[method]!.call(this.#client, request, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res as T))),
        );
      } catch (err) {
        const code = (err as grpc.ServiceError).code;
        if ((code !== grpc.status.UNAVAILABLE && code !== grpc.status.DEADLINE_EXCEEDED) || attempt > 100) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  async heartbeat(installed: InstalledArtifact[]): Promise<AssignmentMessage[]> {
    return (await this.call<{ assignments: AssignmentMessage[] }>('heartbeat', { installed })).assignments;
  }

  reportArtifactStatus(report: ReportArtifactStatusRequest): Promise<unknown> {
    return this.call('reportArtifactStatus', report);
  }

  close(): void {
    this.#client.close();
  }
}

interface RolloutView {
  id: string;
  status: string;
  currentWave: number;
  counts: Record<string, number>;
  devices: Array<{ name: string; wave: number; state: string }>;
}

const cli = (args: string[]) => serverCli(dataDir, [...args, '--database-url', databaseUrl]);

async function show(id: string): Promise<RolloutView> {
  return (await cli(['rollout', 'show', id])) as RolloutView;
}

/** Two replicas, one of them maybe failing over: slower than one server. */
const WAIT = { timeoutMs: 60_000, intervalMs: 300 };

async function publish(version: string): Promise<void> {
  await publishModel(dataDir, root, { name: 'model', version }, randomBytes(4096), ['--database-url', databaseUrl]);
}

async function createRollout(version: string, strategy: unknown): Promise<RolloutView> {
  return (await cli(rolloutCreateArgs({ fleet: FLEET, artifact: `model@${version}`, group: 'all', readyFile, strategy }))) as RolloutView;
}

describe.skipIf(unavailable !== undefined && !IN_CI)('two replicas on one PostgreSQL database', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-e2e-replicas-'));
    dataDir = path.join(root, 'shared-data-dir');
    readyFile = path.join(root, 'ready');
    await writeFile(readyFile, 'ok');
    databaseUrl = await freshPostgresDatabase();
    await serverCli(dataDir, ['init', '--database-url', databaseUrl]);
    // Started together: both apply migrations and check the data dir at the same time.
    replicas.push(...(await Promise.all(['A', 'B'].map(() => startServer(dataDir, { heartbeatSeconds: 1, extraArgs: ['--database-url', databaseUrl] })))));
    const [a, b] = replicas as [Child, Child];
    observer = await openDataDir({ dataDir, databaseUrl });
    for (let i = 0; i < DEVICES; i++) {
      const name = `dev-${String(i).padStart(2, '0')}`;
      const creds = await provisionDevice(observer, { fleet: FLEET, name });
      // Even devices prefer replica A, odd ones replica B.
      const order = i % 2 === 0 ? [a.grpc, b.grpc] : [b.grpc, a.grpc];
      const channel = new FailoverChannel(order, creds);
      await channel.call('register', SIM_REGISTER_REQUEST);
      sims.push(new SimDevice(name, channel, 300));
    }
    await cli(['group', 'create', '--fleet', FLEET, '--name', 'all', '--devices', sims.map((s) => s.name).join(',')]);
    for (const s of sims) s.start();
  }, 120_000);

  afterAll(async () => {
    for (const s of sims) s.stop();
    await observer?.close();
    await Promise.all(replicas.map(async (r) => r.proc.exitCode === null && r.proc.signalCode === null && (r.proc.kill('SIGTERM'), await r.exit)));
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('advances a waved rollout exactly once per wave while both replicas drive it', async () => {
    await publish('1.0.0');
    const created = await createRollout('1.0.0', { waves: [{ percent: 25 }, { percent: 50 }, { percent: 100 }], max_failure_rate: 0.5 });
    const done = await waitFor(
      'rollout 1 to complete',
      async () => {
        const r = await show(created.id);
        return r.status === 'completed' && r;
      },
      WAIT,
    );
    expect(done.counts.HEALTHY).toBe(DEVICES);
    const subject = `rollout:${created.id}`;
    const starts = await observer.store.listAudit({ subject, action: 'rollout.wave_started' });
    expect(starts.map((e) => e.details.wave)).toEqual([0, 1, 2]);
    expect((await observer.store.rollouts.listWaveStarts(created.id)).map((w) => w.wave)).toEqual([0, 1, 2]);
    expect(await observer.store.countAudit({ subject, action: 'rollout.completed' })).toBe(1);
    // Both replicas served devices and drove progression.
    for (const r of replicas) expect(r.lines.some((l) => l.includes('artifact status reported'))).toBe(true);
  }, 120_000);

  it('a halt decided through one replica stops assignments served by the other', async () => {
    await publish('2.0.0');
    // Hold every device so the wave-0 assignments wait, undelivered.
    for (const s of sims) s.held = true;
    await new Promise((r) => setTimeout(r, 800));
    const created = await createRollout('2.0.0', { waves: [{ percent: 50 }, { percent: 100 }], max_failure_rate: 0 });
    const wave0 = created.devices.filter((d) => d.wave === 0).map((d) => sims.find((s) => s.name === d.name)!);
    // A device preferring replica A fails; the others of wave 0 that prefer B stay held.
    const failing = wave0.find((s) => sims.indexOf(s) % 2 === 0)!;
    const onB = wave0.filter((s) => sims.indexOf(s) % 2 === 1);
    expect(failing).toBeDefined();
    expect(onB.length).toBeGreaterThan(0);
    failing.outcome = 'ROLLED_BACK';
    failing.held = false;
    await waitFor('rollout 2 to halt', async () => (await show(created.id)).status === 'halted', WAIT);
    // Devices served by replica B: their pending assignment of the halted rollout is not handed
    // out. B learns of the halt by PostgreSQL's NOTIFY (it keeps heartbeat answers in memory),
    // milliseconds after the commit on A; a second is the bound allowed here.
    for (const s of onB) {
      await waitFor(`replica B to stop handing ${s.name} the halted rollout`, async () => (await s.heartbeat()).every((a) => a.version !== '2.0.0'), {
        timeoutMs: 1000,
        intervalMs: 20,
      });
    }
    const halted = await show(created.id);
    expect(halted.currentWave).toBe(0);
    expect(await observer.store.countAudit({ subject: `rollout:${created.id}`, action: 'rollout.halted' })).toBe(1);
    await cli(['rollout', 'abort', created.id]);
    failing.outcome = 'HEALTHY';
    for (const s of sims) s.held = false;
  }, 120_000);

  it('loses no status report when one replica is killed mid-rollout: devices fail over to the other', async () => {
    await publish('3.0.0');
    for (const s of sims) s.stepMs = 400;
    const created = await createRollout('3.0.0', { waves: [{ percent: 100 }], max_failure_rate: 0.5 });
    // Kill replica A once devices that talk to it are part-way through their reports.
    const preferA = new Set(sims.filter((_, i) => i % 2 === 0).map((s) => s.name));
    const inFlight = new Set(['DOWNLOADING', 'VERIFYING', 'APPLYING']);
    await waitFor(
      'reports in flight through replica A',
      async () => {
        const r = await show(created.id);
        return r.devices.filter((d) => preferA.has(d.name) && inFlight.has(d.state)).length >= 2 && r;
      },
      WAIT,
    );
    const [a, b] = replicas as [Child, Child];
    a.proc.kill('SIGKILL');
    await a.exit;
    const bLinesAtKill = b.lines.length;
    const done = await waitFor(
      'rollout 3 to complete on the surviving replica',
      async () => {
        const r = await show(created.id);
        return r.status === 'completed' && r;
      },
      { ...WAIT, timeoutMs: 90_000 },
    );
    expect(done.counts.HEALTHY).toBe(DEVICES);
    // The devices that preferred replica A went on through replica B.
    const servedByBAfterKill = new Set(
      b.lines
        .slice(bLinesAtKill)
        .map((l) => /"device":"spiffe:\/\/[^"]*\/device\/(dev-\d+)".*"msg":"artifact status reported"/.exec(l)?.[1])
        .filter((n): n is string => n !== undefined),
    );
    expect([...preferA].filter((n) => servedByBAfterKill.has(n)).length).toBeGreaterThan(0);
    // Every report any replica answered is stored, and no sequence is missing.
    for (const s of sims) {
      const stored = new Set<string>();
      for (const assignmentId of s.handled) {
        for (const r of await observer.store.listStatusReports(assignmentId)) stored.add(`${assignmentId}#${r.sequence}`);
      }
      const lost = [...s.answered].filter((k) => !stored.has(k));
      expect(lost, s.name).toEqual([]);
    }
  }, 150_000);
});
