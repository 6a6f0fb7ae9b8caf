// TLS session resumption on the device API (issue 30, reconnect storm): the agent's credentials
// (core's ResumingChannelCredentials) offer the ticket of their last connection, the server
// seals tickets with the data dir's key, so a device reconnecting to the same or a restarted
// server skips the full handshake. What must not change: the identity is the certificate
// verified at the full handshake, and what the server checks per call (the device record, the
// certificate's expiry) is checked on a resumed connection too. All over real mTLS on 127.0.0.1.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ResumingChannelCredentials } from '@meshanics/core';
import { loadDeviceService } from '@meshanics/core/contract';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDataDir } from '../src/config/data-dir.js';
import { decommissionDevice, provisionDevice } from '../src/fleet/devices.js';
import { ensureSessionTicketKey, TICKET_KEY_BYTES } from '../src/pki/session-ticket-key.js';
import { silentLogger } from '../src/observability/log.js';
import { startServer } from '../src/server.js';
import { deviceIdentity, grpcError, REGISTER_REQUEST, startDeviceTestServer, tempDir, type DeviceTestServer } from './helpers.js';

type Callback = (err: grpc.ServiceError | null, res: unknown) => void;

let t: DeviceTestServer;
const opened: grpc.Client[] = [];

beforeAll(async () => {
  t = await startDeviceTestServer();
});
afterAll(async () => {
  for (const c of opened.splice(0)) c.close();
  await t.close();
});

async function resumingCredentials(name: string, validitySeconds?: number): Promise<ResumingChannelCredentials> {
  const identity = await deviceIdentity(t.ctx, name, validitySeconds);
  return new ResumingChannelCredentials(Buffer.from(t.caPem), Buffer.from(identity.keyPem), Buffer.from(identity.certPem));
}

/** A new channel (a new TCP and TLS connection) on the given credentials, as the agent's reconnect is. */
function channel(address: string, credentials: grpc.ChannelCredentials): (method: string, request: Record<string, unknown>) => Promise<Record<string, unknown>> {
  const { Client } = loadDeviceService();
  const client = new Client(address, credentials, { 'grpc.use_local_subchannel_pool': 1 });
  opened.push(client);
  return (method, request) => {
    const fn = (client as unknown as Record<string, (req: unknown, options: grpc.CallOptions, cb: Callback) => void>)[method]!;
    return new Promise((resolve, reject) => fn.call(client, request, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res as Record<string, unknown>))));
  };
}

/** Waits for the server's ticket (TLS 1.3 sends it after the handshake) before the next connection. */
async function untilTicket(): Promise<void> {
  await new Promise((r) => setTimeout(r, 100));
}

describe('TLS session resumption on the device API', () => {
  it('resumes the session on a new connection, and the resumed connection is the same device', async () => {
    const creds = await resumingCredentials('resume-same');
    const first = channel(t.server.grpcAddress, creds);
    await first('Register', REGISTER_REQUEST);
    await untilTicket();
    const second = channel(t.server.grpcAddress, creds);
    expect(await second('Heartbeat', { installed: [] })).toMatchObject({ offboarded: false });
    expect(creds.handshakes).toEqual({ full: 1, resumed: 1 });

    // The identity is the certificate from the full handshake: decommissioning that device is
    // seen on the resumed connection, at its next call.
    await decommissionDevice(t.ctx, { fleet: 'lab', name: 'resume-same' });
    expect(await second('Heartbeat', { installed: [] })).toMatchObject({ offboarded: true });
    expect((await grpcError(second('Register', REGISTER_REQUEST))).code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('refuses calls on a resumed session whose certificate has expired since its full handshake', async () => {
    const creds = await resumingCredentials('resume-expired', 3);
    const first = channel(t.server.grpcAddress, creds);
    await first('Register', REGISTER_REQUEST);
    await untilTicket();
    await new Promise((r) => setTimeout(r, 4500));
    const late = channel(t.server.grpcAddress, creds);
    const refused = await grpcError(late('Heartbeat', { installed: [] }));
    // The ticket is still within its lifetime, so the handshake resumed; the call is refused.
    expect(creds.handshakes.resumed).toBe(1);
    expect(refused.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(refused.details).toContain('expired');
  });

  it('falls back to a full handshake when the ticket is forgotten', async () => {
    const creds = await resumingCredentials('resume-forgot');
    await channel(t.server.grpcAddress, creds)('Register', REGISTER_REQUEST);
    await untilTicket();
    creds.forgetSession();
    await channel(t.server.grpcAddress, creds)('Heartbeat', { installed: [] });
    expect(creds.handshakes).toEqual({ full: 2, resumed: 0 });
  });

  it('a restarted server on the same data dir resumes the tickets the previous one issued', async () => {
    const dataDir = tempDir();
    const start = (grpcListen: string) =>
      startServer({ dataDir, grpcListen, artifactListen: '127.0.0.1:0', enrollListen: '127.0.0.1:0', logger: silentLogger(), heartbeatIntervalSeconds: 15 });
    let server = await start('127.0.0.1:0');
    try {
      const ctx = await openDataDir({ dataDir });
      const device = await provisionDevice(ctx, { fleet: 'lab', name: 'resume-restart' });
      await ctx.close();
      const creds = new ResumingChannelCredentials(Buffer.from(device.caPem), Buffer.from(device.keyPem), Buffer.from(device.certPem));
      await channel(server.grpcAddress, creds)('Register', REGISTER_REQUEST);
      await untilTicket();
      const address = server.grpcAddress;
      await server.close();
      // A restart, like another replica, usually has other flags; Node derives its default
      // TLS session id context from the process's argv, which would refuse every ticket.
      process.argv.push('--restarted-with-other-flags');
      try {
        server = await start(address);
      } finally {
        process.argv.pop();
      }
      expect(await channel(address, creds)('Heartbeat', { installed: [] })).toMatchObject({ offboarded: false });
      expect(creds.handshakes).toEqual({ full: 1, resumed: 1 });
      const key = fs.statSync(path.join(dataDir, 'pki', 'session-ticket.key'));
      expect(key.mode & 0o777).toBe(0o600);
      expect(key.size).toBe(TICKET_KEY_BYTES);
    } finally {
      await server.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('the session ticket key', () => {
  const lock = <T>(fn: () => T | Promise<T>) => Promise.resolve(fn());

  it('is created once, private, and the same key is read back', async () => {
    const file = path.join(tempDir(), 'session-ticket.key');
    const created = await ensureSessionTicketKey(file, lock);
    expect(created.created).toBe(true);
    expect(created.key).toHaveLength(TICKET_KEY_BYTES);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const again = await ensureSessionTicketKey(file, lock);
    expect(again).toEqual({ key: created.key, created: false });
  });

  it('is kept however old it is (a new key would void every ticket at a restart), and replaced when the file is not a key', async () => {
    const file = path.join(tempDir(), 'session-ticket.key');
    const first = await ensureSessionTicketKey(file, lock);
    const old = new Date(Date.now() - 400 * 24 * 3600 * 1000);
    fs.utimesSync(file, old, old);
    expect(await ensureSessionTicketKey(file, lock)).toEqual({ key: first.key, created: false });

    fs.writeFileSync(file, 'short');
    const replaced = await ensureSessionTicketKey(file, lock);
    expect(replaced.created).toBe(true);
    expect(fs.readFileSync(file)).toHaveLength(TICKET_KEY_BYTES);
  });
});
