// Drain with a device call in flight (issue 29): the real `meshanics-server serve` process gets
// SIGTERM while a device is half-way through an UploadLogs stream. The stream it already
// started is allowed to finish (and its bundle is stored), new calls are refused (on the
// same connection and on a new one), and the process exits 0.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { serverCli, startServer, type Child } from '../../scripts/lib/processes.mjs';
import { DeviceClient, tempDir } from './helpers.js';

interface Chunk {
  logRequestId?: string;
  data: Buffer;
}

let server: Child | undefined;
const clients: DeviceClient[] = [];
afterAll(async () => {
  for (const c of clients) c.close();
  await server?.stop('SIGKILL');
});

function client(address: string, certDir: string): DeviceClient {
  const read = (f: string) => fs.readFileSync(path.join(certDir, f), 'utf8');
  const c = new DeviceClient(address, { keyPem: read('device.key'), certPem: read('device.crt'), caPem: read('ca.crt') });
  clients.push(c);
  return c;
}

async function refusal(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call succeeded after SIGTERM');
}

describe('serve drains on SIGTERM', () => {
  it('lets a device call in flight finish, refuses new ones, and exits 0', async () => {
    const dataDir = path.join(tempDir(), 'server');
    const certDir = path.join(tempDir(), 'creds');
    server = await startServer(dataDir);
    await serverCli(dataDir, ['device', 'issue-cert', '--fleet', 'lab', '--name', 'drain-1', '--out', certDir]);
    const device = client(server.grpc, certDir);
    await device.call('Register', { hardware: null, agentVersion: '1', tags: {}, capabilities: [] });
    const { logRequestId } = await serverCli(dataDir, ['logs', 'request', '--fleet', 'lab', '--device', 'drain-1']);

    const gzip = zlib.gzipSync(Buffer.from(Array.from({ length: 4000 }, (_, i) => `{"MESSAGE":"line ${i}"}`).join('\n')));
    const half = Math.floor(gzip.length / 2);
    let stream!: grpc.ClientWritableStream<Chunk>;
    const uploaded = new Promise<{ bytesReceived: number } | grpc.ServiceError>((resolve) => {
      const raw = device.raw as unknown as {
        UploadLogs: (o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: { bytesReceived: number }) => void) => grpc.ClientWritableStream<Chunk>;
      };
      stream = raw.UploadLogs({ deadline: Date.now() + 20_000 }, (err, res) => resolve(err ?? res!));
    });
    stream.write({ logRequestId, data: gzip.subarray(0, half) });
    // A call on the same connection answered after the first chunk was sent: the server has
    // the upload's stream open (HTTP/2 frames of one connection are read in order).
    await device.call('Heartbeat', { installed: [] });

    server.proc.kill('SIGTERM');
    await server.waitForLine((l: { msg?: string }) => l?.msg === 'shutting down');
    // New calls are refused: on the connection the upload uses, and on a new one.
    const sameConnection = await refusal(device.call('Heartbeat', { installed: [] }));
    const newConnection = await refusal(client(server.grpc, certDir).call('Heartbeat', { installed: [] }));
    for (const err of [sameConnection, newConnection]) expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(server.proc.exitCode).toBeNull();

    // The call in flight completes after the signal and is stored whole.
    stream.write({ data: gzip.subarray(half) });
    stream.end();
    expect(await uploaded).toEqual({ bytesReceived: gzip.length });
    expect(await server.exit).toEqual({ code: 0, signal: null });
    server = undefined;
    const [stored] = await serverCli(dataDir, ['logs', 'ls', '--fleet', 'lab']).then((r: unknown) => (Array.isArray(r) ? r : (r as { logRequests: unknown[] }).logRequests));
    expect(stored).toMatchObject({ logRequestId, status: 'fulfilled', sizeBytes: gzip.length });
  }, 60_000);
});
