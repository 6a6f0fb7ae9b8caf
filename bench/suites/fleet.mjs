// Over 400 lines: one suite's whole protocol (provisioning, phases, both engines, the echo baseline,
// the per-phase figures) is read top to bottom; its workers and helpers are already in bench/workers, bench/lib.
// 2. Fleet simulation: many simulated devices with distinct identities (own certificate, own
// channel) heartbeating at a compressed interval against the real server on SQLite (or a
// PostgreSQL database of its own); one rollout to all of them in waves through the server's
// rollout engine, the devices sending the agent's reports. Time to all healthy, server RSS
// (VmHWM), database size, heartbeat latency. The same fleet against the bare echo server is
// the baseline.
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createGroup, createRollout, getRollout, openDataDir, publishArtifact } from '@meshanics/server';
import { pin, pinPostgres } from '../lib/affinity.mjs';
import { databaseBytes } from '../lib/database.mjs';
import { initServerDataDir, loadCreds, provisionDevices, serverPki, startEchoServer, startMeshServer, workerPath } from '../lib/fixtures.mjs';
import { clientProcesses, preflight, provisionedCache } from '../lib/fleet-size.mjs';
import { fmtBytes, progress, sleep } from '../lib/log.mjs';
import { cpuMs, cpuMsOfCommand, ephemeralPorts, fileSize, machineCpu, machineCpuBetween, memoryPoller, runQueueWaitMs } from '../lib/proc.mjs';
import { Histogram, ratio, summarize } from '../lib/stats.mjs';
import { Worker } from '../lib/workers.mjs';

const SUITE = 'fleet';

export const CONFIG = {
  // 10,000 devices at a 30 s interval is 333 heartbeats/s (see docs/benchmarks.md for the choice).
  full: {
    devices: 10_000,
    // Load-generator processes: null is one per 2,500 devices (bench/lib/fleet-size.mjs).
    clientProcesses: null,
    // The simulated devices' channel: agent (grpc-js as the agent opens it), lean (grpc-js
    // without channelz, retries, service config) or http2 (node:http2 with gRPC framing); null
    // is agent up to 10,000 devices (the figures so far were taken with it) and http2 above,
    // which costs 0.7x the memory and 0.8x the CPU per heartbeat (docs/benchmarks.md, "what
    // one simulated device costs").
    channel: null,
    // New connections per second over all load generators (0: as fast as connectConcurrency allows).
    connectPerSecond: 0,
    // A directory where provisioned fleets are kept across runs (SQLite only), e.g. --set fleet.provisionCache='"/var/tmp/fleet-cache"'.
    provisionCache: null,
    // Refuse a fleet that will not fit in memory (bench/lib/fleet-size.mjs).
    memoryCheck: true,
    clientNice: 10,
    clientNodeArgs: ['--max-old-space-size=4096'],
    clientCpus: null,
    serverCpus: null,
    // Server processes on one PostgreSQL database (several need --database-url), each serving
    // an equal share of the load generators (and so of the devices); the echo baseline runs as
    // as many processes.
    replicas: 1,
    // `serve --workers N` for each replica (the connections handed round robin to its workers;
    // SQLite or PostgreSQL); the echo baseline runs replicas x workers processes.
    workers: 1,
    intervalSeconds: 30,
    rollouts: 1,
    waves: [0.1, 0.4, 1],
    steadyIntervals: 1,
    connectConcurrency: 24,
    downloadMs: [1000, 20_000],
    probeMs: 500,
  },
  smoke: {
    devices: 50,
    clientProcesses: 1,
    channel: 'agent',
    connectPerSecond: 0,
    provisionCache: null,
    memoryCheck: true,
    clientNice: 10,
    clientNodeArgs: ['--max-old-space-size=4096'],
    clientCpus: null,
    serverCpus: null,
    replicas: 1,
    workers: 1,
    intervalSeconds: 1,
    rollouts: 1,
    waves: [0.5, 1],
    steadyIntervals: 1.5,
    connectConcurrency: 8,
    downloadMs: [20, 80],
    probeMs: 10,
  },
};
// clientCpus / serverCpus (taskset lists, e.g. --set fleet.clientCpus=1 --set
// fleet.serverCpus=0): a split run. The load generators run only on clientCpus; the server
// (echo or real) and, on PostgreSQL, the local database only on serverCpus. Then the devices'
// latency is not their own wait for a core the server holds, at the price of a server with
// fewer cores than the machine (docs/benchmarks.md, "split runs").

/** utime + stime of several processes (replicas), summed, in ms. */
function cpuMsOf(procs) {
  return procs.reduce((a, p) => a + cpuMs(p.pid), 0);
}

/** The replicas' event-loop threads' wait for a core, summed (null where the kernel has no schedstat). */
function runQueueWaitMsOf(procs) {
  const each = procs.map((p) => runQueueWaitMs(p.pid));
  return each.includes(null) ? null : each.reduce((a, b) => a + b, 0);
}

/** Several processes' memory peaks as one: VmHWM and the largest sampled RSS summed (each process peaks at about the same time: all hold their share of the fleet). */
function sumPeaks(peaks) {
  return { hwm: peaks.reduce((a, p) => a + p.hwm, 0), maxRss: peaks.reduce((a, p) => a + p.maxRss, 0), each: peaks.map((p) => p.hwm) };
}

function split(total, parts) {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

/**
 * The source address of load generator i's connections to `address`: on loopback each
 * generator takes an address of its own in 127.0.0.0/8 (all of it is the loopback device's).
 * One source address has only the ephemeral ports (`ip_local_port_range`, 28,232 by default)
 * for each destination: 50,000 devices on one replica's port ran out of them (2026-12-07,
 * EADDRNOTAVAIL), where real devices each come from an address of their own.
 */
function sourceAddress(address, i) {
  if (!address.startsWith('127.')) return undefined;
  return `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
}

/**
 * Forks the simulated fleet and waits until every device registered. Load generator i
 * connects its devices to addresses[i % addresses.length] (one address per replica).
 */
async function connectFleet(cfg, addresses, caPem, creds, label) {
  const shares = split(cfg.devices, clientProcesses(cfg));
  // Each process reads only its own devices' credentials (all of them, parsed in every process, were 20 x 55 MB at 50,000).
  const credsFiles = [];
  for (let i = 0, from = 0; i < shares.length; from += shares[i], i++) {
    credsFiles.push(path.join(cfg.credsDir, `process-${i}.json`));
    if (!existsSync(credsFiles[i])) writeFileSync(credsFiles[i], JSON.stringify(creds.slice(from, from + shares[i])));
  }
  const clients = shares.map((_, i) => new Worker(`fleet-${label}-${i}`, workerPath('fleet-client.mjs'), [], { execArgv: cfg.clientNodeArgs }));
  // The simulated devices stand in for machines of their own, but here they share the two
  // cores with the server and its database: at a lower CPU priority they take only what the
  // system under test leaves (the same for the echo baseline). Latency is measured in them,
  // so their own wait for the CPU is in every figure; their event-loop delay is reported.
  // On PostgreSQL at equal priority they starved the database (2026-12-04: p99 1482 ms
  // against 169-182 ms at nice 10, docs/benchmarks.md). --set fleet.clientNice=0 turns it off.
  if (cfg.clientNice) for (const c of clients) os.setPriority(c.pid, cfg.clientNice);
  if (cfg.clientCpus) for (const c of clients) pin(c.pid, cfg.clientCpus);
  const connected = new Map();
  let lastPrint = Date.now();
  const t0 = performance.now();
  await Promise.all(
    clients.map((c, i) => {
      c.on('connected', (m) => {
        connected.set(i, m.done);
        if (Date.now() - lastPrint > 5000) {
          lastPrint = Date.now();
          progress(SUITE, `${label}: ${[...connected.values()].reduce((a, b) => a + b, 0)}/${cfg.devices} devices connected and registered`);
        }
      });
      const address = addresses[i % addresses.length];
      const msg = {
        type: 'init',
        credsFile: credsFiles[i],
        from: 0,
        count: shares[i],
        caPem,
        address,
        channel: cfg.channel,
        ...(cfg.channel === 'http2' ? { localAddress: sourceAddress(address, i) } : {}),
        connectConcurrency: cfg.connectConcurrency,
        connectPerSecond: cfg.connectPerSecond ? cfg.connectPerSecond / shares.length : 0,
        sim: { downloadMs: cfg.downloadMs, probeMs: cfg.probeMs },
      };
      return c.request(msg, 'ready', 30 * 60_000);
    }),
  );
  const connectSeconds = (performance.now() - t0) / 1000;
  progress(SUITE, `${label}: ${cfg.devices} devices connected over mTLS and registered in ${connectSeconds.toFixed(1)} s`);
  return { clients, connectSeconds };
}

async function startHeartbeats(clients, intervalSeconds) {
  await Promise.all(clients.map((c) => c.request({ type: 'heartbeats', intervalMs: intervalSeconds * 1000 }, 'started')));
}

async function setPhase(clients, name) {
  await Promise.all(clients.map((c) => c.request({ type: 'phase', name }, 'phased')));
}

async function stopFleet(clients) {
  const results = await Promise.all(clients.map((c) => c.request({ type: 'stop' }, 'result', 120_000)));
  await Promise.all(clients.map((c) => c.stop()));
  const merged = { hist: {}, connect: new Histogram(), errors: 0, firstError: undefined, heartbeats: 0, reports: 0, loop: { p99Ms: 0, maxMs: 0 }, phases: {} };
  for (const r of results) {
    // Per phase: the worst load generator's loop delay, their GC pauses and CPU time summed.
    for (const [name, p] of Object.entries(r.phases ?? {})) {
      const m = (merged.phases[name] ??= { loop: { p99Ms: 0, maxMs: 0 }, gc: {}, cpuSeconds: 0, wallSeconds: 0, runQueueSeconds: 0 });
      m.loop.p99Ms = Math.max(m.loop.p99Ms, p.loop.p99Ms);
      m.loop.maxMs = Math.max(m.loop.maxMs, p.loop.maxMs);
      m.cpuSeconds += p.cpuSeconds;
      m.runQueueSeconds = m.runQueueSeconds === null || p.runQueueSeconds == null ? null : m.runQueueSeconds + p.runQueueSeconds;
      m.wallSeconds = Math.max(m.wallSeconds, p.wallSeconds);
      for (const [kind, g] of Object.entries(p.gc)) {
        const mg = (m.gc[kind] ??= { pauses: 0, ms: 0, maxMs: 0 });
        mg.pauses += g.pauses;
        mg.ms += g.ms;
        mg.maxMs = Math.max(mg.maxMs, g.maxMs);
      }
    }
    merged.loop.p99Ms = Math.max(merged.loop.p99Ms, r.loop.p99Ms);
    merged.loop.maxMs = Math.max(merged.loop.maxMs, r.loop.maxMs);
    merged.connect.merge(r.connect);
    merged.errors += r.errors;
    merged.firstError ??= r.firstError;
    merged.heartbeats += r.heartbeats;
    merged.reports += r.reports;
    for (const [phase, h] of Object.entries(r.hist)) {
      merged.hist[phase] ??= { heartbeat: new Histogram(), report: new Histogram(), heartbeatAttempts: new Histogram(), heartbeatFailures: 0, reportFailures: 0 };
      const m = merged.hist[phase];
      m.heartbeat.merge(h.heartbeat);
      m.report.merge(h.report);
      m.heartbeatAttempts.merge(h.heartbeatAttempts);
      m.heartbeatFailures += h.heartbeatFailures;
      m.reportFailures += h.reportFailures;
    }
  }
  return merged;
}

/**
 * Under `serve --workers` every series carries its worker's label: folds them into one series
 * each, as one process would print it, summed (the event-loop delay: the worst worker's).
 */
function foldWorkers(text) {
  if (!text.includes('worker="')) return text;
  const folded = new Map();
  const out = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || !/(^|,)worker="/.test(m[2])) {
      out.push(line);
      continue;
    }
    const labels = m[2]
      .split(/,(?=\w+=")/)
      .filter((l) => !l.startsWith('worker='))
      .join(',');
    const key = labels ? `${m[1]}{${labels}}` : m[1];
    const value = Number(m[3]);
    if (!folded.has(key)) out.push({ key });
    folded.set(key, !folded.has(key) ? value : /_lag_/.test(m[1]) ? Math.max(folded.get(key), value) : folded.get(key) + value);
  }
  return out.map((l) => (typeof l === 'string' ? l : `${l.key} ${folded.get(l.key)}`)).join('\n');
}

/**
 * What the server counts about itself, from its /metrics: heartbeat cache lookups by result
 * (hit, miss, bypassed) and the database latency histogram's cumulative buckets by operation
 * (query, transaction). Undefined when the server has no API (older heads).
 */
async function serverCounters(server) {
  if (!server.api) return undefined;
  try {
    const text = foldWorkers(await (await fetch(`${server.api}/metrics`)).text());
    const cache = {};
    for (const m of text.matchAll(/^meshanics_heartbeat_cache_lookups_total\{result="(\w+)"\} (\d+)/gm)) cache[m[1]] = Number(m[2]);
    const database = {};
    for (const m of text.matchAll(/^meshanics_database_seconds_bucket\{([^}]*)\} (\d+)/gm)) {
      const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
      (database[labels.operation] ??= {})[labels.le] = Number(m[2]);
    }
    // The server's own time per heartbeat, by answer (memory, database) and installed set (unchanged, written).
    const heartbeat = {};
    for (const m of text.matchAll(/^meshanics_heartbeat_seconds_bucket\{([^}]*)\} (\d+)/gm)) {
      const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
      (heartbeat[`${labels.answer}/${labels.installed}`] ??= {})[labels.le] = Number(m[2]);
    }
    // prom-client's default metrics: garbage collection pauses by kind (count, total seconds,
    // and how many took longer than 100 ms).
    const gc = {};
    for (const m of text.matchAll(/^meshanics_nodejs_gc_duration_seconds_(count|sum|bucket)\{([^}]*)\} ([\d.e+-]+)/gm)) {
      const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
      const g = (gc[labels.kind] ??= { count: 0, seconds: 0, upTo100ms: 0 });
      if (m[1] === 'count') g.count = Number(m[3]);
      else if (m[1] === 'sum') g.seconds = Number(m[3]);
      else if (labels.le === '0.1') g.upTo100ms = Number(m[3]);
    }
    // The server's own event-loop delay since the previous scrape (prom-client resets its
    // histogram on every collect, and the suite scrapes at each phase's end): time calls spent
    // queued behind other work, which the per-heartbeat timing above does not include. Its
    // samples are 10 ms apart (prom-client's default), so an idle loop reads about 10 ms.
    const loop = {};
    for (const m of text.matchAll(/^meshanics_nodejs_eventloop_lag_(p50|p99|max)_seconds ([\d.e+-]+)/gm)) loop[`${m[1]}Ms`] = +(Number(m[2]) * 1000).toFixed(1);
    // Audit events of the devices' state transitions, appended to the hash chain in the status
    // reports' batches: events, batches (the histogram's count), time appending (its sum), and
    // the histogram's buckets under one "append" operation (for databaseDelta).
    const auditAppend = { append: {} };
    for (const m of text.matchAll(/^meshanics_audit_report_append_seconds_bucket\{le="([^"]*)"\} (\d+)/gm)) auditAppend.append[m[1]] = Number(m[2]);
    const metric = (name) => Number(text.match(new RegExp(`^${name} ([\\d.e+-]+)`, 'm'))?.[1] ?? NaN);
    const audit = {
      events: metric('meshanics_audit_report_events_total'),
      batches: metric('meshanics_audit_report_append_seconds_count'),
      seconds: metric('meshanics_audit_report_append_seconds_sum'),
    };
    return { cache, database, heartbeat, gc, loop, audit, auditAppend };
  } catch {
    return undefined;
  }
}

/**
 * The counters of several replicas as one server's: every count summed; the event-loop
 * delay figures are the worst replica's.
 */
async function fleetCounters(servers) {
  const each = await Promise.all(servers.map((s) => serverCounters(s)));
  if (each.some((c) => c === undefined)) return undefined;
  const sum = (a, b) => {
    if (typeof a === 'number' || typeof b === 'number') return (a ?? 0) + (b ?? 0);
    const out = { ...a };
    for (const [k, v] of Object.entries(b ?? {})) out[k] = sum(a?.[k], v);
    return out;
  };
  const merged = each.reduce((a, c) => sum(a, { ...c, loop: undefined }), {});
  merged.loop = {};
  for (const c of each) for (const [k, v] of Object.entries(c.loop ?? {})) merged.loop[k] = Math.max(merged.loop[k] ?? 0, v);
  return merged;
}

/** Garbage collection between two snapshots by kind: pauses, their total, and those over 100 ms. */
function gcDelta(from, to) {
  if (!from || !to) return undefined;
  const out = {};
  for (const [kind, g] of Object.entries(to.gc)) {
    const f = from.gc[kind] ?? { count: 0, seconds: 0, upTo100ms: 0 };
    out[kind] = { pauses: g.count - f.count, seconds: +(g.seconds - f.seconds).toFixed(3), over100ms: g.count - f.count - (g.upTo100ms - f.upTo100ms) };
  }
  return out;
}

/** Audit appends of status reports between two snapshots: events, batches, events per batch, time. */
function auditDelta(from, to) {
  if (!from?.audit || !to?.audit || Number.isNaN(to.audit.events)) return undefined;
  const events = to.audit.events - (from.audit.events || 0);
  const batches = to.audit.batches - (from.audit.batches || 0);
  const seconds = to.audit.seconds - (from.audit.seconds || 0);
  return {
    events,
    batches,
    eventsPerBatch: batches ? +(events / batches).toFixed(1) : null,
    appendSeconds: +seconds.toFixed(4),
    meanAppendMs: batches ? +((1000 * seconds) / batches).toFixed(3) : null,
    ...(databaseDelta(from, to, 'auditAppend')?.append ?? {}),
  };
}

/** Cache lookups between two snapshots, with the share of hits. */
function cacheDelta(from, to) {
  if (!from || !to || Object.keys(to.cache).length === 0) return undefined;
  const d = {};
  for (const k of Object.keys(to.cache)) d[k] = to.cache[k] - (from.cache[k] ?? 0);
  const total = Object.values(d).reduce((a, b) => a + b, 0);
  return { ...d, hitShare: total ? (d.hit ?? 0) / total : null };
}

/**
 * Database latency between two snapshots by operation: count, and p50/p99 as the upper bound
 * of the histogram bucket they fall in (the buckets are metrics.ts's).
 */
function databaseDelta(from, to, histogram = 'database') {
  if (!from?.[histogram] || !to?.[histogram]) return undefined;
  const out = {};
  for (const [operation, buckets] of Object.entries(to[histogram])) {
    const les = Object.keys(buckets).sort((a, b) => (a === '+Inf' ? 1 : b === '+Inf' ? -1 : Number(a) - Number(b)));
    const cumulative = les.map((le) => buckets[le] - (from[histogram][operation]?.[le] ?? 0));
    const n = cumulative.at(-1) ?? 0;
    if (n === 0) continue;
    const quantile = (q) => les[cumulative.findIndex((c) => c >= q * n)];
    const upTo100ms = cumulative[les.indexOf('0.1')];
    out[operation] = { n, p50UpToSeconds: quantile(0.5), p99UpToSeconds: quantile(0.99), ...(upTo100ms === undefined ? {} : { over100ms: n - upTo100ms }) };
  }
  return out;
}

/** SQLite: the database file with its WAL; PostgreSQL: pg_database_size of the suite's own database. */
async function dbBytes(dataDir, databaseUrl) {
  if (databaseUrl) return { total: await databaseBytes(databaseUrl) };
  const db = path.join(dataDir, 'meshanics.db');
  return { db: fileSize(db), wal: fileSize(`${db}-wal`), total: fileSize(db) + fileSize(`${db}-wal`) + fileSize(`${db}-shm`) };
}

/** `databaseUrl`/`backend`: the same simulation on a PostgreSQL database of its own (run.mjs --database-url). */
export async function run({ mode, work, overrides = {}, databaseUrl, backend }) {
  const cfg = { ...CONFIG[mode], ...overrides };
  cfg.channel ??= cfg.devices > 10_000 ? 'http2' : 'agent';
  if (!Number.isInteger(cfg.replicas) || cfg.replicas < 1) throw new Error(`fleet.replicas must be a whole number of 1 or more, not ${cfg.replicas}`);
  if (cfg.replicas > 1 && !databaseUrl) throw new Error('fleet.replicas > 1 needs PostgreSQL (--database-url): replicas share one database');
  if (cfg.replicas > clientProcesses(cfg))
    throw new Error(`fleet.replicas (${cfg.replicas}) must not exceed the load-generator processes (${clientProcesses(cfg)}): each replica serves whole processes`);
  if (!Number.isInteger(cfg.workers) || cfg.workers < 1) throw new Error(`fleet.workers must be a whole number of 1 or more, not ${cfg.workers}`);
  if (cfg.replicas * cfg.workers > clientProcesses(cfg))
    throw new Error(
      `fleet.replicas x fleet.workers (${cfg.replicas * cfg.workers}) must not exceed the load-generator processes (${clientProcesses(cfg)}): each echo process of the baseline serves whole processes`,
    );
  // grpc-js channels connect from 127.0.0.1 only, whose ephemeral ports a replica's one port
  // exhausts (sourceAddress above spreads only the http2 channels).
  const ports = ephemeralPorts();
  if (cfg.channel !== 'http2' && ports !== undefined && cfg.devices / cfg.replicas > ports)
    throw new Error(
      `fleet.channel "${cfg.channel}" connects every device from 127.0.0.1: ${Math.ceil(cfg.devices / cfg.replicas)} devices a replica exceed its ${ports} ephemeral ports (net.ipv4.ip_local_port_range); use the http2 channel`,
    );
  const label = backend ? `${SUITE}/${backend}` : SUITE;
  const dataDir = path.join(work, 'server');
  // Before anything is provisioned: will the fleet fit in memory?
  const sizing = preflight(cfg);
  progress(SUITE, `${sizing.summary}; ${sizing.available === null ? 'available memory unknown' : `${fmtBytes(sizing.available)} available`}`);
  const fleetCache = provisionedCache(cfg, databaseUrl);
  const cached = fleetCache?.has() ?? false;
  const credsDir = path.join(work, 'creds');
  // A cached fleet brings its data dir (database, CA, TUF repository, published artifacts).
  if (cached) {
    progress(SUITE, `${cfg.devices} provisioned devices from the cache ${fleetCache.dir}`);
    fleetCache.restore(dataDir, credsDir);
  } else await initServerDataDir(dataDir, { databaseUrl });
  const ctx = await openDataDir({ dataDir, ...(databaseUrl ? { databaseUrl } : {}) });
  let closing;
  const closeCtx = () => (closing ??= ctx.close());
  let unpinDatabase = () => undefined;
  try {
    // One small model version per rollout.
    for (let r = 1; r <= cfg.rollouts && !cached; r++) {
      const file = path.join(work, `detector-${r}.bin`);
      writeFileSync(file, Buffer.alloc(64 * 1024, r));
      await publishArtifact(ctx, { file, name: 'detector', version: `1.0.${r}`, kind: 'model', actor: 'bench' });
    }
    let creds;
    if (cached) {
      creds = loadCreds(
        readdirSync(credsDir)
          .filter((f) => /^creds-.*\.json$/.test(f))
          .sort()
          .map((f) => ({ file: path.join(credsDir, f) })),
      );
    } else {
      const slices = await provisionDevices(SUITE, dataDir, { fleet: 'sim', prefix: 'dev', count: cfg.devices, workers: 2, outDir: credsDir, databaseUrl });
      creds = loadCreds(slices);
      if (fleetCache) {
        fleetCache.save(dataDir, credsDir);
        progress(SUITE, `provisioned fleet saved in ${fleetCache.dir} for the next run`);
      }
    }
    cfg.credsDir = credsDir;
    const { caPem } = serverPki(dataDir);
    const steadyMs = cfg.steadyIntervals * cfg.intervalSeconds * 1000;
    const dbAfterProvisioning = await dbBytes(dataDir, databaseUrl);

    // Baseline: the same fleet, channels and interval against the bare echo server (one
    // process per replica, each serving the same share).
    const echoes = [];
    for (let i = 0; i < cfg.replicas * cfg.workers; i++) echoes.push(await startEchoServer(dataDir, { heartbeatSeconds: cfg.intervalSeconds }));
    if (cfg.serverCpus) for (const e of echoes) pin(e.pid, cfg.serverCpus);
    const echoMems = echoes.map((e) => memoryPoller(e.pid, 500));
    const echoAddresses = echoes.map((e) => e.grpc);
    const echoFleet = await connectFleet(cfg, echoAddresses, caPem, creds, 'echo');
    await startHeartbeats(echoFleet.clients, cfg.intervalSeconds);
    const echoCpu0 = cpuMsOf(echoes);
    const echoMachine0 = machineCpu();
    await sleep(steadyMs);
    const echoCpuCores = (cpuMsOf(echoes) - echoCpu0) / steadyMs;
    const echoMachine = machineCpuBetween(echoMachine0, machineCpu());
    const echoResult = await stopFleet(echoFleet.clients);
    const echoPeak = sumPeaks(echoMems.map((m) => m.stop()));
    for (const e of echoes) await e.stop();
    const echoWaited = echoResult.phases.steady?.runQueueSeconds;
    progress(
      SUITE,
      `echo: peak RSS ${fmtBytes(echoPeak.hwm)}, heartbeat p99 ${echoResult.hist.steady.heartbeat.quantile(0.99)?.toFixed(1)} ms; cores busy ${echoMachine.busyShare === null ? 'n/a' : `${(100 * echoMachine.busyShare).toFixed(0)}%`}, some task waiting for a core ${echoMachine.cpuWaitShare === null ? 'n/a' : `${(100 * echoMachine.cpuWaitShare).toFixed(0)}%`} of the time${echoWaited == null ? '' : `, load generators' event-loop threads waited ${echoWaited.toFixed(1)} s in all`}`,
    );

    // The real server: one process per replica, started one after the other (the first
    // applies what the database needs; initDataDir is safe either way).
    const servers = [];
    for (let i = 0; i < cfg.replicas; i++) servers.push(await startMeshServer(dataDir, { heartbeatSeconds: cfg.intervalSeconds, databaseUrl, api: true, workers: cfg.workers }));
    // Under serve --workers a replica is its primary (it accepts the connections and hands them on) and its workers.
    const procs = servers.flatMap((s) => [{ pid: s.proc.pid }, ...s.workerPids.map((pid) => ({ pid }))]);
    if (cfg.serverCpus) {
      for (const p of procs) pin(p.pid, cfg.serverCpus);
      if (databaseUrl) unpinDatabase = pinPostgres(cfg.serverCpus);
    }
    const serverMems = procs.map((p) => memoryPoller(p.pid, 500));
    const serverAddresses = servers.map((s) => s.grpc);
    const fleet = await connectFleet(cfg, serverAddresses, caPem, creds, 'server');
    const rssAfterConnect = serverMems.reduce((a, m) => a + m.result.maxRss, 0);
    const healthy = new Map(); // client index -> { version -> count }
    let lastHealthyAt = 0;
    fleet.clients.forEach((c, i) =>
      c.on('progress', (m) => {
        healthy.set(i, m.healthy);
        lastHealthyAt = Math.max(lastHealthyAt, m.lastHealthyAt);
      }),
    );
    const healthyOf = (version) => [...healthy.values()].reduce((a, h) => a + (h[version] ?? 0), 0);

    await startHeartbeats(fleet.clients, cfg.intervalSeconds);
    const steadyCpu0 = cpuMsOf(procs);
    // Whether the machine had a core for everyone, per phase: its busy share, the share of
    // time some runnable task waited for a core (PSI), the server's event-loop thread's own
    // wait for one, and on PostgreSQL the local database's CPU (every process named postgres:
    // this run's backends and the shared work; other databases' too, none run meanwhile).
    // docs/benchmarks.md, "who waits for a core".
    const cpuAt = (name) => ({
      name,
      machine: machineCpu(),
      serverRunQueueMs: runQueueWaitMsOf(procs),
      serverCpuMs: cpuMsOf(procs),
      databaseCpuMs: databaseUrl ? cpuMsOfCommand('postgres') : null,
    });
    const cpuMarks = [cpuAt('steady')];
    const countersAtSteady = await fleetCounters(servers);
    await sleep(steadyMs);
    const steadyCpuCores = (cpuMsOf(procs) - steadyCpu0) / steadyMs;
    const countersAtRollout = await fleetCounters(servers);
    progress(
      SUITE,
      `server${cfg.replicas > 1 ? `, ${cfg.replicas} replicas` : ''}${cfg.workers > 1 ? `, ${cfg.workers} workers each` : ''}: steady state at ${(cfg.devices / cfg.intervalSeconds).toFixed(0)} heartbeats/s, server CPU ${steadyCpuCores.toFixed(2)} cores, RSS ${serverMems.map((m) => fmtBytes(m.result.maxRss)).join(' + ')}`,
    );

    // One real rollout per version through the server's rollout engine (what the operator API
    // calls): a group of every device, waves of cfg.waves (cumulative), each started by the
    // serving process once the previous wave is healthy.
    // fleet.rollouts=0: a heartbeat-only steady state (no group, no rollout).
    if (cfg.rollouts > 0) await createGroup(ctx, { fleet: 'sim', name: 'everyone', devices: creds.map((d) => d.name), actor: 'bench' });
    const rollouts = [];
    for (let r = 1; r <= cfg.rollouts; r++) {
      const version = `1.0.${r}`;
      await setPhase(fleet.clients, 'rollout');
      cpuMarks.push(cpuAt('rollout'));
      const cpu0 = cpuMsOf(procs);
      const t0 = Date.now();
      const created = await createRollout(ctx, {
        fleet: 'sim',
        artifact: { name: 'detector', version },
        group: 'everyone',
        probe: { type: 'file', spec: { path: '/run/detector/ready' }, timeoutSeconds: 5, attempts: 1 },
        strategy: { waves: cfg.waves.map((f) => ({ percent: Math.round(f * 100), approval: 'auto' })) },
        actor: 'bench',
      });
      const createSeconds = (Date.now() - t0) / 1000;
      const cumulative = created.waves.map((w, i) => created.waves.slice(0, i + 1).reduce((a, x) => a + x.devices, 0));
      progress(SUITE, `rollout ${r}: created in ${createSeconds.toFixed(1)} s, waves of ${created.waves.map((w) => w.devices).join(' / ')} devices`);
      // Bounded per wave: a device learns of its assignment within one interval and then needs
      // the simulated download; an overloaded server gets a few intervals more, then the wave
      // is recorded as not reached (a measurement, not a harness failure).
      const waveBudgetMs = (cfg.intervalSeconds * 4 + cfg.downloadMs[1] / 1000 + 60) * 1000;
      const waves = [];
      let complete = true;
      let w0 = t0;
      for (const [i, until] of cumulative.entries()) {
        const deadline = Date.now() + waveBudgetMs;
        let lastPrint = Date.now();
        while (healthyOf(version) < until && Date.now() < deadline) {
          await sleep(100);
          if (Date.now() - lastPrint > 10_000) {
            lastPrint = Date.now();
            progress(SUITE, `rollout ${r} wave ${i + 1} (to ${until} devices): ${healthyOf(version)} healthy after ${((Date.now() - w0) / 1000).toFixed(0)} s`);
          }
        }
        const reached = healthyOf(version);
        waves.push({ devices: created.waves[i].devices, healthy: reached, seconds: (Date.now() - w0) / 1000 });
        progress(
          SUITE,
          `rollout ${r}/${cfg.rollouts} wave ${i + 1}/${cumulative.length} (to ${until}/${cfg.devices} devices): ${reached >= until ? 'all' : reached} healthy after ${((Date.now() - w0) / 1000).toFixed(1)} s`,
        );
        if (reached < until) {
          complete = false;
          break;
        }
        w0 = Date.now();
      }
      // Protocol bound: a device learns of its assignment at its next heartbeat (up to one
      // interval later), then spends the simulated download + probe time; an instantaneous
      // server needs about this long in the worst case, so ~1x means the server added no delay.
      const floorSeconds = cumulative.length * (cfg.intervalSeconds + (cfg.downloadMs[1] + cfg.probeMs) / 1000);
      // The server's own record must agree with what the devices saw.
      const detail = await getRollout(ctx, created.id);
      if (complete && (detail.status !== 'completed' || detail.counts.HEALTHY !== cfg.devices)) {
        throw new Error(
          `rollout ${created.id} is ${detail.status} with ${detail.counts.HEALTHY}/${cfg.devices} HEALTHY in the server's database, but every device reported healthy`,
        );
      }
      rollouts.push({
        version,
        id: created.id,
        status: detail.status,
        complete,
        healthy: healthyOf(version),
        seconds: complete ? (lastHealthyAt - t0) / 1000 : null,
        createSeconds,
        floorSeconds,
        waves,
        waveStarts: detail.waves.map((w) => w.startedAt),
        cpuCores: (cpuMsOf(procs) - cpu0) / 1000 / ((Date.now() - t0) / 1000),
      });
      await setPhase(fleet.clients, 'after');
      cpuMarks.push(cpuAt('after'));
      if (!complete) break;
    }

    const countersAtEnd = await fleetCounters(servers);
    const cache = { steady: cacheDelta(countersAtSteady, countersAtRollout), rollout: cacheDelta(countersAtRollout, countersAtEnd) };
    const database = { steady: databaseDelta(countersAtSteady, countersAtRollout), rollout: databaseDelta(countersAtRollout, countersAtEnd) };
    const serverHeartbeat = { steady: databaseDelta(countersAtSteady, countersAtRollout, 'heartbeat'), rollout: databaseDelta(countersAtRollout, countersAtEnd, 'heartbeat') };
    const serverLoopDelay = { steady: countersAtRollout?.loop, rollout: countersAtEnd?.loop };
    const audit = auditDelta(countersAtRollout, countersAtEnd);
    if (audit)
      progress(
        SUITE,
        `audit trail, rollouts: ${audit.events} transition events in ${audit.batches} batches (${audit.eventsPerBatch} per batch), ${audit.appendSeconds} s appending (mean ${audit.meanAppendMs} ms per batch, p99 <= ${audit.p99UpToSeconds} s)`,
      );
    const share = (d) => (typeof d?.hitShare === 'number' ? `${(100 * d.hitShare).toFixed(1)}%` : 'n/a');
    if (cache.steady || cache.rollout)
      progress(SUITE, `heartbeat cache hits: ${share(cache.steady)} steady, ${share(cache.rollout)} during rollouts (${JSON.stringify(cache.rollout)})`);
    const gc = { steady: gcDelta(countersAtSteady, countersAtRollout), rollout: gcDelta(countersAtRollout, countersAtEnd) };
    if (gc.steady) progress(SUITE, `server GC: steady ${JSON.stringify(gc.steady)}, rollouts ${JSON.stringify(gc.rollout)}`);
    if (database.steady) progress(SUITE, `database latency (bucket bounds, s): steady ${JSON.stringify(database.steady)}, rollouts ${JSON.stringify(database.rollout)}`);
    if (serverLoopDelay.rollout)
      progress(SUITE, `server event-loop delay (10 ms sampling included): steady ${JSON.stringify(serverLoopDelay.steady)}, rollouts ${JSON.stringify(serverLoopDelay.rollout)}`);
    if (serverHeartbeat.steady)
      progress(SUITE, `server time per heartbeat (bucket bounds, s): steady ${JSON.stringify(serverHeartbeat.steady)}, rollouts ${JSON.stringify(serverHeartbeat.rollout)}`);
    cpuMarks.push(cpuAt('end'));
    const machinePhases = {};
    for (let i = 0; i + 1 < cpuMarks.length; i++) {
      const [a, b] = [cpuMarks[i], cpuMarks[i + 1]];
      const wallSeconds = (b.machine.at - a.machine.at) / 1000;
      const m = (machinePhases[a.name] ??= {
        wallSeconds: 0,
        serverCpuSeconds: 0,
        serverRunQueueSeconds: 0,
        databaseCpuSeconds: databaseUrl ? 0 : null,
        busyShare: 0,
        cpuWaitShare: 0,
      });
      const between = machineCpuBetween(a.machine, b.machine);
      // Shares are weighted by wall time when a phase occurs more than once (several rollouts).
      const weigh = (prev, x) => (x === null || prev === null ? null : (prev * m.wallSeconds + x * wallSeconds) / (m.wallSeconds + wallSeconds));
      m.busyShare = weigh(m.busyShare, between.busyShare);
      m.cpuWaitShare = weigh(m.cpuWaitShare, between.cpuWaitShare);
      m.serverCpuSeconds += (b.serverCpuMs - a.serverCpuMs) / 1000;
      if (m.databaseCpuSeconds !== null) m.databaseCpuSeconds += (b.databaseCpuMs - a.databaseCpuMs) / 1000;
      m.serverRunQueueSeconds =
        a.serverRunQueueMs === null || b.serverRunQueueMs === null || m.serverRunQueueSeconds === null
          ? null
          : m.serverRunQueueSeconds + (b.serverRunQueueMs - a.serverRunQueueMs) / 1000;
      m.wallSeconds += wallSeconds;
    }
    const pct = (x) => (x === null ? 'n/a' : `${(100 * x).toFixed(0)}%`);
    for (const [name, m] of Object.entries(machinePhases)) {
      progress(
        SUITE,
        `machine, ${name}: cores busy ${pct(m.busyShare)}, some task waiting for a core ${pct(m.cpuWaitShare)} of the time; server CPU ${(m.serverCpuSeconds / m.wallSeconds).toFixed(2)} cores${m.databaseCpuSeconds === null ? '' : `, PostgreSQL ${(m.databaseCpuSeconds / m.wallSeconds).toFixed(2)} cores`}, its event-loop thread waited for a core ${m.serverRunQueueSeconds === null ? 'n/a' : `${m.serverRunQueueSeconds.toFixed(1)} s`} of ${m.wallSeconds.toFixed(0)} s`,
      );
    }
    const result = await stopFleet(fleet.clients);
    for (const [name, p] of Object.entries(result.phases)) {
      const gc = Object.entries(p.gc)
        .map(([kind, g]) => `${kind} ${g.pauses} (${Math.round(g.ms)} ms, max ${Math.round(g.maxMs)} ms)`)
        .join(', ');
      const waited = p.runQueueSeconds == null ? '' : `; their event-loop threads waited for a core ${p.runQueueSeconds.toFixed(1)} s in all`;
      progress(
        SUITE,
        `load generators, ${name}: loop delay p99 ${p.loop.p99Ms.toFixed(1)} ms, max ${p.loop.maxMs.toFixed(1)} ms; CPU ${(p.cpuSeconds / p.wallSeconds).toFixed(2)} cores; GC ${gc}${waited}`,
      );
    }
    const live = await dbBytes(dataDir, databaseUrl);
    const replicaPeaks = serverMems.map((m) => m.stop());
    const peak = sumPeaks(replicaPeaks);
    await closeCtx();
    for (const server of servers) await server.stop();
    const closed = await dbBytes(dataDir, databaseUrl);

    // Latency over every attempt (a call that failed counts at the time it failed, usually the
    // 15 s deadline): an overloaded server must not look fast because only its survivors count.
    const phase = (name) =>
      result.hist[name] ?? { heartbeat: new Histogram(), report: new Histogram(), heartbeatAttempts: new Histogram(), heartbeatFailures: 0, reportFailures: 0 };
    const steadyRate = phase('steady').heartbeat.n / (steadyMs / 1000);
    const steady = new Histogram().merge(phase('steady').heartbeatAttempts).merge(phase('after').heartbeatAttempts);
    const roll = phase('rollout').heartbeatAttempts;
    const all = new Histogram().merge(steady).merge(roll);
    const failed = phase('steady').heartbeatFailures + phase('after').heartbeatFailures + phase('rollout').heartbeatFailures;
    const echoSteady = echoResult.hist.steady.heartbeatAttempts;
    const done = rollouts.filter((r) => r.complete);
    const times =
      rollouts.length === 0
        ? 'no rollout'
        : done.length === rollouts.length
          ? summarize(done.map((r) => r.seconds))
          : `not reached: ${rollouts.at(-1).healthy}/${cfg.devices} healthy`;
    const floorRatio = summarize(done.map((r) => r.seconds / r.floorSeconds));
    const p99 = all.quantile(0.99);
    const vsEcho = (a, b) => summarize([ratio(a, b)]);
    const rows = [
      {
        suite: label,
        metric: `${cfg.devices} devices: time to all healthy (${cfg.waves.length} waves)`,
        unit: 's',
        value: times,
        baseline: rollouts[0]?.floorSeconds ?? null,
        baselineName: 'protocol bound',
        ratio: floorRatio,
      },
      {
        suite: label,
        metric: `heartbeats answered in time, steady (${cfg.intervalSeconds} s interval)`,
        unit: '/s',
        value: steadyRate,
        baseline: cfg.devices / cfg.intervalSeconds,
        baselineName: 'offered',
        ratio: vsEcho(steadyRate, cfg.devices / cfg.intervalSeconds),
      },
      { suite: label, metric: 'heartbeat calls failed (deadline 15 s)', unit: '', value: failed, baseline: echoResult.hist.steady.heartbeatFailures, baselineName: 'echo' },
      {
        suite: label,
        metric: `server peak RSS (VmHWM${procs.length > 1 ? `, ${procs.length} processes summed` : ''})`,
        unit: 'bytes',
        value: peak.hwm,
        baseline: echoPeak.hwm,
        baselineName: 'echo',
        ratio: vsEcho(peak.hwm, echoPeak.hwm),
      },
      {
        suite: label,
        metric: 'heartbeat p50 latency',
        unit: 'ms',
        value: all.quantile(0.5),
        baseline: echoSteady.quantile(0.5),
        baselineName: 'echo',
        ratio: vsEcho(all.quantile(0.5), echoSteady.quantile(0.5)),
      },
      {
        suite: label,
        metric: 'heartbeat p99 latency',
        unit: 'ms',
        value: p99,
        baseline: echoSteady.quantile(0.99),
        baselineName: 'echo',
        ratio: vsEcho(p99, echoSteady.quantile(0.99)),
        target: '< 100 ms',
        met: p99 !== null ? p99 < 100 : null,
      },
      {
        suite: label,
        metric: 'heartbeat p99 during rollouts',
        unit: 'ms',
        value: roll.quantile(0.99),
        baseline: steady.quantile(0.99),
        baselineName: 'steady',
        ratio: vsEcho(roll.quantile(0.99), steady.quantile(0.99)),
      },
      {
        suite: label,
        metric: 'status report p99 latency (acknowledged)',
        unit: 'ms',
        value: phase('rollout').report.quantile(0.99),
        baseline: phase('rollout').heartbeat.quantile(0.99),
        baselineName: 'heartbeats (same phase)',
        ratio: vsEcho(phase('rollout').report.quantile(0.99), phase('rollout').heartbeat.quantile(0.99)),
      },
      {
        suite: label,
        metric: 'load generators: event-loop delay p99',
        unit: 'ms',
        value: result.loop.p99Ms,
        baseline: echoResult.loop.p99Ms,
        baselineName: 'echo run',
        ratio: vsEcho(result.loop.p99Ms, echoResult.loop.p99Ms),
      },
      {
        suite: label,
        metric: 'server CPU, steady (cores)',
        unit: 'cores',
        value: steadyCpuCores,
        baseline: echoCpuCores,
        baselineName: 'echo',
        ratio: vsEcho(steadyCpuCores, echoCpuCores),
      },
      {
        suite: label,
        metric: databaseUrl ? 'database size (pg_database_size)' : 'database size (db+wal, live)',
        unit: 'bytes',
        value: live.total,
        baseline: dbAfterProvisioning.total,
        baselineName: 'provisioned',
        ratio: vsEcho(live.total, dbAfterProvisioning.total),
      },
      {
        suite: label,
        metric: 'connect + register all devices',
        unit: 's',
        value: fleet.connectSeconds,
        baseline: echoFleet.connectSeconds,
        baselineName: 'echo',
        ratio: vsEcho(fleet.connectSeconds, echoFleet.connectSeconds),
      },
    ];
    return {
      config: cfg,
      backend: backend ?? 'sqlite',
      heartbeatsPerSecondNominal: cfg.devices / cfg.intervalSeconds,
      rollouts,
      server: {
        replicas: cfg.replicas,
        workers: cfg.workers,
        peakRss: peak.hwm,
        replicaPeakRss: replicaPeaks.map((p) => p.hwm),
        maxSampledRss: peak.maxRss,
        rssAfterConnect,
        steadyCpuCores,
        connectSeconds: fleet.connectSeconds,
        latencyMs: {
          steady: { p50: steady.quantile(0.5), p99: steady.quantile(0.99), max: steady.max, n: steady.n },
          rollout: { p50: roll.quantile(0.5), p99: roll.quantile(0.99), max: roll.max, n: roll.n },
          all: { p50: all.quantile(0.5), p99, max: all.max, n: all.n },
          report: {
            p50: phase('rollout').report.quantile(0.5),
            p99: phase('rollout').report.quantile(0.99),
            n: phase('rollout').report.n,
            failures: phase('rollout').reportFailures,
          },
          heartbeatFailures: failed,
          connect: { p50: result.connect.quantile(0.5), p99: result.connect.quantile(0.99) },
        },
        database: { afterProvisioning: dbAfterProvisioning, live, afterClose: closed },
        clientErrors: result.errors,
        heartbeatsPerSecondSteady: steadyRate,
        loadGeneratorLoopDelayMs: result.loop,
        loadGeneratorPhases: result.phases,
        firstClientError: result.firstError,
        heartbeats: result.heartbeats,
        reports: result.reports,
        heartbeatCache: cache,
        databaseLatency: database,
        serverHeartbeatSeconds: serverHeartbeat,
        serverLoopDelayMs: serverLoopDelay,
        auditReportAppends: audit,
        garbageCollection: gc,
        machinePhases,
      },
      echo: {
        loadGeneratorLoopDelayMs: echoResult.loop,
        loadGeneratorPhases: echoResult.phases,
        machine: echoMachine,
        peakRss: echoPeak.hwm,
        replicaPeakRss: echoPeak.each,
        steadyCpuCores: echoCpuCores,
        connectSeconds: echoFleet.connectSeconds,
        latencyMs: { p50: echoSteady.quantile(0.5), p99: echoSteady.quantile(0.99), max: echoSteady.max, n: echoSteady.n, failures: echoResult.hist.steady.heartbeatFailures },
      },
      rows,
    };
  } finally {
    unpinDatabase();
    await closeCtx();
  }
}
