// `meshanics-server serve --workers 2`, as real processes on both database engines: a primary
// and two workers sharing the device API and REST ports (node:cluster). Devices connect over
// mTLS, each with its own certificate and its own connection; the primary spreads the
// connections over the workers. Shown: both workers serve devices and a scrape of /metrics on
// the shared port answers for both (counters summed, fleet-wide gauges once, connections per
// worker); a worker killed with SIGKILL is replaced and its devices are served again; SIGTERM
// to the primary drains and stops every worker; a worker that cannot listen stops the whole
// server with its own error; the primary's death takes its workers with it.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import * as net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDeviceService } from '@meshanics/core/contract';
import { openDataDir, provisionDevice, type MeshanicsContext } from '@meshanics/server';
import { freshPostgresDatabase, postgresUnavailable, IN_CI } from '../../server/tests/engines.js';
import { SERVER_CLI, serveArgs, spawnNode, type Child } from '../../scripts/lib/processes.mjs';
import { SIM_REGISTER_REQUEST } from './helpers/sim-device.js';
import { waitFor } from './helpers/steps.js';

const FLEET = 'workers';
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

/** Unlabelled and labelled samples of a Prometheus scrape, keyed by the series as printed. */
async function scrape(api: string): Promise<Map<string, number>> {
  const res = await fetch(`${api}/metrics`);
  expect(res.status).toBe(200);
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    const m = /^(meshanics_[a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) samples.set(m[1]!, Number(m[2]));
  }
  return samples;
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
      // Every scrape lands on one worker or the other (round robin): each must answer for both.
      for (let i = 0; i < 4; i++) {
        const m = await scrape(listening.api);
        expect(m.get('meshanics_heartbeats_total')).toBe(DEVICES);
        const perWorker = [m.get('meshanics_device_connections{worker="1"}'), m.get('meshanics_device_connections{worker="2"}')];
        expect(
          perWorker.every((n) => n !== undefined && n >= 1),
          `connections per worker: ${perWorker.join(', ')}`,
        ).toBe(true);
        expect(perWorker[0]! + perWorker[1]!).toBe(DEVICES);
        // Read from the database by each worker: counted once, not once per worker.
        expect(m.get('meshanics_devices')).toBe(DEVICES);
        expect(m.get('meshanics_workers')).toBe(2);
        expect(m.get('meshanics_worker_restarts_total')).toBe(0);
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
      // Every device heartbeats again, those of the killed worker after reconnecting.
      for (const d of devices) await d.heartbeat();
      const m = await waitFor(
        'both workers to hold devices again',
        async () => {
          const s = await scrape(listening.api);
          return s.get('meshanics_device_connections{worker="1"}')! + s.get('meshanics_device_connections{worker="2"}')! === DEVICES && s;
        },
        { timeoutMs: 10_000, intervalMs: 200 },
      );
      expect(m.get('meshanics_worker_restarts_total')).toBe(1);
      expect(m.get('meshanics_workers')).toBe(2);
      listening.pids = [replaced.pid, survivor];
    },
    60_000,
  );

  it.skipIf(skip)(
    'drains and stops every worker when the primary gets SIGTERM',
    async () => {
      const { code, signal } = await server.stop('SIGTERM', 30_000);
      expect({ code, signal }).toEqual({ code: 0, signal: null });
      for (const worker of [1, 2])
        expect(server.lines.some((l) => l.includes('"process":"primary"') && l.includes(`"worker":${worker},`) && l.includes('"worker stopped"'))).toBe(true);
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

  it('takes its workers down with it when the primary is killed', async () => {
    const child = serveWithWorkers(path.join(root, 'orphans'), []);
    const { pids } = (await child.waitForLine((l: Listening) => l?.msg === 'workers listening', 60_000)) as Listening;
    expect(pids.every(isAlive)).toBe(true);
    process.kill(child.pid!, 'SIGKILL');
    await child.exit;
    await waitFor('the workers to end', async () => pids.every((p) => !isAlive(p)), { timeoutMs: 10_000, intervalMs: 100 });
  }, 60_000);
});
