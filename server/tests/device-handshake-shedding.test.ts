// Load shedding at the device API's TLS listener (device-api/tls-listener.ts): past
// --max-pending-handshakes handshakes in progress a new TCP connection is reset at once, the
// device's call fails UNAVAILABLE in milliseconds (not at its deadline), the refusal is
// counted in /metrics, and once the handshakes in progress finish, connections are taken again.
// Real TCP and mTLS on 127.0.0.1; the "handshakes in progress" are real connections that
// opened TCP and never sent their ClientHello.
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpcError, provision, REGISTER_REQUEST, startDeviceTestServer, unlabelledMetrics, type DeviceTestServer } from './helpers.js';

let t: DeviceTestServer;
let port: number;

beforeAll(async () => {
  t = await startDeviceTestServer({ maxPendingHandshakes: 2, apiListen: '127.0.0.1:0' });
  port = Number(t.server.grpcAddress.split(':').at(-1));
});
afterAll(() => t.close());

async function metric(name: string): Promise<number> {
  return (await unlabelledMetrics(t.server.apiUrl!, [name]))[name] ?? NaN;
}

/** A TCP connection that never starts its TLS handshake: it holds one "in progress" slot. */
async function stalledConnection(): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return socket;
}

/** How a new TCP connection ends when the client sends nothing: 'reset' at once, or still 'open' after `waitMs`. */
async function fateOfNewConnection(waitMs: number): Promise<{ fate: 'reset' | 'closed' | 'open'; ms: number }> {
  const t0 = performance.now();
  const socket = net.connect(port, '127.0.0.1');
  const fate = await new Promise<'reset' | 'closed' | 'open'>((resolve) => {
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNRESET' ? 'reset' : 'closed'));
    socket.once('close', () => resolve('closed'));
    setTimeout(() => resolve('open'), waitMs);
  });
  socket.destroy();
  return { fate, ms: performance.now() - t0 };
}

describe('device API sheds connections past --max-pending-handshakes', () => {
  it('resets a new connection at once while 2 handshakes are in progress, counts it, and takes connections again when they end', async () => {
    const creds = await provision(t.ctx, 'lab', 'shed-1');
    const device = t.client(creds);
    await device.call('Register', REGISTER_REQUEST); // an established connection is not a pending handshake
    const shedBefore = await metric('meshanics_device_connections_shed_total');
    expect(shedBefore).toBe(0);

    const stalled = [await stalledConnection(), await stalledConnection()];
    await expect.poll(() => metric('meshanics_device_tls_handshakes_pending')).toBe(2);

    // A third connection is reset before any TLS byte: fast, not after the 10 s handshake timeout.
    const refused = await fateOfNewConnection(2000);
    expect(refused.fate).toBe('reset');
    expect(refused.ms).toBeLessThan(1000);

    // A device connecting now gets UNAVAILABLE within moments, far inside its 10 s deadline.
    const newcomer = t.client(await provision(t.ctx, 'lab', 'shed-2'));
    const t0 = performance.now();
    const err = await grpcError(newcomer.call('Register', REGISTER_REQUEST));
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(await metric('meshanics_device_connections_shed_total')).toBeGreaterThanOrEqual(2);

    // The device already connected is not affected.
    expect(await device.call('Heartbeat', { installed: [] })).toMatchObject({ offboarded: false });

    // The stalled clients hang up: their slots free, and new connections are taken again.
    for (const s of stalled) s.destroy();
    await expect.poll(() => metric('meshanics_device_tls_handshakes_pending')).toBe(0);
    expect((await fateOfNewConnection(300)).fate).toBe('open');
    await expect.poll(() => metric('meshanics_device_tls_handshakes_pending')).toBe(0);
    const late = t.client(await provision(t.ctx, 'lab', 'shed-3'));
    expect(await late.call('Register', REGISTER_REQUEST)).toMatchObject({ deviceName: 'shed-3' });
    await expect.poll(() => metric('meshanics_device_tls_handshakes_pending')).toBe(0);
  });
});
