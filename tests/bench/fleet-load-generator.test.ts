// The fleet bench's load generator at 50,000 devices (issue 30, "a lean load generator"): its
// node:http2 device channel speaks the device API to the real server over mTLS as grpc-js
// does (same answers, gRPC errors with their status codes), and the sizing refuses a fleet
// that will not fit in memory before anything is provisioned.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir, provisionDevice, type DeviceCredentials } from '@meshanics/server';
import { startServer, type Child } from '../../scripts/lib/processes.mjs';
import { REGISTER_REQUEST, openDeviceChannel, unary, waitReady } from '../../bench/lib/device.mjs';
import { clientProcesses, devicesPerReplica, devicesPerServerProcess, memoryNeed, preflight } from '../../bench/lib/fleet-size.mjs';

const GiB = 1024 ** 3;

describe('fleet load generator sizing', () => {
  it('derives the process count from the size unless it is set', () => {
    expect(clientProcesses({ devices: 50_000 })).toBe(20);
    expect(clientProcesses({ devices: 10_000 })).toBe(4);
    expect(clientProcesses({ devices: 50_000, clientProcesses: 8 })).toBe(8);
    expect(clientProcesses({ devices: 3 })).toBe(1);
  });

  it('refuses a fleet that does not fit in the available memory, with the size that would', () => {
    const cfg = { devices: 50_000, channel: 'agent' };
    expect(() => preflight(cfg, 8 * GiB, Infinity)).toThrow(/50000 devices \(agent channels\).*about \d+ devices fit/);
    expect(preflight({ devices: 50_000, channel: 'http2' }, 20 * GiB, Infinity).total).toBeLessThan(0.9 * 20 * GiB);
    expect(preflight({ ...cfg, memoryCheck: false }, 1 * GiB, 100).total).toBe(memoryNeed(cfg).total);
    expect(() => preflight({ devices: 10, channel: 'quic' }, 20 * GiB, Infinity)).toThrow(/fleet.channel must be one of/);
    expect(() => preflight({ devices: 20_000, channel: 'http2' }, 20 * GiB, 20_000)).toThrow(/limit on open files is 20000/);
    expect(preflight({ devices: 20_000, channel: 'http2' }, 20 * GiB, 65_536).total).toBeGreaterThan(0);
    // The open-files limit is per process: two replicas hold half the sockets each.
    expect(preflight({ devices: 36_000, channel: 'http2', replicas: 2, clientProcesses: 16 }, 20 * GiB, 20_000).total).toBeGreaterThan(0);
    expect(() => preflight({ devices: 40_000, channel: 'http2', replicas: 2 }, 20 * GiB, 20_000)).toThrow(/over 2 server processes need 20000 sockets in each/);
    // 15 processes of 2,400 over two replicas: 8 of them (19,200 devices) on the first.
    expect(devicesPerReplica({ devices: 36_000, replicas: 2 })).toBe(19_200);
    expect(devicesPerReplica({ devices: 36_000, replicas: 2, clientProcesses: 16 })).toBe(18_000);
    // serve --workers: one replica's share over its workers, each a process with its own limit.
    expect(devicesPerServerProcess({ devices: 50_000, workers: 3 })).toBe(17_000);
    expect(preflight({ devices: 50_000, channel: 'http2', workers: 3 }, 24 * GiB, 20_000).total).toBeGreaterThan(0);
    expect(() => preflight({ devices: 50_000, channel: 'http2', workers: 2 }, 24 * GiB, 20_000)).toThrow(/over 2 server processes need 25500 sockets in each/);
  });
});

describe('the node:http2 device channel against the real server', () => {
  let root: string;
  let server: Child;
  let creds: DeviceCredentials;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fleet-lg-'));
    const dataDir = path.join(root, 'server');
    const ctx = await initDataDir({ dataDir });
    try {
      creds = await provisionDevice(ctx, { fleet: 'lg', name: 'dev-1', actor: 'test' });
    } finally {
      await ctx.close();
    }
    server = await startServer(dataDir, { heartbeatSeconds: 7 });
  });

  afterAll(async () => {
    await server?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('registers and heartbeats with the device certificate, as the grpc-js channel does', async () => {
    for (const kind of ['http2', 'agent']) {
      const client = openDeviceChannel(server.grpc, { caPem: creds.caPem, keyPem: creds.keyPem, certPem: creds.certPem }, { kind });
      try {
        await waitReady(client, 20_000);
        const registered = await unary(client, 'register', REGISTER_REQUEST);
        expect(registered.deviceName, kind).toBe('dev-1');
        const beat = await unary(client, 'heartbeat', { installed: [] });
        expect(beat.nextHeartbeatSeconds, kind).toBe(7);
        expect(beat.assignments, kind).toEqual([]);
      } finally {
        client.close();
      }
    }
  });

  it('reports a gRPC error with its status code, as grpc-js does', async () => {
    const codes: number[] = [];
    for (const kind of ['http2', 'agent']) {
      const client = openDeviceChannel(server.grpc, { caPem: creds.caPem, keyPem: creds.keyPem, certPem: creds.certPem }, { kind });
      try {
        const request = { assignmentId: 'no-such-assignment', state: 'DOWNLOADING', sequence: 1, reason: '', bytesDone: 0, bytesTotal: 0, deviceTime: new Date().toISOString() };
        const err = await unary(client, 'reportArtifactStatus', request).then(
          () => undefined,
          (e: { code: number }) => e,
        );
        expect(err, kind).toBeDefined();
        codes.push(err!.code);
      } finally {
        client.close();
      }
    }
    expect(codes[0]).toBeGreaterThan(0);
    expect(codes[0]).toBe(codes[1]);
  });
});
