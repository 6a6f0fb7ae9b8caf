// `meshanics-server serve --workers 2`, as real processes on both database engines: a primary
// and two workers sharing the device API and REST ports (node:cluster). Devices connect over
// mTLS, each with its own certificate and its own connection; the primary spreads the
// connections over the workers. Shown: both workers serve devices and a scrape of /metrics on
// the shared port answers for both (counters summed, fleet-wide gauges once, connections per
// worker); a worker killed with SIGKILL is replaced and its devices are served again; SIGTERM
// to the primary drains and stops every worker, and so does a signal to the whole process
// group, while a second signal kills them; a worker that cannot listen stops the whole server
// with its own error, and so does one that hangs while starting (a preload stops it: a
// replacement that hangs is killed and counts as a crash); the fifth crash in a row stops the
// server; the primary's death takes its workers with it, even one whose log output backed up.
import { execFile, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import * as net from 'node:net';
import * as http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDeviceService } from '@meshanics/core/contract';
import { openDataDir, provisionDevice, type MeshanicsContext } from '@meshanics/server';
import { freshPostgresDatabase, postgresUnavailable, IN_CI } from '../../server/tests/engines.js';
import { Child, SERVER_CLI, serveArgs, spawnNode } from '../../scripts/lib/processes.mjs';
import { SIM_REGISTER_REQUEST } from './helpers/sim-device.js';
import { waitFor } from './helpers/steps.js';

const FLEET = 'workers';
const ORPHAN_FIXTURE = fileURLToPath(new URL('./helpers/orphaned-worker.mjs', import.meta.url));
const HANG_PRELOAD = new URL('./helpers/hang-worker-start.mjs', import.meta.url).href;
const DEVICES = 6;
const execFileP = promisify(execFile);

const unavailable = await postgresUnavailable();
if (unavailable && !IN_CI) console.warn(`skipping the PostgreSQL case of serve --workers: ${unavailable}`);

type Unary = (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void;

/** One device: its own certificate and its own connection (no subchannel shared with another device). */
class Device {
  readonly #client: grpc.Client & Record<string, Unary>;

  constructor(address: string, tls: { keyPem: string; certPem: string; caPem: string }) {
    const { Client } = loadDeviceService();
    const credentials = grpc.credentials.createSsl(Buffer.from(tls.caPem), Buffer.from(tls.keyPem), Buffer.from(tls.certPem));
    this.#client = new Client(address, credentials, {
      'grpc.ssl_target_name_override': 'localhost',
      'grpc.default_authority': 'localhost',
      'grpc.use_local_subchannel_pool': 1,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 500,
    }) as grpc.Client & Record<string, Unary>;
  }

  /** One call; UNAVAILABLE (its worker went away, the channel reconnects) is retried for up to 20 s. */
  async call<T>(method: string, request: unknown): Promise<T> {
    const until = Date.now() + 20_000;
    for (;;) {
      try {
        return await new Promise<T>((resolve, reject) =>
          this.#client[method]!.call(this.#client, request, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res as T))),
        );
      } catch (err) {
        if ((err as grpc.ServiceError).code !== grpc.status.UNAVAILABLE || Date.now() > until) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** A log upload opened and left before its first chunk: a call in flight, which a drain waits for (up to its grace period). */
  holdUpload(): Promise<grpc.ServiceError | null> {
    const upload = this.#client.uploadLogs as unknown as (meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => unknown;
    return new Promise((resolve) => void upload.call(this.#client, new grpc.Metadata(), {}, (err) => resolve(err)));
  }

  heartbeat(): Promise<unknown> {
    return this.call('heartbeat', { installed: [] });
  }

  close(): void {
    this.#client.close();
  }
}

interface Listening {
  msg: string;
  workers: number;
  pids: number[];
  grpc: string;
  api: string;
}

function serveWithWorkers(dataDir: string, extra: string[]): Child {
  return spawnNode('serve --workers', SERVER_CLI, serveArgs(dataDir, ['--workers', '2', '--api-listen', '127.0.0.1:0', '--heartbeat-interval', '1', ...extra]));
}

/** A line the primary logs about one worker. */
interface PrimaryLine {
  msg: string;
  process?: string;
  worker: number;
  pid: number;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One scrape of /metrics over a connection of its own, so the primary hands it to the next worker in turn. */
async function scrape(api: string): Promise<Sample[]> {
  const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    http
      .get(`${api}/metrics`, { agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      })
      .on('error', reject);
  });
  if (status !== 200) throw new Error(`/metrics answered ${status}: ${body.slice(0, 200)}`);
  const samples: Sample[] = [];
  for (const line of body.split('\n')) {
    const m = /^(meshanics_[a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The samples of `name` whose labels include `labels`. */
function series(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = series(samples, name, labels);
  return found.length === 1 ? found[0]!.value : undefined;
}

/** Running, not a zombie: a worker orphaned by the primary's death is reaped by whoever adopts it, maybe late. */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

const engines = [
  { name: 'SQLite', database: async (): Promise<string[]> => [] },
  { name: 'PostgreSQL', database: async (): Promise<string[]> => ['--database-url', await freshPostgresDatabase()], skip: unavailable !== undefined && !IN_CI },
];

describe.each(engines)('serve --workers 2 on $name', ({ database, skip }) => {
  let root: string;
  let dataDir: string;
  let dbArgs: string[];
  let server: Child;
  let listening: Listening;
  let observer: MeshanicsContext;
  const devices: Device[] = [];

  beforeAll(async () => {
    if (skip) return;
    root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-e2e-workers-'));
    dataDir = path.join(root, 'data');
    dbArgs = await database();
    server = serveWithWorkers(dataDir, dbArgs);
    listening = (await server.waitForLine((l: Listening) => l?.msg === 'workers listening', 60_000)) as Listening;
    const url = dbArgs[1];
    observer = await openDataDir({ dataDir, ...(url ? { databaseUrl: url } : {}) });
    for (let i = 0; i < DEVICES; i++) {
      const creds = await provisionDevice(observer, { fleet: FLEET, name: `dev-${i}` });
      const device = new Device(listening.grpc, creds);
      await device.call('register', SIM_REGISTER_REQUEST);
      devices.push(device);
    }
  }, 120_000);

  afterAll(async () => {
    for (const d of devices) d.close();
    await observer?.close();
    await server?.stop('SIGKILL');
    if (root) await rm(root, { recursive: true, force: true });
  });

  it.skipIf(skip)(
    'spreads the devices over both workers and answers /metrics for both from either',
    async () => {
      expect(listening.workers).toBe(2);
      expect(listening.pids).toHaveLength(2);
      for (const d of devices) await d.heartbeat();
      // Each scrape comes on a new connection, handed to the workers in turn: each answers for both.
      for (let i = 0; i < 4; i++) {
        const m = await scrape(listening.api);
        const heartbeats = [value(m, 'meshanics_heartbeats_total', { worker: '1' }), value(m, 'meshanics_heartbeats_total', { worker: '2' })];
        const connections = [value(m, 'meshanics_device_connections', { worker: '1' }), value(m, 'meshanics_device_connections', { worker: '2' })];
        expect(
          connections.every((n) => n !== undefined && n >= 1),
          `connections per worker: ${connections.join(', ')}`,
        ).toBe(true);
        expect(connections[0]! + connections[1]!).toBe(DEVICES);
        // Each worker counted the heartbeats of its own devices.
        expect(heartbeats).toEqual(connections);
        expect([value(m, 'meshanics_worker_up', { worker: '1' }), value(m, 'meshanics_worker_up', { worker: '2' })]).toEqual([1, 1]);
        // Read from the database by each worker, given once, without a worker label.
        expect(series(m, 'meshanics_devices')).toEqual([{ name: 'meshanics_devices', labels: {}, value: DEVICES }]);
        expect(value(m, 'meshanics_workers')).toBe(2);
        expect(value(m, 'meshanics_worker_restarts_total')).toBe(0);
      }
      // The REST API certificate reload reaches every worker.
      process.kill(server.pid!, 'SIGHUP');
      for (const worker of [1, 2]) await server.waitForLine((l: { worker?: number; msg?: string }) => l?.worker === worker && l.msg === 'reloading the REST API certificate');
    },
    60_000,
  );

  it.skipIf(skip)(
    'replaces a worker killed with SIGKILL, and its devices are served again',
    async () => {
      const [victim, survivor] = listening.pids as [number, number];
      process.kill(victim, 'SIGKILL');
      const crashed = (await server.waitForLine((l: { msg?: string; pid?: number }) => l?.msg === 'worker ended unexpectedly: starting another' && l.pid === victim)) as {
        worker: number;
      };
      const replaced = (await server.waitForLine(
        (l: { msg?: string; worker?: number; pid?: number; process?: string }) =>
          l?.process === 'primary' && l.msg === 'worker listening' && l.worker === crashed.worker && l.pid !== victim,
      )) as { pid: number };
      expect(isAlive(replaced.pid)).toBe(true);
      expect(isAlive(survivor)).toBe(true);
      // Every device heartbeats again, those of the killed worker after reconnecting, some of them to its replacement.
      for (const d of devices) await d.heartbeat();
      const m = await waitFor(
        'both workers to hold devices again',
        async () => {
          const s = await scrape(listening.api).catch(() => undefined);
          const connections = [1, 2].map((w) => (s ? value(s, 'meshanics_device_connections', { worker: String(w) }) : undefined) ?? 0);
          return s && connections.every((n) => n >= 1) && connections[0]! + connections[1]! === DEVICES && s;
        },
        { timeoutMs: 10_000, intervalMs: 200 },
      );
      expect(value(m, 'meshanics_worker_restarts_total')).toBe(1);
      expect(value(m, 'meshanics_workers')).toBe(2);
      listening.pids = [replaced.pid, survivor];
    },
    60_000,
  );

  it.skipIf(skip)(
    'drains and stops every worker when the primary gets SIGTERM',
    async () => {
      const started = Date.now();
      const { code, signal } = await server.stop('SIGTERM', 30_000);
      expect({ code, signal }).toEqual({ code: 0, signal: null });
      // Well inside the primary's 15 s before it would kill a worker that does not stop.
      expect(Date.now() - started).toBeLessThan(10_000);
      const lines = server.lines.map((l) => JSON.parse(l) as { msg?: string; worker?: number; process?: string; code?: number | null; signal?: string | null });
      for (const worker of [1, 2]) {
        // The worker's own drain finished (server.ts logs it after closing the database) and it exited 0 by itself.
        expect(lines.some((l) => l.worker === worker && l.process === undefined && l.msg === 'server stopped')).toBe(true);
        expect(lines.some((l) => l.process === 'primary' && l.worker === worker && l.msg === 'worker stopped' && l.code === 0 && l.signal === null)).toBe(true);
      }
      expect(lines.some((l) => l.msg === 'worker did not stop in time: killed')).toBe(false);
      expect(listening.pids.filter(isAlive)).toEqual([]);
    },
    60_000,
  );
});

describe('serve --workers: refusals and failures', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-e2e-workers-fail-'));
  });
  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('refuses a worker count that is not 1-64 or auto with exit 2, before starting anything', async () => {
    for (const bad of ['0', '65', 'two', '1.5']) {
      const err = await execFileP(process.execPath, [SERVER_CLI, ...serveArgs(path.join(root, 'never'), ['--workers', bad])]).catch((e: { code: number; stderr: string }) => e);
      expect((err as { code: number }).code).toBe(2);
      expect((err as { stderr: string }).stderr).toContain(`--workers must be 1-64 or auto, got "${bad}"`);
    }
    // Past setTimeout's 2^31 ms a timer fires at once, which would kill every worker as it starts.
    const long = await execFileP(process.execPath, [SERVER_CLI, ...serveArgs(path.join(root, 'never'), ['--workers', '2', '--worker-start-timeout', '30d'])]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((long as { code: number }).code).toBe(2);
    expect((long as { stderr: string }).stderr).toContain('--worker-start-timeout must be at most 24h');
  });

  it("stops at once with the worker's own error when a worker cannot listen", async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const child = serveWithWorkers(path.join(root, 'busy'), ['--grpc-listen', `127.0.0.1:${port}`]);
      const { code } = await child.exit;
      expect(code).toBe(1);
      const out = child.lines.join('\n');
      expect(out).toContain('MESH_ERR_LISTEN_FAILED');
      expect(out).toContain('MESH_ERR_WORKER_FAILED');
      expect(out).not.toContain('starting another');
    } finally {
      taken.close();
    }
  }, 60_000);

  it('drains once when the whole process group is signalled (a terminal, systemd), and a second signal kills the workers with exit 1', async () => {
    // Its own process group, as a service's cgroup or a terminal's foreground job.
    const proc = spawn(process.execPath, [SERVER_CLI, ...serveArgs(path.join(root, 'group'), ['--workers', '2'])], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const group = new Child('serve --workers (group)', proc);
    const { pids, grpc: address } = (await group.waitForLine((l: Listening) => l?.msg === 'workers listening', 60_000)) as Listening;
    // A call in flight keeps its worker draining for the grace period: the primary's request
    // reaches that worker after its own signal did, and must not count as a second one.
    const ctx = await openDataDir({ dataDir: path.join(root, 'group') });
    const uploader = new Device(address, await provisionDevice(ctx, { fleet: FLEET, name: 'uploader' }));
    await ctx.close();
    await uploader.call('register', SIM_REGISTER_REQUEST);
    const upload = uploader.holdUpload();
    // Time for the call to reach its worker's handler (a fraction of this on loopback).
    await new Promise((r) => setTimeout(r, 500));
    const signalled = Date.now();
    process.kill(-proc.pid!, 'SIGTERM');
    expect(await group.exit).toEqual({ code: 0, signal: null });
    // The held call is cut at the end of the 5 s grace period, and its worker exits then: a
    // cancelled upload no longer keeps a process alive until its 60 s idle timeout.
    expect(Date.now() - signalled).toBeLessThan(8500);
    const out = group.lines.join('\n');
    // Each worker got the signal and the primary's request: one drain, not a crash, not "now".
    expect(out.match(/"msg":"server stopped"/g)?.length).toBe(3);
    expect(out).not.toContain('starting another');
    expect(pids.filter(isAlive)).toEqual([]);
    expect(await upload).not.toBeNull();
    uploader.close();

    const twice = serveWithWorkers(path.join(root, 'group'), []);
    const second = (await twice.waitForLine((l: Listening) => l?.msg === 'workers listening', 60_000)) as Listening;
    // A stopped worker cannot drain, so the first signal leaves the primary waiting (two signals
    // sent at once would arrive as one: the kernel does not queue a pending signal twice).
    process.kill(second.pids[0]!, 'SIGSTOP');
    process.kill(twice.pid!, 'SIGTERM');
    await twice.waitForLine((l: { msg?: string }) => l?.msg === 'stopping the workers');
    process.kill(twice.pid!, 'SIGTERM');
    expect((await twice.exit).code).toBe(1);
    expect(twice.lines.some((l) => l.includes('second signal: killing the workers'))).toBe(true);
    await waitFor('the workers to end', async () => second.pids.every((p) => !isAlive(p)), { timeoutMs: 10_000, intervalMs: 100 });
  }, 90_000);

  it('kills a worker that does not listen in time: at the first start the server stops, later the slot counts a crash and is filled again', async () => {
    const dir = path.join(root, 'hung');
    const hangFile = path.join(root, 'hang-next-start');
    const env = { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${HANG_PRELOAD}`.trim(), MESHANICS_TEST_HANG_START: hangFile };
    const stopped: number[] = [];
    const serve = (): Child =>
      spawnNode('serve --workers (hung)', SERVER_CLI, serveArgs(dir, ['--workers', '2', '--api-listen', '127.0.0.1:0', '--worker-start-timeout', '10s']), env);
    const children: Child[] = [];
    try {
      writeFileSync(hangFile, '2');
      const first = serve();
      children.push(first);
      const starting = (await first.waitForLine((l: PrimaryLine) => l?.msg === 'worker starting' && l.worker === 2, 60_000)) as PrimaryLine;
      stopped.push(starting.pid);
      const exited = await first.exitWithin(30_000);
      expect(exited?.code).toBe(1);
      const out = first.lines.join('\n');
      expect(out).toContain('worker did not listen in time: killed');
      expect(out).toContain('MESH_ERR_WORKER_FAILED');
      expect(out).toContain('worker 2 did not listen within 10 s');
      expect(out).not.toContain('starting another');
      expect(isAlive(starting.pid)).toBe(false);

      const again = serve();
      children.push(again);
      const { pids, api } = (await again.waitForLine((l: Listening) => l?.msg === 'workers listening', 60_000)) as Listening;
      const victim = (await again.waitForLine((l: PrimaryLine) => l?.msg === 'worker listening' && l.process === 'primary' && l.worker === 1, 1000)) as PrimaryLine;
      writeFileSync(hangFile, '1');
      process.kill(victim.pid, 'SIGKILL');
      const replacement = (await again.waitForLine((l: PrimaryLine) => l?.msg === 'worker starting' && l.worker === 1 && !pids.includes(l.pid), 20_000)) as PrimaryLine;
      stopped.push(replacement.pid);
      await again.waitForLine((l: PrimaryLine) => l?.msg === 'worker did not listen in time: killed' && l.pid === replacement.pid, 30_000);
      const third = (await again.waitForLine(
        (l: PrimaryLine) => l?.msg === 'worker listening' && l.process === 'primary' && l.worker === 1 && l.pid !== replacement.pid && !pids.includes(l.pid),
        30_000,
      )) as PrimaryLine;
      expect(isAlive(replacement.pid)).toBe(false);
      expect(isAlive(third.pid)).toBe(true);
      const samples = await scrape(api);
      expect(value(samples, 'meshanics_worker_restarts_total')).toBe(2);
      expect(value(samples, 'meshanics_workers')).toBe(2);
      process.kill(again.pid!, 'SIGTERM');
      expect((await again.exit).code).toBe(0);
    } finally {
      // A stopped worker never notices its primary's end: kill it, whatever went wrong.
      for (const pid of stopped) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
      for (const child of children) await child.stop('SIGKILL');
    }
  }, 120_000);

  it('stops with MESH_ERR_WORKER_FAILED when a worker ends for the fifth time in a row', async () => {
    const child = serveWithWorkers(path.join(root, 'crashing'), []);
    const { pids } = (await child.waitForLine((l: Listening) => l?.msg === 'workers listening', 60_000)) as Listening;
    const killed: number[] = [];
    let victim = pids[0]!;
    try {
      for (let crash = 1; crash <= 5; crash++) {
        process.kill(victim, 'SIGKILL');
        killed.push(victim);
        if (crash === 5) break;
        // Its replacement, in the same slot, once listening (0.5, 1, 2, 4 s after each crash).
        const next = (await child.waitForLine(
          (l: PrimaryLine) => l?.msg === 'worker listening' && l.process === 'primary' && l.pid !== pids[1] && !killed.includes(l.pid),
          30_000,
        )) as PrimaryLine;
        victim = next.pid;
      }
      const exited = await child.exitWithin(20_000);
      expect(exited?.code).toBe(1);
    } finally {
      await child.stop('SIGKILL');
    }
    const out = child.lines.join('\n');
    expect(out.match(/worker ended unexpectedly: starting another/g)?.length).toBe(4);
    expect(out).toContain('worker keeps ending: stopping');
    expect(out).toMatch(/MESH_ERR_WORKER_FAILED.*worker \d ended 5 times in a row \(the last with exit code null, signal SIGKILL\)/);
    expect(isAlive(pids[1]!)).toBe(false);
  }, 90_000);

  it('ends a worker whose primary died while its log output was backed up', async () => {
    // pino writes the buffered lines at exit, and its writer retried the broken pipe for ever:
    // a bench run's orphaned worker held 9,984 device sockets for half an hour.
    const child = spawnNode('orphaned worker', ORPHAN_FIXTURE, []);
    const { pid } = (await child.waitForLine((l: { msg?: string }) => l?.msg === 'backed up', 30_000)) as { pid: number };
    process.kill(child.pid!, 'SIGKILL');
    await child.exit;
    try {
      await waitFor('the orphaned worker to end', async () => !isAlive(pid), { timeoutMs: 10_000, intervalMs: 100 });
    } finally {
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
  }, 60_000);

  it('takes its workers down with it when the primary is killed', async () => {
    const child = serveWithWorkers(path.join(root, 'orphans'), []);
    const { pids } = (await child.waitForLine((l: Listening) => l?.msg === 'workers listening', 60_000)) as Listening;
    expect(pids.every(isAlive)).toBe(true);
    process.kill(child.pid!, 'SIGKILL');
    await child.exit;
    await waitFor('the workers to end', async () => pids.every((p) => !isAlive(p)), { timeoutMs: 10_000, intervalMs: 100 });
  }, 60_000);
});
