// The device API reads a connection's client certificate once (device-api/tls-listener.ts) and
// keeps its identity for every call on that connection. What may change while a connection is
// open is still checked at every call: the device record (decommissioning) and the
// certificate's validity period. A renewed certificate arrives on a new connection and is used.
import * as crypto from 'node:crypto';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decommissionDevice } from '../src/fleet/devices.js';
import { deviceIdentity, grpcError, REGISTER_REQUEST, startDeviceTestServer, type DeviceTestServer } from './helpers.js';

let t: DeviceTestServer;

beforeAll(async () => {
  t = await startDeviceTestServer();
});
afterAll(() => t.close());

const credentials = (name: string, validitySeconds?: number) => deviceIdentity(t.ctx, name, validitySeconds);

describe('device identity, once per connection', () => {
  it('refuses the next call on an open connection once the device is decommissioned', async () => {
    const client = t.client(await credentials('conn-decom'));
    await client.call('Register', REGISTER_REQUEST);
    expect(await client.call('Heartbeat', { installed: [] })).toMatchObject({ offboarded: false });

    await decommissionDevice(t.ctx, { fleet: 'lab', name: 'conn-decom' });
    // Same channel, same TLS connection: the identity was read once, the record is read per call.
    expect(await client.call('Heartbeat', { installed: [] })).toMatchObject({ offboarded: true });
    const refused = await grpcError(client.call('Register', REGISTER_REQUEST));
    expect(refused.code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('refuses calls on a connection that outlives its certificate, and takes the renewed certificate on a new connection', async () => {
    const shortLived = await credentials('conn-expiry', 4);
    const notAfter = new crypto.X509Certificate(shortLived.certPem).validTo;
    const client = t.client(shortLived);
    await client.call('Register', REGISTER_REQUEST);
    await client.call('Heartbeat', { installed: [] });

    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(notAfter) - Date.now()) + 1500));
    const expired = await grpcError(client.call('Heartbeat', { installed: [] }));
    expect(expired.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(expired.details).toContain('expired');

    const renewed = t.client(await credentials('conn-expiry'));
    expect(await renewed.call('Heartbeat', { installed: [] })).toMatchObject({ offboarded: false });
  });

  it('refuses a TLS 1.2 peer at the handshake, so no connection can renegotiate to present another certificate', async () => {
    const device = await credentials('conn-tls12');
    const socket = tls.connect({
      host: '127.0.0.1',
      port: Number(t.server.grpcAddress.split(':').at(-1)),
      ca: t.caPem,
      key: device.keyPem,
      cert: device.certPem,
      maxVersion: 'TLSv1.2',
      ALPNProtocols: ['h2'],
      servername: 'localhost',
      checkServerIdentity: () => undefined,
    });
    const outcome = await new Promise<string>((resolve) => {
      socket.once('secureConnect', () => resolve(`connected with ${socket.getProtocol()}`));
      socket.once('error', (err) => resolve(`error: ${err.message}`));
    });
    socket.destroy();
    expect(outcome).toMatch(/^error: .*(protocol version|wrong version|unsupported protocol)/i);
  });

  it('refuses a client without an h2 ALPN before any gRPC is spoken', async () => {
    const device = await credentials('conn-alpn');
    const socket = tls.connect({
      host: '127.0.0.1',
      port: Number(t.server.grpcAddress.split(':').at(-1)),
      ca: t.caPem,
      key: device.keyPem,
      cert: device.certPem,
      ALPNProtocols: ['http/1.1'],
      checkServerIdentity: () => undefined,
    });
    const closed = await new Promise<string>((resolve) => {
      socket.once('close', () => resolve('closed'));
      socket.once('error', () => resolve('closed'));
    });
    expect(closed).toBe('closed');
  });
});
