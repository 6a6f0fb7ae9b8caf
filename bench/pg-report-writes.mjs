#!/usr/bin/env node
// Status-report write throughput on PostgreSQL with two replicas (issue 30, "writes on
// PostgreSQL without one global lock"): two store instances, each in a worker thread of its
// own (own event loop, own connection pool, as two server processes would have), write status
// reports of their own devices the way the device service does (group commit through the
// store's WriteBatcher: recordStatusReports and the reports' audit events in one transaction).
//
// Each round runs the baseline and the code under test on fresh databases of their own, one
// after the other, so a loaded machine slows both alike; the figure is the ratio of the two
// in the same round, median over rounds. Reported: reports per second (wall) and this
// process's CPU per report (both workers; the database's own CPU is not counted). Seeding is
// outside the measured time. No rollout steps: only the report writes.
//
//   node bench/pg-report-writes.mjs --database-url postgres://postgres@127.0.0.1:5432/test \
//     [--baseline-dist DIR] [--rounds 3] [--devices 400] [--reports 6] [--concurrency 64]
//
// --baseline-dist: the server/dist of the code to compare with (e.g. a build of the commit
// before); without it the baseline is this code with every report transaction taking the
// global write lock (Store.withWriteLock), which is what the write batcher did before.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { insertModelArtifact, labModelRollout, registerLabDevices } from '../server/tests/helpers/rollout-seed.mjs';
import { createBenchDatabase, dropBenchDatabase } from './lib/database.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OWN_DIST = path.join(HERE, '..', 'server', 'dist');
const STATES = ['DOWNLOADING', 'VERIFYING', 'APPLYING'];

async function load(dist) {
  const store = await import(pathToFileURL(path.join(dist, 'store', 'index.js')).href);
  const batcher = await import(pathToFileURL(path.join(dist, 'store', 'write-batcher.js')).href);
  return { openStore: store.openStore, WriteBatcher: batcher.WriteBatcher };
}

/** One replica: `concurrency` devices at a time send their next report until each sent `reports`. */
async function replica({ dist, url, devices, reports, concurrency, globalLock }) {
  const { openStore, WriteBatcher } = await load(dist);
  const store = await openStore(url);
  // The baseline without --baseline-dist: the same batches, each under the global write lock.
  const locking = globalLock ? { withRowLocks: (fn) => store.withWriteLock(fn), withWriteLock: (fn) => store.withWriteLock(fn) } : store;
  const writes = new WriteBatcher(locking, async (items) => {
    const stored = await store.recordStatusReports(items);
    await store.appendAuditEvents(
      items.flatMap((r, i) =>
        stored[i] ? [{ actor: `device:${r.deviceId}`, action: 'device.status', subject: `device:${r.deviceId}`, details: { state: r.state, assignment: r.assignmentId } }] : [],
      ),
    );
    return stored;
  });
  const queue = devices.flatMap((d) => Array.from({ length: reports }, (_, k) => ({ ...d, sequence: k + 1 })));
  // Round-robin over devices so one device's reports are spread out (and in order: one device is never in flight twice).
  queue.sort((x, y) => x.sequence - y.sequence);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < queue.length) {
        const r = queue[next++];
        const at = new Date().toISOString();
        await writes.write({
          deviceId: r.deviceId,
          assignmentId: r.assignmentId,
          sequence: r.sequence,
          state: STATES[r.sequence % STATES.length],
          reason: '',
          bytesDone: 0,
          bytesTotal: 0,
          deviceTime: at,
          receivedAt: at,
        });
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await store.close();
  return { reports: queue.length, seconds };
}

if (!isMainThread) {
  replica(workerData).then(
    (r) => parentPort.postMessage({ ok: r }),
    (err) => parentPort.postMessage({ error: String(err?.stack ?? err) }),
  );
} else {
  await main();
}

function runWorker(data) {
  return new Promise((resolve, reject) => {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: data });
    w.once('message', (m) => (m.error ? reject(new Error(m.error)) : resolve(m.ok)));
    w.once('error', reject);
  });
}

/** A fresh database with `2 * perReplica` devices, each with an active assignment of one rollout. */
async function seed(dist, baseUrl, perReplica) {
  const url = await createBenchDatabase(baseUrl);
  const { openStore } = await load(dist);
  const engine = await import(pathToFileURL(path.join(dist, 'rollouts', 'engine.js')).href);
  const store = await openStore(url);
  const now = new Date().toISOString();
  const ids = await registerLabDevices(store, 2 * perReplica, 'bench.local', now);
  const artifactId = await insertModelArtifact(store, now);
  const strategy = { waves: [{ percent: 100, approval: 'auto' }], max_failure_rate: 0.5 };
  // The record as this code's createRollout builds it, also for a --baseline-dist build (one that may predate newRolloutRecord).
  const { newRolloutRecord } = await import(pathToFileURL(path.join(OWN_DIST, 'rollouts', 'service.js')).href);
  const rollout = newRolloutRecord(labModelRollout(artifactId, strategy, 'bench'), now);
  await store.withWriteLock(async () => {
    await store.rollouts.insert(
      rollout,
      ids.map((deviceId, position) => ({ deviceId, wave: 0, position })),
    );
    await engine.startWave(store, rollout, 0, 'bench', now);
  });
  const devices = (await store.rollouts.listDevices(rollout.id)).map((d) => ({ deviceId: d.deviceId, assignmentId: d.assignmentId }));
  await store.close();
  return { url, halves: [devices.filter((_, i) => i % 2 === 0), devices.filter((_, i) => i % 2 === 1)] };
}

async function measure(label, dist, baseUrl, options, globalLock) {
  const { url, halves } = await seed(dist, baseUrl, options.devices / 2);
  try {
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    const results = await Promise.all(halves.map((devices) => runWorker({ dist, url, devices, reports: options.reports, concurrency: options.concurrency, globalLock })));
    const wall = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const reports = results.reduce((n, r) => n + r.reports, 0);
    const nodeCpu = (cpu.user + cpu.system) / 1e6;
    return { label, reports, wall, perSecond: reports / wall, nodeCpuMsPerReport: (nodeCpu * 1000) / reports };
  } finally {
    await dropBenchDatabase(url).catch(() => undefined);
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      'database-url': { type: 'string' },
      'baseline-dist': { type: 'string' },
      rounds: { type: 'string', default: '3' },
      devices: { type: 'string', default: '400' },
      reports: { type: 'string', default: '6' },
      concurrency: { type: 'string', default: '64' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values['database-url']) {
    console.log(
      readFileSync(fileURLToPath(import.meta.url), 'utf8')
        .split('\nimport ')[0]
        .replace(/^#!.*\n/, '')
        .replace(/^\/\/ ?/gm, ''),
    );
    process.exit(values.help ? 0 : 2);
  }
  const options = { devices: Number(values.devices), reports: Number(values.reports), concurrency: Number(values.concurrency) };
  const baseUrl = values['database-url'];
  const baselineDist = values['baseline-dist'];
  const baselineLabel = baselineDist ? `baseline (${baselineDist})` : 'global lock (this code, withWriteLock)';
  const ratios = [];
  for (let round = 1; round <= Number(values.rounds); round++) {
    const before = await measure(baselineLabel, baselineDist ?? OWN_DIST, baseUrl, options, !baselineDist);
    const after = await measure('row locks (this code)', OWN_DIST, baseUrl, options, false);
    const ratio = after.perSecond / before.perSecond;
    ratios.push({ ratio, cpu: after.nodeCpuMsPerReport / before.nodeCpuMsPerReport });
    for (const r of [before, after]) {
      console.log(
        `round ${round}  ${r.label.padEnd(44)} ${r.reports} reports in ${r.wall.toFixed(2)} s = ${r.perSecond.toFixed(0)}/s, Node CPU ${r.nodeCpuMsPerReport.toFixed(3)} ms/report`,
      );
    }
    console.log(`round ${round}  throughput after/before ${ratio.toFixed(2)}x, Node CPU per report after/before ${ratios.at(-1).cpu.toFixed(2)}x`);
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`median of ${ratios.length}: throughput ${median(ratios.map((r) => r.ratio)).toFixed(2)}x, Node CPU per report ${median(ratios.map((r) => r.cpu)).toFixed(2)}x`);
}
