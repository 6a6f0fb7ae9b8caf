// What a load balancer and a monitoring system see: /healthz, /readyz (database reachable,
// CA and online TUF keys loaded), Prometheus /metrics, and heartbeat liveness written in batches (within the
// flush interval, and on shutdown). Real server, real gRPC over mTLS, real HTTP.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataDir } from '../src/config/data-dir.js';
import { startServer, type RunningServer } from '../src/server.js';
import { silentLogger } from '../src/observability/log.js';
import { DeviceClient, provision, REGISTER_REQUEST, tempDir } from './helpers.js';

async function lastSeenAt(dataDir: string, name: string): Promise<string | null> {
  const ctx = await openDataDir({ dataDir });
  try {
    return (await ctx.store.getDeviceByName('lab', name))?.lastSeenAt ?? null;
  } finally {
    await ctx.close();
  }
}

async function get(url: string): Promise<{ status: number; text: string; type: string }> {
  const res = await fetch(url);
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') ?? '' };
}

/**
 * A server with its REST port open and one provisioned device connected over mTLS. Not
 * startTestServer: these tests open the data dir themselves (no second handle) and set the
 * last-seen flush interval each.
 */
async function serverWithDevice(name: string, lastSeenFlushMs: number): Promise<{ dataDir: string; server: RunningServer; client: DeviceClient }> {
  const dataDir = tempDir();
  const server = await startServer({
    dataDir,
    grpcListen: '127.0.0.1:0',
    artifactListen: '127.0.0.1:0',
    enrollListen: '127.0.0.1:0',
    apiListen: '127.0.0.1:0',
    logger: silentLogger(),
    lastSeenFlushMs,
  });
  const ctx = await openDataDir({ dataDir });
  const creds = await provision(ctx, 'lab', name);
  await ctx.close();
  return { dataDir, server, client: new DeviceClient(server.grpcAddress, creds) };
}

describe('operability', () => {
  it('answers /healthz and /readyz, exports Prometheus metrics, and batches heartbeat liveness within the flush interval', async () => {
    const { dataDir, server, client } = await serverWithDevice('ops-1', 300);
    try {
      expect(await get(`${server.apiUrl}/healthz`)).toMatchObject({ status: 200 });
      const ready = await get(`${server.apiUrl}/readyz`);
      expect(ready.status).toBe(200);
      expect(JSON.parse(ready.text)).toMatchObject({ status: 'ready' });
      // Without the online timestamp key this replica cannot re-sign: not ready (503).
      const key = path.join(dataDir, 'tuf', 'keys', 'timestamp.pem');
      fs.renameSync(key, `${key}.away`);
      const unready = await get(`${server.apiUrl}/readyz`);
      fs.renameSync(`${key}.away`, key);
      expect(unready.status).toBe(503);
      expect(JSON.parse(unready.text).error).toMatch(/online TUF keys timestamp are missing/);
      expect((await get(`${server.apiUrl}/readyz`)).status).toBe(200);

      await client.call('Register', REGISTER_REQUEST);
      const registered = await lastSeenAt(dataDir, 'ops-1');
      await new Promise((r) => setTimeout(r, 20));
      await client.call('Heartbeat', { installed: [] });
      await client.call('Heartbeat', { installed: [] });
      // Written by the batch, not by the call: within the flush interval (300 ms here).
      let seen = registered;
      for (let i = 0; i < 40 && seen === registered; i++) {
        await new Promise((r) => setTimeout(r, 50));
        seen = await lastSeenAt(dataDir, 'ops-1');
      }
      expect(seen).not.toBe(registered);
      expect(Date.parse(seen!)).toBeGreaterThan(Date.parse(registered!));

      await client.call('ReportArtifactStatus', { assignmentId: 'nope', state: 'DOWNLOADING', sequence: 1 }).catch(() => undefined);
      const metrics = await get(`${server.apiUrl}/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.type).toMatch(/^text\/plain/);
      expect(metrics.text).toMatch(/^meshanics_heartbeats_total 2$/m);
      // Each heartbeat timed once, under where its answer came from; the first one read the database.
      const timed = [...metrics.text.matchAll(/^meshanics_heartbeat_seconds_count\{answer="(\w+)",installed="(\w+)"\} (\d+)$/gm)];
      expect(timed.reduce((n, m) => n + Number(m[3]), 0)).toBe(2);
      expect(timed.filter((m) => m[1] === 'database').reduce((n, m) => n + Number(m[3]), 0)).toBeGreaterThanOrEqual(1);
      expect(metrics.text).toMatch(/^meshanics_grpc_errors_total\{method="ReportArtifactStatus",code="NOT_FOUND"\} 1$/m);
      expect(metrics.text).toMatch(/^meshanics_rollouts\{status="running"\} 0$/m);
      expect(metrics.text).toMatch(/^meshanics_devices 1$/m);
      expect(metrics.text).toMatch(/^meshanics_database_seconds_count\{operation="query"\} [1-9]\d*$/m);
      expect(metrics.text).toMatch(/^meshanics_database_seconds_count\{operation="transaction"\} [1-9]\d*$/m);
    } finally {
      client.close();
      await server.close();
    }
  });

  it('writes the pending last-seen batch on shutdown, then closes the REST port', async () => {
    // Never flushed by the timer during this test: only shutdown can write it.
    const { dataDir, server, client } = await serverWithDevice('ops-2', 60_000);
    await client.call('Register', REGISTER_REQUEST);
    const registered = await lastSeenAt(dataDir, 'ops-2');
    await new Promise((r) => setTimeout(r, 20));
    await client.call('Heartbeat', { installed: [] });
    expect(await lastSeenAt(dataDir, 'ops-2')).toBe(registered);

    await server.close();
    client.close();
    const flushed = await lastSeenAt(dataDir, 'ops-2');
    expect(Date.parse(flushed!)).toBeGreaterThan(Date.parse(registered!));
    // The REST port is closed: nothing answers any more.
    await expect(fetch(`${server.apiUrl}/healthz`)).rejects.toThrow();
  });
});
