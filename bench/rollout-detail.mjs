#!/usr/bin/env node
// What reading a large rollout costs the server (docs/operator-api.md, "Large rollouts"): the
// whole detail (every device, what GET /rollouts/:id and the default event stream send), the
// summary (one SQL aggregate: GET /rollouts/:id/summary, the console's stream) and pages of
// GET /rollouts/:id/devices (first, last, one wave deep in the rollout, a state no device
// shows). One rollout of --devices devices, both waves started, seeded outside the measured
// time; on PostgreSQL the tables are ANALYZEd after seeding, as autovacuum would have by then.
// Each figure is the median of --runs reads; the ratio is against the whole detail measured
// in the same run. Wall time, this process's CPU, the longest the read held the event loop
// (what a heartbeat arriving meanwhile waits; SQLite reads on it) and the JSON size.
//
//   node bench/rollout-detail.mjs [--devices 36000] [--runs 5] [--database-url postgres://...]
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { insertModelArtifact, labModelRollout, registerLabDevices } from '../server/tests/helpers/rollout-seed.mjs';
import { createBenchDatabase, dropBenchDatabase } from './lib/database.mjs';

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '36000' },
    runs: { type: 'string', default: '5' },
    'database-url': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log('Usage: node bench/rollout-detail.mjs [--devices 36000] [--runs 5] [--database-url postgres://user@host/db]   (run npm run build first)');
  process.exit(0);
}
const N = Number(args.devices);
const RUNS = Number(args.runs);
const DIST = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'server', 'dist');
const load = (rel) => import(pathToFileURL(path.join(DIST, rel)).href);
const { openStore } = await load('store/index.js');
const { newRolloutRecord } = await load('rollouts/service.js');
const { startWave } = await load('rollouts/engine.js');
const { planWaves } = await load('rollouts/wave-plan.js');
const { buildRolloutDetail, buildRolloutDevicesPage } = await load('rollouts/detail.js');

const tmp = mkdtempSync(path.join(os.tmpdir(), 'mesh-rollout-detail-'));
const location = args['database-url'] ? await createBenchDatabase(args['database-url']) : path.join(tmp, 'server.db');
const store = await openStore(location);
try {
  const now = new Date().toISOString();
  process.stderr.write(`seeding ${N} devices on ${args['database-url'] ? 'PostgreSQL' : 'SQLite'}…\n`);
  const ids = await store.withWriteLock(() => registerLabDevices(store, N, 'bench.local', now));
  const artifactId = await insertModelArtifact(store, now);
  const strategy = {
    waves: [
      { percent: 10, approval: 'auto' },
      { percent: 100, approval: 'auto' },
    ],
    max_failure_rate: 0.5,
  };
  const created = newRolloutRecord(labModelRollout(artifactId, strategy, 'operator:bench'), now);
  await store.withWriteLock(async () => {
    await store.rollouts.insert(created, planWaves(created.id, ids, strategy));
    await startWave(store, created, 0, 'operator:bench', now);
    await startWave(store, { ...created, currentWave: 1 }, 1, 'operator:bench', now);
  });
  if (store.dialect === 'postgres') await store.db.exec('ANALYZE');
  const rollout = { ...(await store.rollouts.get(created.id)), currentWave: 1 };

  const cases = [
    ['whole detail', () => buildRolloutDetail({ store }, rollout, true)],
    ['summary', () => buildRolloutDetail({ store }, rollout, false)],
    ['first page of 200', () => buildRolloutDevicesPage({ store }, rollout, { limit: 200 })],
    ['last page', () => buildRolloutDevicesPage({ store }, rollout, { limit: 200, afterPosition: N - 100 })],
    ['first page of the last wave', () => buildRolloutDevicesPage({ store }, rollout, { limit: 200, wave: 1 })],
    ['page of the last wave, deep', () => buildRolloutDevicesPage({ store }, rollout, { limit: 200, wave: 1, afterPosition: Math.floor(N * 0.6) })],
    ['page of a state none shows', () => buildRolloutDevicesPage({ store }, rollout, { limit: 200, state: 'HEALTHY' })],
  ];
  const results = [];
  for (const [name, read] of /** @type {Array<[string, () => Promise<unknown>]>} */ (cases)) {
    const samples = [];
    let bytes = 0;
    for (let i = 0; i < RUNS; i++) {
      const loop = monitorEventLoopDelay({ resolution: 1 });
      loop.enable();
      // Its first tick only starts the clock: let it pass before the read.
      await new Promise((resolve) => setTimeout(resolve, 5));
      const cpu = process.cpuUsage();
      const t0 = performance.now();
      bytes = JSON.stringify(await read()).length;
      const used = process.cpuUsage(cpu);
      const ms = performance.now() - t0;
      // Let the monitor's timer fire once after the read, so a block at its very end counts.
      await new Promise((resolve) => setTimeout(resolve, 5));
      loop.disable();
      samples.push({ ms, cpuMs: (used.user + used.system) / 1000, blockMs: loop.max / 1e6 });
    }
    const median = (key) => samples.map((s) => s[key]).sort((a, b) => a - b)[Math.floor(RUNS / 2)];
    results.push({ name, ms: median('ms'), cpuMs: median('cpuMs'), blockMs: median('blockMs'), bytes });
  }
  const base = results[0];
  console.log(`\n${N} devices, ${store.dialect}, median of ${RUNS}:`);
  console.log('| read | wall ms | CPU ms (this process) | longest event-loop block ms | JSON bytes | wall vs whole detail |');
  console.log('|---|---|---|---|---|---|');
  for (const r of results) console.log(`| ${r.name} | ${r.ms.toFixed(1)} | ${r.cpuMs.toFixed(1)} | ${r.blockMs.toFixed(1)} | ${r.bytes} | ${(r.ms / base.ms).toFixed(4)}× |`);
} finally {
  await store.close();
  if (args['database-url']) await dropBenchDatabase(location);
  rmSync(tmp, { recursive: true, force: true });
}
