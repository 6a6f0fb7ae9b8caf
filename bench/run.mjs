#!/usr/bin/env node
// npm run bench / npm run bench:smoke: runs the benchmarks, prints the table, writes JSON
// under bench/results/. Every figure is set against a baseline measured in the same run on
// the same machine; see docs/benchmarks.md for the method.
//
//   node bench/run.mjs [--smoke] [--only heartbeat,fleet,pipeline,resume,idle,tuf] [--set SUITE.KEY=VALUE] [--work-dir DIR] [--keep]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { backendOf, createBenchDatabase, dropBenchDatabase } from './lib/database.mjs';
import { BENCH_DIR, serverNodeArgs } from './lib/fixtures.mjs';
import { fmtBytes, progress } from './lib/log.mjs';
import { renderTable, writeResults } from './lib/report.mjs';
import { stopAll } from './lib/workers.mjs';

const SUITES = ['heartbeat', 'fleet', 'pipeline', 'resume', 'idle', 'image', 'tuf', 'storm', 'conn-memory'];

const { values } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    only: { type: 'string' },
    'work-dir': { type: 'string' },
    keep: { type: 'boolean', default: false },
    set: { type: 'string', multiple: true },
    'database-url': { type: 'string' },
    'database-only': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`Usage: node bench/run.mjs [--smoke] [--only ${SUITES.join(',')}] [--work-dir DIR] [--keep]
  --smoke      tiny sizes (seconds; what CI runs)
  --only       run only these suites, comma-separated
  --work-dir   where data dirs and test files go (default: a new directory in ${os.tmpdir()})
  --keep       keep the work directory afterwards
  --set S.K=V  override a suite's size, e.g. --set fleet.devices=2000 --set fleet.intervalSeconds=10
  --database-url URL  also run the server suites (heartbeat, fleet) on PostgreSQL, next to SQLite:
               each gets a new database on that server (CREATE DATABASE, dropped afterwards)
  --database-only  with --database-url: the server suites on that database only, not on SQLite`);
  process.exit(0);
}
const mode = values.smoke ? 'smoke' : 'full';
const selected = values.only ? values.only.split(',').map((s) => s.trim()) : SUITES;
for (const s of selected) if (!SUITES.includes(s)) throw new Error(`unknown suite "${s}" (known: ${SUITES.join(', ')})`);

for (const file of ['server/dist/cli.js', 'core/dist/cli/agent-cli.js']) {
  if (!existsSync(path.join(BENCH_DIR, '..', file))) {
    console.error(`${file} is missing: run \`npx tsc -b\` first (npm run bench does).`);
    process.exit(2);
  }
}

// --set fleet.devices=2000: per-suite overrides of the CONFIG in each suite file (JSON values).
const overrides = {};
for (const item of values.set ?? []) {
  const m = /^([\w-]+)\.(\w+)=(.*)$/.exec(item);
  if (!m) throw new Error(`--set ${item}: expected SUITE.KEY=VALUE`);
  let value;
  try {
    value = JSON.parse(m[3]);
  } catch {
    value = m[3];
  }
  (overrides[m[1]] ??= {})[m[2]] = value;
}

// The server suites again on an external database, labelled by its scheme ("heartbeat/postgresql").
const SERVER_SUITES = ['heartbeat', 'fleet'];
if (values['database-only'] && !values['database-url']) throw new Error('--database-only needs --database-url');
const runs = selected.filter((name) => !(values['database-only'] && SERVER_SUITES.includes(name))).map((name) => ({ name, key: name, options: {} }));
if (values['database-url']) {
  const backend = backendOf(values['database-url']);
  for (const name of selected.filter((s) => SERVER_SUITES.includes(s))) {
    runs.push({ name, key: `${name}/${backend}`, options: { backend }, databaseServer: values['database-url'] });
  }
}

const work = values['work-dir'] ? path.resolve(values['work-dir']) : mkdtempSync(path.join(os.tmpdir(), 'meshanics-bench-'));
mkdirSync(work, { recursive: true });

function gitRev() {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', cwd: BENCH_DIR }).trim();
    // Pathspecs from the repository's top (':/'): relative to bench/, they matched nothing, and
    // a run on an uncommitted tree was recorded as the commit. Everything but prose counts: the
    // image suite measures scripts/image and deploy/ as much as server/.
    const dirty = execFileSync('git', ['status', '--porcelain', '--', ':/', ':(top,exclude)docs', ':(top,exclude)bench/history', ':(top,exclude)*.md'], {
      encoding: 'utf8',
      cwd: BENCH_DIR,
    }).trim();
    return dirty ? `${rev}+uncommitted` : rev;
  } catch {
    return 'unknown';
  }
}

const result = {
  meta: {
    mode,
    startedAt: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryBytes: os.totalmem(),
    kernel: os.release(),
    git: gitRev(),
    workDir: work,
    overrides,
    // Node flags given to the server under test (a profiled run is not a figure).
    serverNodeArgs: serverNodeArgs(),
  },
  suites: {},
  failures: [],
};

let interrupted = false;
const onSignal = async (sig) => {
  if (interrupted) process.exit(130);
  interrupted = true;
  progress('bench', `${sig}: stopping everything started by the benchmark`);
  try {
    await stopAll(2000);
  } finally {
    // Even when stopping failed: the work dir goes and the process ends with the signal's status.
    if (!values.keep) rmSync(work, { recursive: true, force: true });
    process.exit(130);
  }
};
// Fire-and-forget: a signal listener's result is ignored, and onSignal() ends the process.
process.once('SIGINT', (sig) => void onSignal(sig));
process.once('SIGTERM', (sig) => void onSignal(sig));

progress('bench', `${mode} run of ${selected.join(', ')}; ${result.meta.cpus} cores, ${fmtBytes(result.meta.memoryBytes)} RAM, work dir ${work}`);
const rows = [];
for (const { name, key, options, databaseServer } of runs) {
  const started = Date.now();
  let databaseUrl;
  const dir = path.join(work, key.replace(/\W/g, '-'));
  // Other work on the machine shows up here; the same-run baselines are what absorb it.
  const loadBefore = os.loadavg()[0];
  progress(key, `starting (load average ${loadBefore.toFixed(2)})`);
  try {
    const suite = await import(`./suites/${name}.mjs`);
    if (databaseServer) {
      databaseUrl = await createBenchDatabase(databaseServer);
      progress(key, `database ${new URL(databaseUrl).pathname.slice(1)} created on ${new URL(databaseUrl).host}`);
    }
    const out = await suite.run({ mode, work: dir, overrides: overrides[name] ?? {}, ...options, ...(databaseUrl ? { databaseUrl } : {}) });
    result.suites[key] = { ...out, seconds: (Date.now() - started) / 1000, loadAverage: { before: loadBefore, after: os.loadavg()[0] } };
    rows.push(...out.rows);
    progress(key, `done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } catch (err) {
    progress(key, `FAILED: ${err.stack || err}`);
    result.failures.push({ suite: key, error: String(err.stack || err) });
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
    if (databaseUrl) await dropBenchDatabase(databaseUrl).catch((err) => progress(key, `could not drop ${databaseUrl}: ${err.message}`));
  }
}
result.meta.finishedAt = new Date().toISOString();
result.rows = rows;

const file = writeResults(path.join(BENCH_DIR, 'results'), result);
console.log(`\nMeshanics benchmarks (${mode}) — ${result.meta.startedAt}, ${result.meta.cpus}× ${result.meta.cpuModel}, node ${process.version}, git ${result.meta.git}`);
console.log(renderTable(rows));
// A row shown with a target but not judged (met null: skipped, or a size the target is not set at) is not counted.
const targets = rows.filter((r) => r.target && typeof r.met === 'boolean');
const missed = targets.filter((r) => r.met === false);
console.log(`\ntargets: ${targets.length - missed.length}/${targets.length} met${missed.length ? `; missed: ${missed.map((r) => `${r.suite} ${r.metric}`).join('; ')}` : ''}`);
for (const f of result.failures) console.log(`FAILED ${f.suite}: ${f.error.split('\n')[0]}`);
console.log(`results: ${path.relative(process.cwd(), file)}`);
if (!values.keep) rmSync(work, { recursive: true, force: true });
// A missed target is a finding, not a failure; a suite that could not run is.
process.exit(result.failures.length > 0 ? 1 : 0);
