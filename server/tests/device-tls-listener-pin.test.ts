// What the device TLS listener keeps per connection (device-api/tls-listener.ts): the peer
// certificate's DER only, the same object on every call of the connection (identity once per
// connection), not the full object getPeerCertificate() builds: about 2.5 KiB of heap per
// connected device (docs/benchmarks.md, "Memory per connected device").
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import type * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { loadDeviceService } from '@meshanics/core/contract';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenDeviceTls, type DeviceTlsListener } from '../src/device-api/tls-listener.js';
import { bareRegisterClient, provision, startDeviceTestServer, type DeviceTestServer } from './helpers.js';

let t: DeviceTestServer;
let server: grpc.Server;
let listener: DeviceTlsListener;
const seen: tls.PeerCertificate[] = [];

beforeAll(async () => {
  t = await startDeviceTestServer();
  server = new grpc.Server();
  server.addService(loadDeviceService().service, {
    Register: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      seen.push(call.getAuthContext().sslPeerCertificate!);
      cb(null, { deviceName: '', fleet: '', heartbeatIntervalSeconds: 30 });
    },
  });
  listener = await listenDeviceTls(server, {
    listen: { host: '127.0.0.1', port: 0 },
    caPem: fs.readFileSync(t.ctx.layout.caCertFile, 'utf8'),
    keyPem: fs.readFileSync(t.ctx.layout.serverKeyFile, 'utf8'),
    certPem: fs.readFileSync(t.ctx.layout.serverCertFile, 'utf8'),
  });
});
afterAll(async () => {
  await listener?.close();
  server?.forceShutdown();
  await t?.close();
});

describe('device TLS listener', () => {
  it('keeps only the peer certificate DER per connection, the same object on every call', async () => {
    const creds = await provision(t.ctx, 'lab', 'pin-1');
    const client = bareRegisterClient(listener.port, t.caPem, creds);
    try {
      await client.register();
      await client.register();
    } finally {
      client.close();
    }
    expect(seen).toHaveLength(2);
    expect(Object.keys(seen[0]!)).toEqual(['raw']);
    expect(seen[1]).toBe(seen[0]);
    expect(seen[0]!.raw.equals(new crypto.X509Certificate(creds.certPem).raw)).toBe(true);
  });
});
