// 8. Memory per connected device: N idle devices, each with its own certificate and mTLS
// connection, registered and one heartbeat sent, held open against (a) `meshanics-server
// serve` (SQLite) and (b) the bare grpc-js echo server (workers/echo-server.mjs) with the same
// certificates, in the same run, the targets' order alternating. Measured in the target
// itself (workers/mem-probe.mjs, preloaded: garbage collected, then process.memoryUsage())
// after a few warm-up connections and again at each N (connections are added, never
// replaced): RSS and V8 heap per connection = (at N - at warm-up) / N. Then one more
// heartbeat on every connection, 64 at a time, for its latency (a setting that saves memory
// must not cost that). The load generators are workers/conn-client.mjs: node:http2 sessions,
// hundreds per process. `--set conn-memory.heapSnapshotDir=DIR` writes a heap snapshot at
// each probe (bench/heap-by-constructor.mjs compares two).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { startServer } from '../../scripts/lib/processes.mjs';
import { initServerDataDir, provisionDevices, serverPki, startNode, workerPath } from '../lib/fixtures.mjs';
import { fmtBytes, progress } from '../lib/log.mjs';
import { Histogram, ratio, summarize } from '../lib/stats.mjs';
import { track, Worker } from '../lib/workers.mjs';

const SUITE = 'conn-memory';
/**
 * The server's environment as the server image sets it (deploy/server/Containerfile): glibc
 * mmaps allocations of 32 KiB and more, so each connection's 64 KiB TLS read buffer stays on
 * untouched pages (bench/history/2026-12-05-conn-memory.md). The echo server runs without it.
 */
export const SERVER_IMAGE_ENV = { MALLOC_MMAP_THRESHOLD_: '32768' };
const GOAL_RATIO = 1.2;

export const CONFIG = {
  full: {
    connections: [1000, 4000],
    runs: 5,
    clients: 2,
    warmup: 16,
    connectConcurrency: 16,
    heartbeatConcurrency: 64,
    heartbeatSeconds: 60,
    heapSnapshotDir: null,
    serverArgs: [],
    serverNodeArgs: [],
    serverEnv: SERVER_IMAGE_ENV,
    calls: true,
  },
  smoke: {
    connections: [100],
    runs: 1,
    clients: 1,
    warmup: 4,
    connectConcurrency: 8,
    heartbeatConcurrency: 16,
    heartbeatSeconds: 60,
    heapSnapshotDir: null,
    serverArgs: [],
    serverNodeArgs: [],
    serverEnv: SERVER_IMAGE_ENV,
    calls: true,
  },
};

/** Splits `total` connections over the clients (the first ones take the remainder). */
const shareOf = (total, clients, i) => Math.floor(total / clients) + (i < total % clients ? 1 : 0);

async function startTarget(kind, dataDir, cfg, run) {
  const execArgv = ['--expose-gc', '--import', workerPath('mem-probe.mjs'), ...(kind === 'server' ? cfg.serverNodeArgs : [])];
  const env = cfg.heapSnapshotDir ? { BENCH_HEAPSNAPSHOT_DIR: cfg.heapSnapshotDir, BENCH_HEAPSNAPSHOT_LABEL: `${kind}-run${run}` } : {};
  if (kind === 'server') {
    // The snapshot variables reach serve through this process's environment (startServer adds none).
    Object.assign(process.env, env, cfg.serverEnv);
    try {
      return track(await startServer(dataDir, { heartbeatSeconds: cfg.heartbeatSeconds, execArgv, extraArgs: cfg.serverArgs }));
    } finally {
      for (const k of [...Object.keys(env), ...Object.keys(cfg.serverEnv)]) delete process.env[k];
    }
  }
  const echo = startNode('echo', workerPath('echo-server.mjs'), [dataDir, String(cfg.heartbeatSeconds)], env, { execArgv });
  echo.grpc = (await echo.waitForLine((l) => l && l.msg === 'echo listening')).grpc;
  return echo;
}

/** The target's memory after a full collection (workers/mem-probe.mjs answers SIGUSR2). */
async function probe(target) {
  const seq = (target.probes = (target.probes ?? 0) + 1);
  target.proc.kill('SIGUSR2');
  const line = await target.waitForLine((l) => l && l.msg === 'mem-probe' && l.seq === seq, 600_000);
  if (!line.gcExposed) throw new Error(`${SUITE}: the target has no gc() (--expose-gc missing)`);
  return line;
}

async function measureTarget(kind, dataDir, cfg, clients, run) {
  const target = await startTarget(kind, dataDir, cfg, run);
  try {
    const connectTo = async (total) => {
      const replies = await Promise.all(
        clients.map((c, i) =>
          c.request(
            { type: 'connect', address: target.grpc, upTo: shareOf(total, clients.length, i), concurrency: cfg.connectConcurrency, calls: cfg.calls },
            'connected',
            30 * 60_000,
          ),
        ),
      );
      const open = replies.reduce((a, r) => a + r.open, 0);
      const closedEarly = replies.reduce((a, r) => a + r.closedEarly, 0);
      if (open !== total || closedEarly) throw new Error(`${SUITE}: ${kind} has ${open} connections open of ${total}, ${closedEarly} closed by the server`);
    };
    await connectTo(cfg.warmup);
    const base = await probe(target);
    const points = [];
    for (const n of cfg.connections) {
      const t0 = performance.now();
      await connectTo(cfg.warmup + n);
      const at = await probe(target);
      const point = {
        n,
        connectSeconds: (performance.now() - t0) / 1000,
        rssPerConnection: (at.rss - base.rss) / n,
        heapPerConnection: (at.heapUsed - base.heapUsed) / n,
        // V8's committed heap (young generation included) and memory outside it that V8 knows of.
        heapTotalPerConnection: (at.heapTotal - base.heapTotal) / n,
        externalPerConnection: (at.external - base.external) / n,
        rssAnonPerConnection: (at.rssAnon - base.rssAnon) / n,
        // V8's young generation (new_space) grows with the allocation rate and stays committed.
        newSpacePerConnection: (at.spaces.new_space - base.spaces.new_space) / n,
        oldSpacePerConnection: (at.spaces.old_space - base.spaces.old_space) / n,
        rssFilePerConnection: (at.rssFile - base.rssFile) / n,
        // With BENCH_MALLOC_ADDON (workers/mem-probe.mjs): glibc's view, diagnostic only.
        ...(at.mallocInUse === undefined
          ? {}
          : {
              mallocInUsePerConnection: (at.mallocInUse - base.mallocInUse) / n,
              mallocFreePerConnection: (at.mallocFree - base.mallocFree) / n,
              mallocSystemPerConnection: (at.mallocSystem - base.mallocSystem) / n,
              rssAnonTrimmedPerConnection: (at.rssAnonTrimmed - base.rssAnonTrimmed) / n,
              mallocArenas: at.mallocArenas,
            }),
        rss: at.rss,
        heapUsed: at.heapUsed,
        ...(at.snapshot ? { snapshot: at.snapshot } : {}),
      };
      // Between two sizes: what one more connection costs, without what the first ones paid
      // once (code compiled and touched, V8's young generation grown to its working size).
      const prev = points.at(-1);
      if (prev) point.rssMarginal = (at.rss - prev.rss) / (n - prev.n);
      points.push(point);
      progress(
        SUITE,
        `run ${run + 1}, ${kind}, ${n} connections: RSS ${fmtBytes(point.rssPerConnection)}, heap used ${fmtBytes(point.heapPerConnection)}, heap committed ${fmtBytes(point.heapTotalPerConnection)} (new space ${fmtBytes(point.newSpacePerConnection)}, old ${fmtBytes(point.oldSpacePerConnection)}), external ${fmtBytes(point.externalPerConnection)}, anonymous ${fmtBytes(point.rssAnonPerConnection)}, file ${fmtBytes(point.rssFilePerConnection)} per connection (RSS ${fmtBytes(at.rss)})${
          point.mallocInUsePerConnection === undefined
            ? ''
            : `; malloc in use ${fmtBytes(point.mallocInUsePerConnection)}, free ${fmtBytes(point.mallocFreePerConnection)}, from the system ${fmtBytes(point.mallocSystemPerConnection)}, anonymous after malloc_trim ${fmtBytes(point.rssAnonTrimmedPerConnection)} per connection (${point.mallocArenas} arenas)`
        }`,
      );
    }
    if (cfg.calls === false) {
      await Promise.all(clients.map((c) => c.request({ type: 'closeAll' }, 'closed', 120_000)));
      return { kind, base: { rss: base.rss, heapUsed: base.heapUsed }, points, heartbeat: { p50: null, p99: null, n: 0 } };
    }
    const beaten = await Promise.all(
      clients.map((c) => c.request({ type: 'heartbeats', concurrency: Math.ceil(cfg.heartbeatConcurrency / clients.length) }, 'beaten', 30 * 60_000)),
    );
    const hist = new Histogram();
    for (const b of beaten) hist.merge(b.hist);
    await Promise.all(clients.map((c) => c.request({ type: 'closeAll' }, 'closed', 120_000)));
    return {
      kind,
      base: { rss: base.rss, heapUsed: base.heapUsed, ...(base.snapshot ? { snapshot: base.snapshot } : {}) },
      points,
      heartbeat: { p50: hist.quantile(0.5), p99: hist.quantile(0.99), n: hist.n },
    };
  } finally {
    await target.stop();
  }
}

export async function run({ mode, work, overrides = {} }) {
  const cfg = { ...CONFIG[mode], ...overrides };
  cfg.connections = [...cfg.connections].sort((a, b) => a - b);
  if (cfg.heapSnapshotDir) mkdirSync(cfg.heapSnapshotDir, { recursive: true });
  const dataDir = path.join(work, 'server');
  await initServerDataDir(dataDir);
  const total = cfg.warmup + cfg.connections.at(-1);
  const slices = await provisionDevices(SUITE, dataDir, { fleet: 'conn', prefix: 'conn', count: total, workers: cfg.clients, outDir: path.join(work, 'creds') });
  const { caPem } = serverPki(dataDir);
  const clients = slices.map((_, i) => new Worker(`conn-client-${i}`, workerPath('conn-client.mjs')));
  await Promise.all(clients.map((c, i) => c.request({ type: 'init', credsFile: slices[i].file, from: 0, count: slices[i].count, caPem }, 'ready')));
  // Each client's devices are its own slice; a total is spread evenly, so the slices must hold their share.
  for (const [i, s] of slices.entries()) if (s.count < shareOf(total, clients.length, i)) throw new Error(`${SUITE}: slice ${i} is too small`);

  const runs = [];
  try {
    for (let r = 0; r < cfg.runs; r++) {
      // Alternate which target goes first, so a drift of the machine favours neither.
      const order = r % 2 === 0 ? ['echo', 'server'] : ['server', 'echo'];
      const out = {};
      for (const kind of order) out[kind] = await measureTarget(kind, dataDir, cfg, clients, r);
      runs.push(out);
    }
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
  }

  const rows = [];
  for (const [k, n] of cfg.connections.entries()) {
    const pick = (kind, field) => runs.map((r) => r[kind].points[k][field]);
    // A run in which either RSS did not grow (too few connections to outweigh what the
    // collector gave back: the smoke size) has no ratio, and the target is then unmeasured.
    const ratios = runs.map((r) =>
      r.echo.points[k].rssPerConnection > 0 && r.server.points[k].rssPerConnection > 0 ? ratio(r.server.points[k].rssPerConnection, r.echo.points[k].rssPerConnection) : null,
    );
    const median = summarize(ratios).median;
    const met = median === null ? null : median <= GOAL_RATIO;
    rows.push({
      suite: SUITE,
      metric: `server RSS per connected device, N = ${n}`,
      unit: 'bytes',
      value: summarize(pick('server', 'rssPerConnection')),
      baseline: summarize(pick('echo', 'rssPerConnection')),
      baselineName: 'echo',
      ratio: summarize(ratios),
      target: `≤ ${GOAL_RATIO}× echo`,
      met,
    });
    rows.push({
      suite: SUITE,
      metric: `server V8 heap per connected device, N = ${n}`,
      unit: 'bytes',
      value: summarize(pick('server', 'heapPerConnection')),
      baseline: summarize(pick('echo', 'heapPerConnection')),
      baselineName: 'echo',
      ratio: summarize(runs.map((r) => ratio(r.server.points[k].heapPerConnection, r.echo.points[k].heapPerConnection))),
    });
  }
  for (let k = 1; k < cfg.connections.length; k++) {
    const [from, to] = [cfg.connections[k - 1], cfg.connections[k]];
    rows.push({
      suite: SUITE,
      metric: `server RSS per added device, N = ${from} → ${to}`,
      unit: 'bytes',
      value: summarize(runs.map((r) => r.server.points[k].rssMarginal)),
      baseline: summarize(runs.map((r) => r.echo.points[k].rssMarginal)),
      baselineName: 'echo',
      ratio: summarize(runs.map((r) => ratio(r.server.points[k].rssMarginal, r.echo.points[k].rssMarginal))),
    });
  }
  const hb = (kind, q) => summarize(runs.map((r) => r[kind].heartbeat[q]));
  rows.push({
    suite: SUITE,
    metric: `heartbeat p50 / p99 with ${cfg.connections.at(-1)} connected, ${cfg.heartbeatConcurrency} at a time`,
    unit: 'ms',
    value: `${hb('server', 'p50').median?.toFixed(1)} / ${hb('server', 'p99').median?.toFixed(1)} ms`,
    baseline: `${hb('echo', 'p50').median?.toFixed(1)} / ${hb('echo', 'p99').median?.toFixed(1)} ms`,
    baselineName: 'echo',
  });
  return { config: cfg, rows, runs };
}
