// Simulated devices for the fleet benchmark (one of several processes). Each device has its
// own certificate and long-lived mTLS channel, registers, then behaves like the agent's
// daemon loop: heartbeat, act on new assignments, sleep the interval the server asked for.
// A new assignment is "installed" by sending the reports the agent's pipeline sends
// (DOWNLOADING, VERIFYING, APPLYING, HEALTHY) with simulated work in between; later
// heartbeats list the installed version, as the agent's do.
import { readFileSync } from 'node:fs';
import { PerformanceObserver, constants as perfConstants, monitorEventLoopDelay } from 'node:perf_hooks';
import { CALL_RETRY_BACKOFF, REPORT_RETRY_BACKOFF, retryDelayMs } from '@meshanics/core';
import { REGISTER_REQUEST, openDeviceChannel, unary, waitReady, withConcurrency } from '../lib/device.mjs';
import { runQueueWaitMs } from '../lib/proc.mjs';
import { Histogram } from '../lib/stats.mjs';
import { workerMain } from '../lib/workers.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const devices = [];
let phase = 'steady';
const hist = {}; // phase -> { heartbeat, report }
const connectHist = new Histogram(); // waitForReady (TLS handshake) + Register, per device
let stopping = false;
let loops = [];
let sim = { downloadMs: [200, 700], probeMs: 100, deadlineMs: 15_000 };
const healthy = {}; // version -> count
let lastHealthyAt = 0;
let errors = 0;
let firstError;
let dirty = false;
let heartbeats = 0;
let reports = 0;
// This process's own event-loop delay: latency it adds to every measurement.
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
// The same per phase, with this process's garbage-collection pauses and CPU time: whether a
// stall of the load generator was its own collector or a wait for a core.
const phaseLoopDelay = monitorEventLoopDelay({ resolution: 10 });
const perPhase = {}; // phase -> { loop, gc, cpuSeconds, wallSeconds }
let phaseStart = { cpu: process.cpuUsage(), at: performance.now(), runQueueMs: runQueueWaitMs() };
const GC_KINDS = {
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};
let gcNow = {};
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const g = (gcNow[GC_KINDS[e.detail?.kind] ?? 'other'] ??= { pauses: 0, ms: 0, maxMs: 0 });
    g.pauses += 1;
    g.ms += e.duration;
    g.maxMs = Math.max(g.maxMs, e.duration);
  }
}).observe({ entryTypes: ['gc'] });

/** Closes the current phase's own figures (loop delay, GC, CPU) and starts the next one's. */
function closePhase() {
  const cpu = process.cpuUsage(phaseStart.cpu);
  const at = performance.now();
  const runQueue = runQueueWaitMs();
  perPhase[phase] = {
    loop: { p99Ms: phaseLoopDelay.percentile(99) / 1e6, maxMs: phaseLoopDelay.max / 1e6 },
    gc: gcNow,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    wallSeconds: (at - phaseStart.at) / 1000,
    // The event loop's thread runnable but without a core: at nice 10 this is the load
    // generator yielding to the server and its database, and it is in every latency it measures.
    runQueueSeconds: runQueue === null || phaseStart.runQueueMs === null ? null : (runQueue - phaseStart.runQueueMs) / 1000,
  };
  phaseLoopDelay.reset();
  gcNow = {};
  phaseStart = { cpu: process.cpuUsage(), at, runQueueMs: runQueue };
}

// Per phase: latency of successful calls, and of every attempt (failed ones at the time they
// failed, usually the deadline) so an overloaded server cannot hide behind its survivors.
function histFor(kind) {
  hist[phase] ??= { heartbeat: new Histogram(), report: new Histogram(), heartbeatAttempts: new Histogram(), heartbeatFailures: 0, reportFailures: 0 };
  return hist[phase][kind];
}

function noteError(err) {
  errors += 1;
  firstError ??= err.message;
  dirty = true;
}

async function report(device, assignment, state, extra = {}) {
  const request = {
    assignmentId: assignment.assignmentId,
    state,
    sequence: ++device.seq,
    reason: '',
    bytesDone: extra.bytesDone ?? 0,
    bytesTotal: extra.bytesTotal ?? 0,
    deviceTime: new Date().toISOString(),
  };
  // Like the agent's status reporter: keep the report until the server acknowledged it,
  // retrying on its own schedule (REPORT_RETRY_BACKOFF, core/src/runtime/retry-backoff.ts).
  for (let failures = 1; ; failures++) {
    const t0 = performance.now();
    try {
      await unary(device.client, 'reportArtifactStatus', request, sim.deadlineMs);
      histFor('report').record(performance.now() - t0);
      reports += 1;
      return;
    } catch (err) {
      noteError(err);
      if (stopping) throw err;
      histFor('report');
      hist[phase].reportFailures += 1;
      await sleep(retryDelayMs(failures, REPORT_RETRY_BACKOFF));
    }
  }
}

async function install(device, a) {
  const total = Number(a.expectedLength);
  await report(device, a, 'DOWNLOADING', { bytesTotal: total });
  const [lo, hi] = sim.downloadMs;
  await sleep(lo + Math.random() * (hi - lo));
  await report(device, a, 'VERIFYING', { bytesDone: total, bytesTotal: total });
  await report(device, a, 'APPLYING');
  await sleep(sim.probeMs);
  await report(device, a, 'HEALTHY');
  device.installed = [{ name: a.name, kind: a.kind, version: a.version, sha256: a.expectedSha256, state: 'HEALTHY' }];
  healthy[a.version] = (healthy[a.version] ?? 0) + 1;
  lastHealthyAt = Date.now();
  dirty = true;
}

async function deviceLoop(device, intervalMs) {
  // Devices come up at random points of the interval, as a real fleet does.
  await sleep(Math.random() * intervalMs);
  let failures = 0;
  while (!stopping) {
    let wait = intervalMs;
    const t0 = performance.now();
    try {
      const res = await unary(device.client, 'heartbeat', { installed: device.installed }, sim.deadlineMs);
      histFor('heartbeat').record(performance.now() - t0);
      histFor('heartbeatAttempts').record(performance.now() - t0);
      heartbeats += 1;
      failures = 0;
      if (res.nextHeartbeatSeconds > 0) wait = res.nextHeartbeatSeconds * 1000;
      for (const a of res.assignments) {
        if (device.handled.has(a.assignmentId)) continue;
        device.handled.add(a.assignmentId);
        device.running = install(device, a).catch(() => undefined);
      }
    } catch (err) {
      if (stopping) break;
      noteError(err);
      histFor('heartbeatAttempts').record(performance.now() - t0);
      hist[phase].heartbeatFailures += 1;
      failures += 1;
      // The agent daemon's retry delay, never later than the next regular heartbeat (core/src/runtime/agent-daemon.ts).
      wait = retryDelayMs(failures, { ...CALL_RETRY_BACKOFF, capMs: Math.min(CALL_RETRY_BACKOFF.capMs, intervalMs) });
    }
    await sleep(wait);
  }
}

/**
 * What this process holds and has spent so far: RSS, V8 heap, memory outside the heap
 * (OpenSSL, nghttp2, buffers), CPU seconds, calls made. After a full collection when node
 * runs with --expose-gc, so the heap figure is what is live, not what awaits collection.
 */
function usage() {
  globalThis.gc?.();
  const m = process.memoryUsage();
  const cpu = process.cpuUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, cpuSeconds: (cpu.user + cpu.system) / 1e6, heartbeats, devices: devices.length };
}

workerMain(async (msg) => {
  if (msg.type === 'init') {
    sim = { ...sim, ...msg.sim };
    const mine = JSON.parse(readFileSync(msg.credsFile, 'utf8')).slice(msg.from, msg.from + msg.count);
    let done = 0;
    for (const d of mine) {
      devices.push({
        name: d.name,
        client: openDeviceChannel(msg.address, { caPem: msg.caPem, keyPem: d.keyPem, certPem: d.certPem }, { kind: msg.channel ?? 'agent', localAddress: msg.localAddress }),
        seq: 0,
        installed: [],
        handled: new Set(),
      });
    }
    process.send({ type: 'opened', usage: usage() });
    // Staggered connect: no more than connectPerSecond new handshakes a second from this
    // process (0: no limit), so tens of thousands of devices do not arrive as one storm that
    // starves the server under test (the storm suite measures that case on purpose).
    const gap = msg.connectPerSecond ? 1000 / msg.connectPerSecond : 0;
    let nextStart = performance.now();
    await withConcurrency(devices, msg.connectConcurrency ?? 16, async (device) => {
      if (gap) {
        const at = nextStart;
        nextStart = Math.max(nextStart, performance.now()) + gap;
        if (at > performance.now()) await sleep(at - performance.now());
      }
      const t0 = performance.now();
      for (let attempt = 1; ; attempt++) {
        try {
          await waitReady(device.client, 120_000);
          await unary(device.client, 'register', REGISTER_REQUEST, 60_000);
          break;
        } catch (err) {
          if (attempt >= 4) throw err;
          noteError(err);
          await sleep(retryDelayMs(attempt, CALL_RETRY_BACKOFF));
        }
      }
      connectHist.record(performance.now() - t0);
      if (++done % 250 === 0) process.send({ type: 'connected', done });
    });
    phase = 'steady';
    process.send({ type: 'ready', devices: devices.length, usage: usage() });
  } else if (msg.type === 'heartbeats') {
    loopDelay.enable();
    phaseLoopDelay.enable();
    gcNow = {};
    phaseStart = { cpu: process.cpuUsage(), at: performance.now(), runQueueMs: runQueueWaitMs() };
    loops = devices.map((d) => deviceLoop(d, msg.intervalMs));
    setInterval(() => {
      if (!dirty) return;
      dirty = false;
      process.send({ type: 'progress', healthy, lastHealthyAt, errors, firstError, heartbeats, reports });
    }, 250).unref();
    process.send({ type: 'started' });
  } else if (msg.type === 'usage') {
    process.send({ type: 'usage', usage: usage() });
  } else if (msg.type === 'phase') {
    closePhase();
    phase = msg.name;
    process.send({ type: 'phased' });
  } else if (msg.type === 'stop') {
    closePhase();
    stopping = true;
    await Promise.all(loops.map((l) => Promise.race([l, sleep(sim.deadlineMs + 1000)])));
    for (const d of devices) d.client.close();
    const out = {};
    for (const [name, h] of Object.entries(hist)) {
      out[name] = {
        heartbeat: h.heartbeat.toJSON(),
        report: h.report.toJSON(),
        heartbeatAttempts: h.heartbeatAttempts.toJSON(),
        heartbeatFailures: h.heartbeatFailures,
        reportFailures: h.reportFailures,
      };
    }
    loopDelay.disable();
    const loop = { p99Ms: loopDelay.percentile(99) / 1e6, maxMs: loopDelay.max / 1e6 };
    process.send({ type: 'result', hist: out, connect: connectHist.toJSON(), loop, phases: perPhase, healthy, lastHealthyAt, errors, firstError, heartbeats, reports });
  }
});
