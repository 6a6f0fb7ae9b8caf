// Heartbeat load generator (one of several processes): long-lived mTLS channels, one per
// device certificate, to each target; on "start" it keeps N heartbeats in flight until "stop",
// rotating over its channels, and reports calls completed and their latency histogram for
// the window between "mark" and "stop".
import { readFileSync } from 'node:fs';
import { REGISTER_REQUEST, openDeviceChannel, unary, waitReady, withConcurrency } from '../lib/device.mjs';
import { Histogram } from '../lib/stats.mjs';
import { workerMain } from '../lib/workers.mjs';

// A device in steady state: one healthy model installed.
const HEARTBEAT = {
  installed: [{ name: 'detector', kind: 'model', version: '1.0.0', sha256: 'ab'.repeat(32), state: 'HEALTHY' }],
};

const channels = {};
let active;

async function loop(run, worker, inflight) {
  const list = channels[run.target];
  let idx = worker % list.length;
  while (!run.stopping) {
    const t0 = performance.now();
    try {
      await unary(list[idx], 'heartbeat', HEARTBEAT);
      if (!run.stopping) {
        run.calls += 1;
        run.hist.record(performance.now() - t0);
      }
    } catch (err) {
      run.errors += 1;
      run.firstError ??= err.message;
      await new Promise((r) => setTimeout(r, 10));
    }
    idx = (idx + inflight) % list.length;
  }
}

workerMain(async (msg) => {
  if (msg.type === 'init') {
    const mine = JSON.parse(readFileSync(msg.credsFile, 'utf8')).slice(msg.from, msg.from + msg.count);
    for (const [target, address] of Object.entries(msg.targets)) {
      channels[target] = mine.map((d) => openDeviceChannel(address, { caPem: msg.caPem, keyPem: d.keyPem, certPem: d.certPem }));
      await withConcurrency(channels[target], 8, async (c) => {
        await waitReady(c);
        await unary(c, 'register', REGISTER_REQUEST, 30_000);
      });
    }
    process.send({ type: 'ready', channels: mine.length });
  } else if (msg.type === 'start') {
    const run = { target: msg.target, stopping: false, calls: 0, errors: 0, hist: new Histogram(), firstError: undefined };
    run.loops = Array.from({ length: msg.inflight }, (_, w) => loop(run, w, msg.inflight));
    active = run;
    process.send({ type: 'started' });
  } else if (msg.type === 'mark') {
    active.calls = 0;
    active.errors = 0;
    active.hist = new Histogram();
    process.send({ type: 'marked' });
  } else if (msg.type === 'stop') {
    const run = active;
    if (!run) {
      process.send({ type: 'result', calls: 0, errors: 0, hist: new Histogram().toJSON() });
      return;
    }
    run.stopping = true;
    const { calls, errors, hist, firstError } = run;
    await Promise.all(run.loops);
    active = undefined;
    process.send({ type: 'result', calls, errors, hist: hist.toJSON(), firstError });
  } else if (msg.type === 'close') {
    for (const list of Object.values(channels)) for (const c of list) c.close();
    process.send({ type: 'closed' });
  }
});
