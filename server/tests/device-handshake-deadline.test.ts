// The device TLS listener's handshake deadline (device-api/tls-listener.ts) runs from the TCP
// accept, whatever the client sends: Node's own handshakeTimeout is an idle timer, so a client
// trickling a byte now and then held its handshake, and a place under --max-pending-handshakes,
// for ever, and that many such clients had every device reset (a denial of service without
// credentials). Real TCP and mTLS on 127.0.0.1, a 600 ms deadline so the test is short.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadDeviceService } from '@meshanics/core/contract';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenDeviceTls, type DeviceTlsListener } from '../src/device-api/tls-listener.js';
import { bareRegisterClient, provision, startDeviceTestServer, type DeviceTestServer } from './helpers.js';

const DEADLINE_MS = 600;
let t: DeviceTestServer;
let server: grpc.Server;
let listener: DeviceTlsListener;
let handshakes = 0;

beforeAll(async () => {
  t = await startDeviceTestServer();
  server = new grpc.Server();
  server.addService(loadDeviceService().service, {
    Register: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { deviceName: '', fleet: '', heartbeatIntervalSeconds: 30 }),
  });
  listener = await listenDeviceTls(server, {
    listen: { host: '127.0.0.1', port: 0 },
    caPem: fs.readFileSync(t.ctx.layout.caCertFile, 'utf8'),
    keyPem: fs.readFileSync(t.ctx.layout.serverKeyFile, 'utf8'),
    certPem: fs.readFileSync(t.ctx.layout.serverCertFile, 'utf8'),
    handshakeTimeoutMs: DEADLINE_MS,
    maxPendingHandshakes: 1,
    onHandshake: () => (handshakes += 1),
  });
});
afterAll(async () => {
  await listener?.close();
  server?.forceShutdown();
  await t?.close();
});

/** A client that sends the start of a TLS record, one byte every 150 ms, and never finishes it. */
function trickle(): { socket: net.Socket; closedAfterMs: Promise<number> } {
  const t0 = performance.now();
  const socket = net.connect(listener.port, '127.0.0.1');
  const bytes = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
  const feeder = setInterval(() => {
    if (!socket.destroyed && socket.writable) socket.write(Buffer.from([bytes.shift() ?? 0]));
  }, 150);
  const closedAfterMs = new Promise<number>((resolve) => {
    socket.on('error', () => undefined);
    socket.once('close', () => {
      clearInterval(feeder);
      resolve(performance.now() - t0);
    });
  });
  return { socket, closedAfterMs };
}

describe('device TLS listener handshake deadline', () => {
  it('drops a client that trickles its handshake at the deadline from accept, and frees its place for a device', async () => {
    const slow = trickle();
    await expect.poll(() => listener.pendingHandshakes()).toBe(1);
    // Each byte came well inside Node's idle timer of the same length; the deadline still ends it.
    const closedAfter = await Promise.race([slow.closedAfterMs, new Promise<number>((resolve) => setTimeout(() => resolve(Infinity), 5 * DEADLINE_MS))]);
    slow.socket.destroy();
    expect(closedAfter).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
    expect(closedAfter).toBeLessThan(3 * DEADLINE_MS);
    await expect.poll(() => listener.pendingHandshakes()).toBe(0);

    // The place under maxPendingHandshakes (1) is free again: a device connects and calls.
    const creds = await provision(t.ctx, 'lab', 'deadline-1');
    const client = bareRegisterClient(listener.port, t.caPem, creds);
    try {
      await client.register();
      const before = handshakes;
      // An established connection outlives the handshake deadline: the same connection answers
      // well after it (no new handshake), so the deadline was cleared when the handshake ended.
      await new Promise((resolve) => setTimeout(resolve, 3 * DEADLINE_MS));
      await client.register();
      expect(handshakes).toBe(before);
    } finally {
      client.close();
    }
  });
});
