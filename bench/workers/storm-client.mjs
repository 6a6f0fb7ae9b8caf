// Simulated devices for the reconnect-storm benchmark (one of several processes). Each device
// has its own certificate and mTLS channel, with the agent's channel options (its grpc-js
// reconnect backoff, core/src/runtime/device-client.ts), and heartbeats like the agent's
// daemon loop: the interval, calls that wait for the channel's readiness within the agent's
// deadline, and after a failure the agent's own retry schedule (retryDelayMs from
// @meshanics/core, capped at the interval), cut short when the channel reconnects on its own
// (sleepUnlessReconnected). All of it is imported from @meshanics/core, not copied. It never
// gives up. Its channels resume their TLS sessions as the agent's do (ResumingChannelCredentials).
// The suite's "policy" message switches between restarts to the agent before issue
// 30's fix (waitForReady false: calls fail at once during the channel's backoff, and the retry
// sleeps its whole window), or to full handshakes (resume false: the tickets are forgotten at
// "down"), so each is measured in the same run as the agent's.
// The parent says when the server went down ("down"); a device is back at its first successful
// heartbeat the new server answered (newServerNotBefore). Every attempt after "down" is timestamped (100 ms slots)
// so the suite can show the retries are not synchronized.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { CALL_RETRY_BACKOFF, retryDelayMs } from '@meshanics/core';
import { CALL_DEADLINE_MS, DEVICE_CHANNEL_OPTIONS, deviceCallMetadata, ResumingChannelCredentials, sleepUnlessReconnected } from '@meshanics/core';
import { loadDeviceService } from '@meshanics/core/contract';
import { REGISTER_REQUEST, unary, waitReady, withConcurrency } from '../lib/device.mjs';
import { workerMain } from '../lib/workers.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A device is back at its first successful heartbeat the new server answered: one that started
// after the old server exited, or one that waited for the channel (wait-for-ready) across the
// restart and ended after the earliest moment the new server could start (the parent's "down"
// says when: the exit plus the suite's downSeconds), so an answer the old server sent before it
// exited never counts, however late this busy process reads it. Counting only calls started
// after the exit, as before 2026-12-06, missed a device whose waiting call the new server
// answered at once: it counted at its next heartbeat, an interval later, which made the slowest
// 1 % of 2,000 look 6 s late.
let newServerNotBefore = null; // epoch ms
const devices = [];
let stopping = false;
let downAt = null; // epoch ms
let back = 0;
let loops = [];
const slots = new Map(); // 100 ms slot since downAt -> attempts started in it
let outcomes = { ok: 0, unavailable: 0, deadline: 0, other: 0 };
let firstError;

function open(address, caPem, d) {
  const { Client } = loadDeviceService();
  // The agent's credentials: TLS session resumption (a restart without it forgets the tickets).
  const credentials = new ResumingChannelCredentials(Buffer.from(caPem), Buffer.from(d.keyPem), Buffer.from(d.certPem));
  const client = new Client(address, credentials, {
    ...DEVICE_CHANNEL_OPTIONS,
    // One connection per simulated device, never shared within this process.
    'grpc.use_local_subchannel_pool': 1,
  });
  return { client, credentials };
}

/** Resumed and full handshakes of this process's devices so far. */
function handshakes() {
  const sum = { resumed: 0, full: 0 };
  for (const d of devices) {
    const h = d.credentials.handshakes;
    sum.resumed += h.resumed;
    sum.full += h.full;
  }
  return sum;
}

// The agent's call policy (true) or the one before issue 30's fix (false).
let waitForReady = true;
// The agent's TLS session resumption (true), or full handshakes after the restart (false).
let resume = true;
let handshakesAtDown = { resumed: 0, full: 0 };
function heartbeat(client) {
  return new Promise((resolve, reject) =>
    client.heartbeat({ installed: [] }, deviceCallMetadata(waitForReady), { deadline: Date.now() + CALL_DEADLINE_MS }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

async function deviceLoop(device, intervalMs) {
  await sleep(Math.random() * intervalMs); // devices heartbeat at random points of the interval
  let failures = 0;
  while (!stopping) {
    let wait = intervalMs;
    const t0 = Date.now();
    if (downAt !== null && t0 >= downAt) {
      const slot = Math.floor((t0 - downAt) / 100);
      slots.set(slot, (slots.get(slot) ?? 0) + 1);
      device.attempts += 1;
    }
    try {
      await heartbeat(device.client);
      outcomes.ok += 1;
      failures = 0;
      if (downAt !== null && device.backAt === null && (t0 >= downAt || Date.now() >= newServerNotBefore)) {
        device.backAt = Date.now();
        back += 1;
      }
    } catch (err) {
      if (stopping) break;
      if (err.code === grpc.status.UNAVAILABLE) outcomes.unavailable += 1;
      else if (err.code === grpc.status.DEADLINE_EXCEEDED) outcomes.deadline += 1;
      else outcomes.other += 1;
      firstError ??= `${err.code}: ${err.details ?? err.message}`;
      failures += 1;
      device.maxFailures = Math.max(device.maxFailures, failures);
      wait = retryDelayMs(failures, { ...CALL_RETRY_BACKOFF, capMs: Math.min(CALL_RETRY_BACKOFF.capMs, intervalMs) });
      if (waitForReady) {
        await sleepUnlessReconnected(device.client.getChannel(), wait);
        continue;
      }
    }
    await sleep(wait);
  }
}

workerMain(async (msg) => {
  if (msg.type === 'init') {
    waitForReady = msg.waitForReady !== false;
    const mine = JSON.parse(readFileSync(msg.credsFile, 'utf8')).slice(msg.from, msg.from + msg.count);
    for (const d of mine) devices.push({ name: d.name, ...open(msg.address, msg.caPem, d), backAt: null, attempts: 0, maxFailures: 0 });
    await withConcurrency(devices, msg.connectConcurrency ?? 16, async (device) => {
      for (let attempt = 1; ; attempt++) {
        try {
          await waitReady(device.client, 120_000);
          await unary(device.client, 'register', REGISTER_REQUEST, 60_000);
          return;
        } catch (err) {
          if (attempt >= 5) throw err;
          await sleep(retryDelayMs(attempt, CALL_RETRY_BACKOFF));
        }
      }
    });
    process.send({ type: 'ready', devices: devices.length });
  } else if (msg.type === 'heartbeats') {
    loops = devices.map((d) => deviceLoop(d, msg.intervalMs));
    setInterval(() => process.send({ type: 'progress', back }), 250).unref();
    process.send({ type: 'started' });
  } else if (msg.type === 'policy') {
    // Between restarts of one run: the same devices and connections, another call policy.
    waitForReady = msg.waitForReady !== false;
    resume = msg.resume !== false;
    process.send({ type: 'noted' });
  } else if (msg.type === 'down') {
    // Without resumption the devices reconnect with no ticket: the server is down, so none
    // arrives before the first full handshake after the restart.
    if (!resume) for (const d of devices) d.credentials.forgetSession();
    handshakesAtDown = handshakes();
    // Each restart is measured on its own: what the previous one counted is reset.
    downAt = msg.at;
    newServerNotBefore = msg.newServerNotBefore;
    back = 0;
    slots.clear();
    outcomes = { ok: 0, unavailable: 0, deadline: 0, other: 0 };
    firstError = undefined;
    for (const d of devices) Object.assign(d, { backAt: null, attempts: 0, maxFailures: 0 });
    process.send({ type: 'noted' });
  } else if (msg.type === 'stop') {
    stopping = true;
    await Promise.all(loops.map((l) => Promise.race([l, sleep(16_000)])));
    for (const d of devices) d.client.close();
    process.send({ type: 'stopped' });
  } else if (msg.type === 'collect') {
    process.send({
      type: 'result',
      backAt: devices.map((d) => d.backAt),
      attempts: devices.map((d) => d.attempts),
      maxFailures: devices.map((d) => d.maxFailures),
      slots: Object.fromEntries(slots),
      outcomes,
      firstError,
      handshakes: { resumed: handshakes().resumed - handshakesAtDown.resumed, full: handshakes().full - handshakesAtDown.full },
    });
  }
});
