import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { initServerDataDir, loadCreds, provisionDevices, serverPki, startEchoServer, workerPath } from '../lib/fixtures.mjs';
import { Worker, stopAll } from '../lib/workers.mjs';
import { cpuMs } from '../lib/proc.mjs';
const work = '/tmp/bt/cx';
const dataDir = path.join(work, 'server');
const N = 2000;
try {
  await initServerDataDir(dataDir);
  const credsFile = path.join(work, 'creds', 'all.json');
  const slices = await provisionDevices('cx', dataDir, { fleet: 'sim', prefix: 'd', count: N, workers: 2, outDir: path.join(work, 'creds') });
  writeFileSync(credsFile, JSON.stringify(loadCreds(slices)));
  const { caPem } = serverPki(dataDir);
  for (const variant of (process.env.VARIANTS ?? 'default').split(',')) {
    const echo = await startEchoServer(dataDir, { heartbeatSeconds: 30 });
    const e0 = cpuMs(echo.pid);
    const t0 = performance.now();
    const clients = [0, 1].map((i) => new Worker('f' + i, workerPath('fleet-client.mjs'), [], { execArgv: process.env.PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/bt/cxprof'] : [] }));
    await Promise.all(clients.map((c, i) => c.request({ type: 'init', credsFile, from: i * N / 2, count: N / 2, caPem, address: echo.grpc, connectConcurrency: Number(process.env.CC ?? 24), sim: {} }, 'ready', 600000)));
    const s = (performance.now() - t0) / 1000;
    const ccpu = clients.reduce((a, c) => a + cpuMs(c.pid), 0);
    console.log(variant, 'connect', N, 'in', s.toFixed(1), 's =', (N / s).toFixed(0), '/s; echo cpu ms/conn', ((cpuMs(echo.pid) - e0) / N).toFixed(2), 'client cpu ms/conn', (ccpu / N).toFixed(2));
    await Promise.all(clients.map((c) => { c.proc.disconnect(); return c.exited; }));
    await echo.stop();
  }
} finally { await stopAll(); }
