#!/usr/bin/env node
// What an abort with policy revert costs while it holds the write lock and every device's row
// (rollouts/abort-revert.ts): one rollout of --devices devices, all of them HEALTHY on the new
// version with the previous one installed before (so every device is sent back), seeded
// outside the measured time. Wall time and this process's CPU of abortRollout, median of
// --runs rounds, each on a fresh database; with --baseline-dist, the same rounds on another
// build's server/dist (e.g. the commit before) alternate with this one's, and the ratio is
// this build's median over the baseline's.
//
//   node bench/abort-revert.mjs [--devices 5000] [--runs 5] [--database-url postgres://...] [--baseline-dist DIR]
import * as crypto from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { insertModelArtifact, labModelRollout, quietLogger, registerLabDevices, reportEveryStarted } from '../server/tests/helpers/rollout-seed.mjs';
import { createBenchDatabase, dropBenchDatabase } from './lib/database.mjs';

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '5000' },
    runs: { type: 'string', default: '5' },
    'database-url': { type: 'string' },
    'baseline-dist': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log('Usage: node bench/abort-revert.mjs [--devices 5000] [--runs 5] [--database-url postgres://user@host/db] [--baseline-dist DIR]   (run npm run build first)');
  process.exit(0);
}
const N = Number(args.devices);
const RUNS = Number(args.runs);
const OWN_DIST = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'server', 'dist');

async function round(dist) {
  const load = (rel) => import(pathToFileURL(path.join(dist, rel)).href);
  const { openStore } = await load('store/index.js');
  const { newRolloutRecord, abortRollout } = await load('rollouts/service.js');
  const { startWave } = await load('rollouts/engine.js');
  const { planWaves } = await load('rollouts/wave-plan.js');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'mesh-abort-revert-'));
  const location = args['database-url'] ? await createBenchDatabase(args['database-url']) : path.join(tmp, 'server.db');
  const store = await openStore(location);
  try {
    const now = new Date().toISOString();
    const ids = await store.withWriteLock(() => registerLabDevices(store, N, 'bench.local', now));
    // The version every device had before: in the catalog with the bytes the devices hold.
    const before = crypto.createHash('sha256').update('before').digest('hex');
    await store.insertArtifact({
      id: crypto.randomUUID(),
      name: 'model',
      version: '1.0.0',
      kind: 'model',
      fileName: 'model-1.0.0',
      targetPath: 'model/1.0.0',
      sha256: before,
      length: 1,
      spec: {},
      createdAt: now,
    });
    await store.withWriteLock(async () => {
      for (const id of ids) {
        await store.db.run("INSERT INTO installed (device_id, name, kind, version, sha256, state, updated_at) VALUES (?, 'model', 'model', '1.0.0', ?, 'HEALTHY', ?)", [
          id,
          before,
          now,
        ]);
      }
    });
    const strategy = { waves: [{ percent: 100, approval: 'auto' }], max_failure_rate: 0.5 };
    const rollout = newRolloutRecord(labModelRollout(await insertModelArtifact(store, now), strategy, 'operator:bench'), now);
    await store.withWriteLock(async () => {
      await store.rollouts.insert(rollout, planWaves(rollout.id, ids, strategy));
      await startWave(store, rollout, 0, 'operator:bench', now);
    });
    await reportEveryStarted(store, rollout.id, 'HEALTHY', now);
    if (store.dialect === 'postgres') await store.db.exec('ANALYZE');
    const cpu = process.cpuUsage();
    const t0 = performance.now();
    const detail = await abortRollout({ store, logger: quietLogger }, rollout.id, { policy: 'revert' }, 'operator:bench');
    const ms = performance.now() - t0;
    const used = process.cpuUsage(cpu);
    const sent = detail.devices.filter((d) => d.revert?.assignmentId).length;
    if (sent !== N) throw new Error(`only ${sent} of ${N} devices were sent back`);
    return { ms, cpuMs: (used.user + used.system) / 1000 };
  } finally {
    await store.close();
    if (args['database-url']) await dropBenchDatabase(location);
    rmSync(tmp, { recursive: true, force: true });
  }
}

const builds = [['this build', OWN_DIST], ...(args['baseline-dist'] ? [['baseline', path.resolve(args['baseline-dist'])]] : [])];
const samples = new Map(builds.map(([name]) => [name, []]));
for (let i = 0; i < RUNS; i++) {
  for (const [name, dist] of i % 2 === 0 ? builds : [...builds].reverse()) {
    const s = await round(dist);
    samples.get(name).push(s);
    process.stderr.write(`round ${i + 1}/${RUNS} ${name}: ${s.ms.toFixed(0)} ms\n`);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`\nabort with revert of ${N} devices, ${args['database-url'] ? 'postgres' : 'sqlite'}, median of ${RUNS}:`);
console.log('| build | wall ms | CPU ms (this process) |');
console.log('|---|---|---|');
for (const [name] of builds) {
  const s = samples.get(name);
  console.log(`| ${name} | ${median(s.map((x) => x.ms)).toFixed(0)} | ${median(s.map((x) => x.cpuMs)).toFixed(0)} |`);
}
if (builds.length === 2) {
  const own = median(samples.get('this build').map((x) => x.ms));
  const base = median(samples.get('baseline').map((x) => x.ms));
  console.log(`\nthis build / baseline, wall: ${(own / base).toFixed(3)}×`);
}
