// One podman image store per test file (or per simulated device): its own podman API service,
// storage, run and tmp dirs, sharing only the registry of scripts/container-runtime/up.sh.
// Test files that share one store run into each other: one file's cleanup (the plugin's image
// removal, a test's forced `rmi`) removes an image another found present and has not yet
// created a container from ("no such image ... image not known" at create, or
// MESH_ERR_DIGEST_MISMATCH at verify when it vanished before verify). Real devices never share
// an image store; with one store each, neither can the tests.
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { RUNTIME_DIR, type RuntimeEnv } from './runtime-env.js';

const execFileAsync = promisify(execFile);

export interface PrivateStore {
  /** The Docker-API socket of this store's podman service. */
  socketPath: string;
  dir: string;
  /** Removes every container of the store, stops its service and deletes the store. */
  stop(): Promise<void>;
}

const STORES = path.join(RUNTIME_DIR, 'stores');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ping(socketPath: string, urlPath = '/_ping', method = 'GET'): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath, path: urlPath, method, timeout: 30_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

function getJson<T>(socketPath: string, urlPath: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: urlPath, timeout: 30_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as T);
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath}: timeout`)));
    req.on('error', reject);
  });
}

function podmanEnv(dir: string, rt?: RuntimeEnv): NodeJS.ProcessEnv {
  return {
    ...process.env,
    CONTAINERS_CONF: path.join(dir, 'containers.conf'),
    CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf'),
    ...(rt?.env.CONTAINERS_REGISTRIES_CONF ? { CONTAINERS_REGISTRIES_CONF: rt.env.CONTAINERS_REGISTRIES_CONF } : {}),
  };
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/** Removes a store's containers, stops its service and deletes it. */
async function destroyStore(dir: string, podmanPid: number | undefined): Promise<void> {
  const socketPath = path.join(dir, 'podman.sock');
  if (podmanPid && alive(podmanPid) && existsSync(socketPath)) {
    const containers = await getJson<{ Id: string }[]>(socketPath, '/containers/json?all=true').catch(() => []);
    for (const c of containers) await ping(socketPath, `/containers/${c.Id}?force=true&v=true`, 'DELETE');
  } else if (existsSync(path.join(dir, 'storage.conf'))) {
    // The service died with its test process; containers it started may still run (conmon).
    await execFileAsync('podman', ['rm', '--all', '--force', '--time', '0'], { env: podmanEnv(dir), timeout: 60_000 }).catch(() => undefined);
  }
  if (podmanPid && alive(podmanPid)) {
    process.kill(podmanPid, 'SIGTERM');
    if (!(await waitGone(podmanPid, 10_000))) process.kill(podmanPid, 'SIGKILL');
    await waitGone(podmanPid, 5_000);
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** Stores whose test process is gone (killed, crashed) are removed before a new one starts. */
async function reapAbandoned(): Promise<void> {
  if (!existsSync(STORES)) return;
  for (const name of readdirSync(STORES)) {
    const dir = path.join(STORES, name);
    const read = (file: string) => Number(readFileSync(path.join(dir, file), 'utf8').trim()) || undefined;
    let owner: number | undefined;
    let podmanPid: number | undefined;
    try {
      owner = read('owner.pid');
      podmanPid = read('podman.pid');
    } catch {
      // Being set up right now by another process, or half-written: left alone.
      continue;
    }
    if (owner && !alive(owner)) await destroyStore(dir, podmanPid).catch(() => undefined);
  }
}

/**
 * Starts a podman API service on a fresh, empty store (up.sh's containers.conf settings are
 * repeated here, its registries.conf is reused). About 0.1 s to start, 0.4 s to stop.
 */
export async function startPrivateStore(label: string, rt: RuntimeEnv): Promise<PrivateStore> {
  await reapAbandoned();
  await mkdir(STORES, { recursive: true });
  const dir = await mkdtemp(path.join(STORES, `${label}-`));
  for (const sub of ['storage', 'run', 'tmp']) await mkdir(path.join(dir, sub));
  // runc + cgroupfs + low ulimits: what works on these machines (scripts/container-runtime/up.sh).
  // File locks under tmp_dir: a fresh store's first start frees every lock of the lock
  // manager it uses, so a shared SHM lock table would be pulled from under the other stores.
  writeFileSync(
    path.join(dir, 'containers.conf'),
    [
      '[containers]',
      'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
      '[engine]',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      'lock_type = "file"',
      `tmp_dir = "${path.join(dir, 'tmp')}"`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    path.join(dir, 'storage.conf'),
    ['[storage]', 'driver = "vfs"', `graphroot = "${path.join(dir, 'storage')}"`, `runroot = "${path.join(dir, 'run')}"`, ''].join('\n'),
  );
  const socketPath = path.join(dir, 'podman.sock');
  const log = openSync(path.join(dir, 'podman.log'), 'a');
  const child = spawn('podman', ['system', 'service', '--time=0', `unix://${socketPath}`], {
    env: podmanEnv(dir, rt),
    stdio: ['ignore', log, log],
    detached: true,
  });
  closeSync(log);
  child.unref();
  const podmanPid = child.pid!;
  writeFileSync(path.join(dir, 'podman.pid'), `${podmanPid}\n`);
  writeFileSync(path.join(dir, 'owner.pid'), `${process.pid}\n`);
  const deadline = Date.now() + 30_000;
  while ((await ping(socketPath)) !== 200) {
    if (!alive(podmanPid) || Date.now() > deadline) {
      const tail = readFileSync(path.join(dir, 'podman.log'), 'utf8').split('\n').slice(-10).join('\n');
      await destroyStore(dir, podmanPid).catch(() => undefined);
      throw new Error(`the podman service of private store ${dir} did not come up:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  let stopped: Promise<void> | undefined;
  return { socketPath, dir, stop: () => (stopped ??= destroyStore(dir, podmanPid)) };
}
