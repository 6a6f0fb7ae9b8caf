// Shared test scaffolding: real data dirs in temp dirs, real mTLS clients.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { BaseFetcher } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { afterAll } from 'vitest';
import { loadDeviceService } from '@meshanics/core/contract';
import { openDataDir, type MeshanicsContext } from '../src/data-dir.js';
import { provisionDevice, type DeviceCredentials } from '../src/devices.js';
import { generateDeviceCa, issueDeviceCertificate, loadDeviceCa, writeDeviceCaIfMissing } from '../src/pki/index.js';
import { silentLogger } from '../src/log.js';
import { startServer, type RunningServer } from '../src/server.js';

const createdDirs: string[] = [];
// Registered on the importing test file (each file gets its own copy of this module).
afterAll(() => {
  for (const dir of createdDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory, removed after the importing test file's tests. */
export function tempDir(prefix = 'meshanics-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  createdDirs.push(dir);
  return dir;
}

export interface TestServer {
  server: RunningServer;
  dataDir: string;
  /** A second handle on the data dir, as a CLI process would have while `serve` runs. */
  ctx: MeshanicsContext;
  close(): Promise<void>;
}

export async function startTestServer(options: { trustDomain?: string } = {}): Promise<TestServer> {
  const dataDir = tempDir();
  const server = await startServer({
    dataDir,
    grpcListen: '127.0.0.1:0',
    artifactListen: '127.0.0.1:0',
    logger: silentLogger(),
    heartbeatIntervalSeconds: 15,
    ...options,
  });
  const ctx = openDataDir({ dataDir });
  return {
    server,
    dataDir,
    ctx,
    close: async () => {
      ctx.close();
      await server.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function provision(ctx: MeshanicsContext, fleet: string, name: string): Promise<DeviceCredentials> {
  return provisionDevice(ctx, { fleet, name });
}

/** A key and certificate naming a real device of ours, but issued by an unrelated CA. */
export async function certificateFromAnotherCa(name: string, fleet = 'lab'): Promise<{ keyPem: string; certPem: string }> {
  const dir = tempDir();
  const files = { keyFile: path.join(dir, 'ca.key'), certFile: path.join(dir, 'ca.crt') };
  writeDeviceCaIfMissing(files, await generateDeviceCa('meshanics.local'));
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = await issueDeviceCertificate(await loadDeviceCa(files), publicKey, { trustDomain: 'meshanics.local', fleet, name });
  return { certPem: issued.certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

export interface TlsIdentity {
  keyPem: string;
  certPem: string;
  caPem: string;
}

type Callback = (err: grpc.ServiceError | null, res: unknown) => void;

export class DeviceClient {
  readonly raw: grpc.Client;

  constructor(address: string, identity: TlsIdentity) {
    const { Client } = loadDeviceService();
    this.raw = new Client(
      address,
      grpc.credentials.createSsl(Buffer.from(identity.caPem), Buffer.from(identity.keyPem), Buffer.from(identity.certPem)),
    );
  }

  call<T = Record<string, unknown>>(method: string, request: Record<string, unknown>): Promise<T> {
    const fn = (this.raw as unknown as Record<string, (req: unknown, options: grpc.CallOptions, cb: Callback) => void>)[method]!;
    return new Promise((resolve, reject) =>
      fn.call(this.raw, request, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res as T))),
    );
  }

  close(): void {
    this.raw.close();
  }
}

/** Resolves to the gRPC error a call fails with (or throws if it succeeds). */
export async function grpcError(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('expected the call to fail');
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export function httpsGet(
  baseUrl: string,
  rawPath: string,
  tls: Partial<TlsIdentity> & { caPem: string },
  headers: Record<string, string> = {},
): Promise<HttpResult> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: url.hostname,
        port: url.port,
        // Passed verbatim: Node's client does not normalize "..", so traversal reaches the server.
        path: rawPath,
        method: 'GET',
        headers,
        ca: tls.caPem,
        ...(tls.keyPem ? { key: tls.keyPem } : {}),
        ...(tls.certPem ? { cert: tls.certPem } : {}),
        agent: false,
        timeout: 5000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/** A tuf-js fetcher that presents the device's client certificate, as the agent must. */
export class MtlsFetcher extends BaseFetcher {
  constructor(private readonly tls: TlsIdentity) {
    super();
  }

  override fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    return new Promise((resolve, reject) => {
      const req = https.get(
        url,
        { ca: this.tls.caPem, key: this.tls.keyPem, cert: this.tls.certPem, agent: false, timeout: 5000 },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            // tuf-js needs DownloadHTTPError on 403/404 to know a newer root does not exist.
            reject(new DownloadHTTPError(`GET ${url}: HTTP ${res.statusCode}`, res.statusCode ?? 0));
            return;
          }
          resolve(Readable.toWeb(res) as unknown as ReadableStream<Uint8Array<ArrayBuffer>>);
        },
      );
      req.on('error', reject);
    });
  }
}
