// Sizing the fleet bench (issue 30, "a lean load generator"): how many load-generator
// processes for a fleet, whether the fleet fits this machine's memory before anything is
// provisioned, and a cache of provisioned fleets so a large fleet's certificates are issued
// once, not on every run. The per-device figures are measured by bench/fleet-cost.mjs and
// written down in docs/benchmarks.md ("what one simulated device costs").
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fmtBytes } from './log.mjs';

const MiB = 1024 * 1024;
const KiB = 1024;

/**
 * Resident memory per connected device in one load-generator process, by channel kind, as
 * bench/fleet-cost.mjs measured it at 2,000 channels per process (2026-12-05, after an
 * interval of heartbeats: http2 137 KiB, lean 190 KiB, agent 200 KiB), rounded up: most of it is
 * the TLS connection (its SecureContext alone 34 KiB) and HTTP/2 session, not ours (V8 heap
 * 7 KiB per device with http2, 26 KiB with lean grpc-js).
 */
export const GENERATOR_BYTES_PER_DEVICE = { agent: 220 * KiB, lean: 210 * KiB, http2: 150 * KiB };
/** A load-generator process before its first channel (node, grpc-js, the contract), rounded up. */
export const GENERATOR_BYTES_PER_PROCESS = 80 * MiB;
/**
 * The server under test per connected device (issue 30: about 120 KB for the real server, 83 KB
 * for the bare echo server, 10,000 devices) and its own base; rounded up, so a run the server
 * helper's cuts make leaner still passes.
 */
export const SERVER_BYTES_PER_DEVICE = 160 * KiB;
export const SERVER_BYTES_BASE = 400 * MiB;

/** Default devices per load-generator process when fleet.clientProcesses is not set. */
export const DEVICES_PER_PROCESS = 2500;

/** The number of load-generator processes: fleet.clientProcesses (or the older fleet.clients), else one per DEVICES_PER_PROCESS devices. */
export function clientProcesses(cfg) {
  const n = cfg.clientProcesses ?? cfg.clients ?? Math.ceil(cfg.devices / (cfg.devicesPerProcess ?? DEVICES_PER_PROCESS));
  return Math.max(1, Math.min(n, cfg.devices));
}

/** MemAvailable of /proc/meminfo (what can be allocated without swapping), or null elsewhere. */
export function availableMemory() {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Devices the busiest server process (replica, or echo server) holds a socket for: the
 * devices are split evenly over the load-generator processes, and process i connects to
 * replica i mod replicas (bench/suites/fleet.mjs), so an uneven process count loads one
 * replica more.
 */
export function devicesPerReplica(cfg) {
  const replicas = cfg.replicas ?? 1;
  const processes = clientProcesses(cfg);
  const held = new Array(replicas).fill(0);
  for (let i = 0; i < processes; i++) held[i % replicas] += Math.floor(cfg.devices / processes) + (i < cfg.devices % processes ? 1 : 0);
  return Math.max(...held);
}

/**
 * Devices the busiest server process holds a socket for: a replica's share, over its
 * fleet.workers (`serve --workers`, which hands connections round robin, so evenly; 2 % kept
 * for an uneven turn).
 */
export function devicesPerServerProcess(cfg) {
  const workers = cfg.workers ?? 1;
  const perReplica = devicesPerReplica(cfg);
  return workers === 1 ? perReplica : Math.ceil((perReplica / workers) * 1.02);
}

/**
 * What the run will hold at its peak: the load generators with every device connected plus
 * the servers (the echo baseline and the real servers run one after the other, each set with
 * the whole fleet connected, spread over fleet.replicas processes), by the per-device figures
 * above.
 */
export function memoryNeed(cfg) {
  const processes = clientProcesses(cfg);
  const perDevice = GENERATOR_BYTES_PER_DEVICE[cfg.channel];
  if (perDevice === undefined) throw new Error(`fleet.channel must be one of ${Object.keys(GENERATOR_BYTES_PER_DEVICE).join(', ')}, not ${cfg.channel}`);
  const generators = cfg.devices * perDevice + processes * GENERATOR_BYTES_PER_PROCESS;
  const server = cfg.devices * SERVER_BYTES_PER_DEVICE + (cfg.replicas ?? 1) * (cfg.workers ?? 1) * SERVER_BYTES_BASE;
  return { processes, generators, server, total: generators + server };
}

/** The soft limit on open files this process (and so the servers it starts) has, or null elsewhere. */
export function openFilesLimit() {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : null;
  } catch {
    return null;
  }
}

/**
 * Refuses, before anything is provisioned, a fleet that will not fit: the sockets one server
 * process holds must stay under its limit on open files, and the peak memory need under 90 %
 * of MemAvailable (the rest for the page cache the database lives on, and the other work of
 * the machine). --set fleet.memoryCheck=false skips both.
 */
export function preflight(cfg, available = availableMemory(), openFiles = openFilesLimit()) {
  // A server process holds one socket per device it serves: at its limit on open files it
  // cannot accept more, and the devices see their connections closed before they are ready (a
  // 20,000-device run here, 2026-12-05, under a limit of 20,000). The limit is per process, so
  // replicas (fleet.replicas) and workers (fleet.workers) each hold their share.
  const perProcess = devicesPerServerProcess(cfg);
  if (cfg.memoryCheck !== false && openFiles !== null && perProcess + 1000 > openFiles) {
    const processes = (cfg.replicas ?? 1) * (cfg.workers ?? 1);
    throw new Error(
      `fleet: ${cfg.devices} devices over ${processes} server process${processes === 1 ? '' : 'es'} need ${perProcess} sockets in each, but the limit on open files is ${openFiles} (ulimit -n); raise it (ulimit -n ${perProcess + 1000}, up to the hard limit ulimit -Hn), add fleet.workers (serve --workers), fleet.replicas (PostgreSQL) or lower fleet.devices.`,
    );
  }
  const need = memoryNeed(cfg);
  const summary = `${cfg.devices} devices (${cfg.channel} channels) in ${need.processes} load-generator processes need about ${fmtBytes(need.total)}: generators ${fmtBytes(need.generators)}, server ${fmtBytes(need.server)}`;
  if (cfg.memoryCheck === false || available === null) return { ...need, available, summary };
  if (need.total > 0.9 * available) {
    // The largest fleet that fits, with the process count that size would get.
    let lo = 0;
    let hi = cfg.devices;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (memoryNeed({ ...cfg, devices: mid }).total <= 0.9 * available) lo = mid;
      else hi = mid - 1;
    }
    const leaner = cfg.channel === 'http2' ? '' : ', use a leaner fleet.channel (http2)';
    throw new Error(
      `fleet: ${summary}, more than 90 % of the ${fmtBytes(available)} available (MemAvailable); about ${lo} devices fit. ` +
        `Lower fleet.devices${leaner}, or --set fleet.memoryCheck=false to run anyway.`,
    );
  }
  return { ...need, available, summary };
}

/**
 * A cache of provisioned fleets (SQLite only; fleet.provisionCache = a directory): certificate
 * issuance is CPU-bound (about 8 ms of CPU per device here, so 50,000 devices take minutes), and
 * every device keeps its own key and certificate, so a large fleet is provisioned once and its
 * data dir and credentials copied into each run's work dir. The key names what went in.
 */
export function provisionedCache(cfg, databaseUrl) {
  if (!cfg.provisionCache || databaseUrl) return null;
  const dir = path.join(path.resolve(cfg.provisionCache), `sqlite-${cfg.devices}-rollouts${cfg.rollouts}`);
  return {
    dir,
    has: () => existsSync(path.join(dir, 'complete')),
    /** Copies the cached data dir and credentials into the run's. */
    restore(dataDir, credsDir) {
      cpSync(path.join(dir, 'server'), dataDir, { recursive: true });
      cpSync(path.join(dir, 'creds'), credsDir, { recursive: true });
    },
    /** Saves them (while nothing writes to the database: the provisioning processes have exited). */
    save(dataDir, credsDir) {
      const tmp = `${dir}.tmp-${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp, { recursive: true });
      cpSync(dataDir, path.join(tmp, 'server'), { recursive: true });
      cpSync(credsDir, path.join(tmp, 'creds'), { recursive: true });
      rmSync(dir, { recursive: true, force: true });
      renameSync(tmp, dir);
      mkdirSync(path.join(dir, 'complete'));
    },
  };
}
