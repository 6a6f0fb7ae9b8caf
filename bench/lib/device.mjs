// A device's gRPC channel, as the agent opens it (core/src/runtime/device-client.ts): mutual
// TLS with the device's own certificate, the same channel options. Plus a local subchannel
// pool, so thousands of channels in one load-generator process never share a connection.
import * as grpc from '@grpc/grpc-js';
import { loadDeviceService } from '@meshanics/core/contract';
import { RawDeviceChannel } from './raw-device-channel.mjs';

export const DEVICE_CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 60_000,
  'grpc.max_receive_message_length': 4 * 1024 * 1024,
  'grpc.use_local_subchannel_pool': 1,
};

/**
 * The load generator's own options on top of the agent's: what a simulated device does not
 * need and a process of tens of thousands of channels pays for per channel (measured in
 * docs/benchmarks.md, "what one simulated device costs"). Channelz keeps a call tracker and
 * a registry entry per channel and socket; retries buffer each call's request; the service
 * config comes from the resolver, and there is none on an IP address. None of them changes
 * what the server sees on the wire (keepalive is the agent's and is kept: grpc-js sends no
 * pings without a call in flight, keepalive_permit_without_calls being off).
 */
export const LEAN_CHANNEL_OPTIONS = {
  'grpc.enable_channelz': 0,
  'grpc.enable_retries': 0,
  'grpc.service_config_disable_resolution': 1,
};

/**
 * `kind`: 'agent' (grpc-js with the agent's options), 'lean' (LEAN_CHANNEL_OPTIONS added) or
 * 'http2' (no grpc-js: bench/lib/raw-device-channel.mjs), the choices of the fleet bench's
 * load generators (--set fleet.channel=...).
 */
export function openDeviceChannel(address, { caPem, keyPem, certPem }, { kind = 'agent', localAddress } = {}) {
  if (kind === 'http2') return new RawDeviceChannel(address, { caPem, keyPem, certPem }, { localAddress });
  if (kind !== 'agent' && kind !== 'lean') throw new Error(`unknown channel kind ${kind} (agent, lean, http2)`);
  const lean = kind === 'lean';
  const { Client } = loadDeviceService();
  const credentials = grpc.credentials.createSsl(Buffer.from(caPem), Buffer.from(keyPem), Buffer.from(certPem));
  return new Client(address, credentials, lean ? { ...DEVICE_CHANNEL_OPTIONS, ...LEAN_CHANNEL_OPTIONS } : DEVICE_CHANNEL_OPTIONS);
}

/** One unary call with a deadline, as DeviceClient makes it. */
export function unary(client, method, request, deadlineMs = 15_000) {
  return new Promise((resolve, reject) => {
    client[method](request, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

export function waitReady(client, deadlineMs = 60_000) {
  return new Promise((resolve, reject) => client.waitForReady(Date.now() + deadlineMs, (err) => (err ? reject(err) : resolve())));
}

/** What a real agent registers with (capabilities of the default bundle). */
export const REGISTER_REQUEST = {
  hardware: { model: 'bench', soc: 'sim', arch: 'x64', cpuCores: 2, memoryBytes: 2 ** 31, accelerators: [], os: 'linux', kernel: '6' },
  agentVersion: '0.1.0',
  tags: { site: 'bench' },
  capabilities: [
    { kind: 'ARTIFACT', name: 'model', version: '0.1.0' },
    { kind: 'PROBE', name: 'file', version: '0.1.0' },
  ],
};

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function withConcurrency(items, limit, fn) {
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  });
  await Promise.all(runners);
}
