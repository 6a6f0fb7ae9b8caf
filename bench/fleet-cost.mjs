#!/usr/bin/env node
// What one simulated device costs the fleet bench's load generator (issue 30, "a lean load
// generator"): one fleet-client process (bench/workers/fleet-client.mjs, as the fleet suite
// forks it) opens N channels, each with its own provisioned certificate, to the bare echo
// server, connects and registers them, then heartbeats for a while. Measured in the client:
// RSS and live V8 heap (after a full collection) per channel once opened and once connected,
// CPU per connection (mTLS handshake + Register) and per heartbeat. Also what provisioning
// the certificates cost (time per device, bytes of credentials per device).
//
//   node bench/fleet-cost.mjs [--channels 2000,8000] [--variants agent,lean,http2] [--heartbeat-seconds 20]
//                             [--interval-seconds 10] [--work /tmp/fleet-cost]
//
// agent: grpc-js with the agent's channel options; lean: LEAN_CHANNEL_OPTIONS added
// (bench/lib/device.mjs); http2: node:http2 with gRPC framing (bench/lib/raw-device-channel.mjs).
// The provisioned data dir is kept in --work and reused by the next run when it holds enough devices.
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { initServerDataDir, loadCreds, provisionDevices, serverPki, startEchoServer, workerPath } from './lib/fixtures.mjs';
import { fmtBytes, progress, sleep } from './lib/log.mjs';
import { machineCpu, machineCpuBetween } from './lib/proc.mjs';
import { Worker, stopAll } from './lib/workers.mjs';

const { values: opts } = parseArgs({
  options: {
    channels: { type: 'string', default: '2000,8000' },
    variants: { type: 'string', default: 'agent,lean,http2' },
    'heartbeat-seconds': { type: 'string', default: '20' },
    'interval-seconds': { type: 'string', default: '10' },
    work: { type: 'string', default: path.join(os.tmpdir(), 'fleet-cost') },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  process.stdout.write(
    readFileSync(new URL(import.meta.url), 'utf8')
      .split('\n')
      .slice(1, 14)
      .join('\n')
      .replaceAll('// ', '') + '\n',
  );
  process.exit(0);
}
const SUITE = 'fleet-cost';
const sizes = opts.channels.split(',').map(Number);
const variants = opts.variants.split(',');
const max = Math.max(...sizes);
const dataDir = path.join(opts.work, 'server');
const credsDir = path.join(opts.work, 'creds');
const credsFile = path.join(credsDir, 'all.json');

try {
  mkdirSync(opts.work, { recursive: true });
  let provisioning = null;
  const have = existsSync(credsFile) ? JSON.parse(readFileSync(credsFile, 'utf8')).length : 0;
  if (have < max) {
    await initServerDataDir(dataDir);
    const t0 = performance.now();
    const cpu0 = machineCpu();
    const slices = await provisionDevices(SUITE, dataDir, { fleet: 'cost', prefix: `c${Date.now() % 1e6}-`, count: max, workers: 2, outDir: credsDir });
    const seconds = (performance.now() - t0) / 1000;
    const creds = loadCreds(slices);
    writeFileSync(credsFile, JSON.stringify(creds));
    const dbBytes = ['meshanics.db', 'meshanics.db-wal'].map((f) => path.join(dataDir, f)).reduce((a, f) => a + (existsSync(f) ? statSync(f).size : 0), 0);
    provisioning = {
      devices: max,
      seconds,
      msPerDevice: (1000 * seconds) / max,
      credentialBytesPerDevice: statSync(credsFile).size / max,
      databaseBytes: dbBytes,
      machine: machineCpuBetween(cpu0, machineCpu()),
    };
    progress(SUITE, `provisioning: ${JSON.stringify(provisioning)}`);
  }
  const { caPem } = serverPki(dataDir);
  const results = [];
  for (const n of sizes) {
    for (const variant of variants) {
      const echo = await startEchoServer(dataDir, { heartbeatSeconds: Number(opts['interval-seconds']) });
      const client = new Worker(`cost-${variant}-${n}`, workerPath('fleet-client.mjs'), [], { execArgv: ['--expose-gc', '--max-old-space-size=8192'] });
      os.setPriority(client.pid, 10);
      const before = (await client.request({ type: 'usage' }, 'usage')).usage;
      const opened = client.next('opened', 30 * 60_000);
      const t0 = performance.now();
      const ready = client.request({ type: 'init', credsFile, from: 0, count: n, caPem, address: echo.grpc, connectConcurrency: 24, channel: variant }, 'ready', 60 * 60_000);
      const o = (await opened).usage;
      const r = (await ready).usage;
      const connectSeconds = (performance.now() - t0) / 1000;
      await client.request({ type: 'heartbeats', intervalMs: Number(opts['interval-seconds']) * 1000 }, 'started');
      // The first interval spreads the devices' starts; measure after it.
      await sleep(Number(opts['interval-seconds']) * 1000);
      const h0 = (await client.request({ type: 'usage' }, 'usage')).usage;
      const m0 = machineCpu();
      await sleep(Number(opts['heartbeat-seconds']) * 1000);
      const h1 = (await client.request({ type: 'usage' }, 'usage')).usage;
      const machine = machineCpuBetween(m0, machineCpu());
      const result = await client.request({ type: 'stop' }, 'result', 120_000);
      await client.stop();
      await echo.stop();
      const row = {
        channels: n,
        variant,
        rssPerChannelOpenedKiB: (o.rss - before.rss) / n / 1024,
        rssPerChannelConnectedKiB: (r.rss - before.rss) / n / 1024,
        heapPerChannelConnectedKiB: (r.heapUsed - before.heapUsed) / n / 1024,
        externalPerChannelKiB: (r.external - before.external) / n / 1024,
        rssPerChannelSteadyKiB: (h1.rss - before.rss) / n / 1024,
        cpuMsPerConnect: (1000 * (r.cpuSeconds - o.cpuSeconds)) / n,
        connectSeconds,
        cpuMsPerHeartbeat: (1000 * (h1.cpuSeconds - h0.cpuSeconds)) / (h1.heartbeats - h0.heartbeats),
        heartbeats: h1.heartbeats - h0.heartbeats,
        errors: result.errors,
        machineBusyShare: machine.busyShare,
        rss: r.rss,
      };
      progress(SUITE, `${variant} x${n}: ${JSON.stringify(row, (k, v) => (typeof v === 'number' ? +v.toFixed(3) : v))}`);
      results.push(row);
    }
  }
  writeFileSync(path.join(opts.work, `results-${Date.now()}.json`), JSON.stringify({ provisioning, results }, null, 2));
  process.stdout.write(`${JSON.stringify({ provisioning, results }, null, 2)}\n`);
  progress(SUITE, `client RSS of the largest: ${fmtBytes(results.at(-1)?.rss)}`);
} finally {
  await stopAll();
}
