// A lean load generator for the conn-memory suite: many idle device connections in one
// process, each with its own client certificate, over node:http2 directly (no grpc-js
// channel, subchannel and resolver per device, which cost the client several times what the
// server spends). A device's connection is mutual TLS with ALPN h2 and the session options
// grpc-js's client uses (default initial window, no session-memory limit); its calls are
// gRPC unary calls framed by hand (5-byte prefix, RFC 7540 headers, grpc-status in the
// trailers) with the contract's own protobuf serializers, as bench/lib/raw-device-channel.mjs
// frames them; the sessions stay here, with grpc-js's options and a count of those the server closed.
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { REGISTER_REQUEST, withConcurrency } from '../lib/device.mjs';
import { deviceService, onGrpcStatus, startUnaryCall } from '../lib/raw-device-channel.mjs';
import { Histogram } from '../lib/stats.mjs';
import { workerMain } from '../lib/workers.mjs';

let creds = [];
let caPem;
let sessions = [];
let closedEarly = 0;

/** One gRPC unary call on `session`; resolves with the decoded response. */
function unary(session, method, request, timeoutMs = 60_000) {
  const def = deviceService[method];
  return new Promise((resolve, reject) => {
    const stream = startUnaryCall(session, def, request, timeoutMs);
    const chunks = [];
    let status;
    let message = '';
    onGrpcStatus(stream, (code, text) => {
      status = code;
      message = text;
    });
    stream.on('data', (c) => chunks.push(c));
    stream.on('error', reject);
    stream.on('close', () => {
      if (status !== 0) return reject(new Error(`${method}: grpc-status ${status ?? 'none'} ${message}`));
      const data = Buffer.concat(chunks);
      resolve(def.responseDeserialize(data.subarray(5, 5 + data.readUInt32BE(1))));
    });
  });
}

function connect(address, device) {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://${address}`, { ca: caPem, key: device.keyPem, cert: device.certPem, maxSessionMemory: Number.MAX_SAFE_INTEGER });
    session.once('connect', () => {
      session.off('error', reject);
      session.on('error', () => undefined);
      session.once('close', () => {
        if (!session.byUs) closedEarly += 1;
      });
      resolve(session);
    });
    session.once('error', reject);
  });
}

workerMain(async (msg) => {
  if (msg.type === 'init') {
    creds = JSON.parse(readFileSync(msg.credsFile, 'utf8')).slice(msg.from, msg.from + msg.count);
    caPem = msg.caPem;
    process.send({ type: 'ready', devices: creds.length });
  } else if (msg.type === 'connect') {
    // Cumulative: devices [sessions.length, upTo) connect, register and send one heartbeat.
    const todo = creds.slice(sessions.length, msg.upTo);
    const opened = new Array(todo.length);
    await withConcurrency(todo, msg.concurrency ?? 16, async (device, i) => {
      const session = await connect(msg.address, device);
      opened[i] = session;
      if (msg.calls === false) return;
      await unary(session, 'Register', REGISTER_REQUEST);
      await unary(session, 'Heartbeat', { installed: [] });
    });
    sessions.push(...opened);
    process.send({ type: 'connected', open: sessions.length, closedEarly });
  } else if (msg.type === 'heartbeats') {
    // One more heartbeat on every open connection, `concurrency` at a time: its latency.
    const hist = new Histogram();
    await withConcurrency(sessions, msg.concurrency ?? 16, async (session) => {
      const t0 = performance.now();
      await unary(session, 'Heartbeat', { installed: [] });
      hist.record(performance.now() - t0);
    });
    process.send({ type: 'beaten', hist: hist.toJSON(), closedEarly });
  } else if (msg.type === 'closeAll') {
    await Promise.all(
      sessions.map((s) => {
        s.byUs = true;
        return new Promise((resolve) => (s.closed ? resolve() : s.close(resolve)));
      }),
    );
    sessions = [];
    closedEarly = 0;
    process.send({ type: 'closed' });
  }
});
