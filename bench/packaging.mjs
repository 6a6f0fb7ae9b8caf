#!/usr/bin/env node
// The agent as a device package (issue 24): figures for docs/benchmarks.md, not a timed test.
//   - .deb size and installed size per architecture, and how much of it is Node.js vs ours;
//   - idle RSS of the packaged amd64 agent (its own Node.js 24, unpacked from the .deb) next
//     to the checkout's agent (this machine's node), both with the unit's NODE_OPTIONS, same
//     server, same window;
//   - start time: spawn -> `registered` (the Register RPC answered; the heartbeat loop sends
//     its first heartbeat right after it, without waiting), median of N cold starts;
//   - with --build: `npm run package` from scratch (wall and CPU time).
//
//   node bench/packaging.mjs [--build] [--starts 5] [--settle 20] [--window 20]
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { agentRunArgs, Child, serverCli, startAgent, startServer } from '../scripts/lib/processes.mjs';
import { agentUnitNodeFlags } from './lib/fixtures.mjs';
import { memory } from './lib/proc.mjs';
import { summarize } from './lib/stats.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    build: { type: 'boolean', default: false },
    starts: { type: 'string', default: '5' },
    settle: { type: 'string', default: '20' },
    window: { type: 'string', default: '20' },
  },
});
const MB = (b) => `${(b / 1e6).toFixed(1)} MB`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `npm run package` (from scratch with --build), timed: wall, and CPU of it and its children (tar, xz, strip). */
function buildPackages(fresh, work) {
  const timeFile = path.join(work, 'time.txt');
  const t = Date.now();
  const out = execFileSync('/usr/bin/time', ['-f', '%U %S', '-o', timeFile, process.execPath, 'scripts/packaging/build.mjs', ...(fresh ? [] : ['--if-changed'])], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 24,
  });
  const [user, sys] = readFileSync(timeFile, 'utf8').trim().split(/\s+/).slice(-2).map(Number);
  return { manifest: JSON.parse(out), wallMs: Date.now() - t, cpuMs: Math.round((user + sys) * 1000) };
}

const work = mkdtempSync(path.join(os.tmpdir(), 'meshanics-bench-pkg-'));
const children = [];
try {
  const build = buildPackages(values.build, work);
  const manifest = build.manifest;
  const cpuNote = values.build
    ? `npm run package (both architectures, from scratch): ${(build.wallMs / 1000).toFixed(1)} s wall, ${(build.cpuMs / 1000).toFixed(1)} s CPU (load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} cores) (goal < 120 s)`
    : '';
  const result = { version: manifest.version, nodeVersion: manifest.nodeVersion, packages: [] };
  for (const a of manifest.artifacts.filter((x) => x.file.endsWith('.deb'))) {
    result.packages.push({ arch: a.arch, deb: a.bytes, installed: a.installedKiB * 1024, node: a.nodeBytes, ours: a.installedKiB * 1024 - a.nodeBytes, app: a.appBytes });
  }

  // The packaged amd64 agent, unpacked; the checkout's agent next to it.
  const root = path.join(work, 'root');
  const deb = manifest.artifacts.find((a) => a.file.endsWith('_amd64.deb')).file;
  execFileSync('dpkg-deb', ['-x', path.join(ROOT, 'dist-packages', deb), root]);
  const launcher = path.join(root, 'usr/lib/meshanics-agent/current/bin/meshanics-agent');
  const serverDir = path.join(work, 'server');
  const server = await startServer(serverDir, { heartbeatSeconds: 30 });
  children.push(server);
  const nodeOptions = agentUnitNodeFlags().join(' ');
  const runArgs = (certs, dataDir) => [...agentRunArgs(server, certs, dataDir), '--container-runtime', 'none'];
  const packaged = (certs, dataDir) =>
    new Child('packaged', spawn(launcher, runArgs(certs, dataDir), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: nodeOptions } }));
  const checkout = (certs, dataDir) => startAgent(server, certs, dataDir, { execArgv: agentUnitNodeFlags(), extraArgs: ['--container-runtime', 'none'] });

  // Start time: N cold starts of each, one at a time.
  const starts = { packaged: [], checkout: [] };
  for (let i = 0; i < Number(values.starts); i++) {
    for (const { kind, start } of [
      { kind: 'packaged', start: packaged },
      { kind: 'checkout', start: checkout },
    ]) {
      const certs = path.join(work, 'creds', `${kind}-${i}`);
      await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'bench', '--name', `${kind}-${i}`, '--out', certs]);
      const t = Date.now();
      const child = start(certs, path.join(work, 'agents', `${kind}-${i}`));
      await child.waitForLine((l) => l?.msg === 'registered', 60_000);
      starts[kind].push(Date.now() - t);
      await child.stop();
    }
  }
  // Idle RSS: one of each, side by side, settled, then sampled every second.
  const idle = {};
  for (const { kind, start } of [
    { kind: 'packaged', start: packaged },
    { kind: 'checkout', start: checkout },
  ]) {
    const certs = path.join(work, 'creds', `${kind}-idle`);
    await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'bench', '--name', `${kind}-idle`, '--out', certs]);
    const child = start(certs, path.join(work, 'agents', `${kind}-idle`));
    children.push(child);
    await child.waitForLine((l) => l?.msg === 'registered', 60_000);
    idle[kind] = { child, rss: [] };
  }
  await sleep(Number(values.settle) * 1000);
  for (let s = 0; s < Number(values.window); s++) {
    for (const v of Object.values(idle)) v.rss.push(memory(v.child.pid).rss);
    await sleep(1000);
  }
  result.startMs = Object.fromEntries(Object.entries(starts).map(([k, v]) => [k, summarize(v)]));
  result.idleRss = Object.fromEntries(Object.entries(idle).map(([k, v]) => [k, summarize(v.rss).median]));
  result.idleHwm = Object.fromEntries(Object.entries(idle).map(([k, v]) => [k, memory(v.child.pid).hwm]));
  result.checkoutNode = process.version;
  result.load = os.loadavg()[0];
  if (values.build) result.build = { wallMs: build.wallMs, cpuMs: build.cpuMs };

  console.log(`meshanics-agent ${result.version}, Node.js ${result.nodeVersion} inside; checkout agent on ${process.version}`);
  if (cpuNote) console.log(cpuNote);
  for (const p of result.packages) {
    console.log(
      `${p.arch}: .deb ${MB(p.deb)} (goal <= 35 MB); installed ${MB(p.installed)} (goal <= 130 MB) = Node.js ${MB(p.node)} + ours ${MB(p.ours)} (node_modules ${MB(p.app)})`,
    );
  }
  const st = result.startMs;
  console.log(
    `start -> registered: packaged median ${st.packaged.median} ms [${st.packaged.min}-${st.packaged.max}] (goal <= 1500), checkout median ${st.checkout.median} ms [${st.checkout.min}-${st.checkout.max}]`,
  );
  console.log(
    `idle RSS (median of ${values.window} s after ${values.settle} s): packaged ${MB(result.idleRss.packaged)} (restated goal: <= 1.2x a bare Node 24 grpc-js process, idle suite), checkout ${MB(result.idleRss.checkout)}; peak ${MB(result.idleHwm.packaged)} vs ${MB(result.idleHwm.checkout)}`,
  );
  console.log(`load average ${result.load.toFixed(1)} on ${os.cpus().length} cores`);
  console.log(JSON.stringify(result));
} finally {
  for (const c of children.reverse()) await c.stop().catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}
