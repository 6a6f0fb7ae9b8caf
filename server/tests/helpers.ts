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
import { openDataDir, type MeshanicsContext } from '../src/config/data-dir.js';
import { provisionDevice, type DeviceCredentials } from '../src/fleet/devices.js';
import { generateDeviceCa, issueDeviceCertificate, loadDeviceCa, writeDeviceCaIfMissing } from '../src/pki/index.js';
import { silentLogger } from '../src/observability/log.js';
// engines.ts imports tempDir from here: a cycle, harmless (neither uses the other at load time).
import { freshPostgresDatabase } from './engines.js';
import { startServer, type RunningServer, type StartServerOptions } from '../src/server.js';
import { x509 } from '../src/pki/x509.js';

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
  /** What else opening this data dir needs (the PostgreSQL URL under MESHANICS_TEST_SERVER_DATABASE). */
  database: { databaseUrl?: string };
  close(): Promise<void>;
}

/**
 * MESHANICS_TEST_SERVER_DATABASE=postgres runs every test server (and its second handle) on a
 * fresh PostgreSQL database instead of SQLite: an opt-in sweep of the whole server suite over
 * the other engine (tests that open the SQLite file directly do not apply then).
 */
async function testServerDatabase(): Promise<{ databaseUrl?: string }> {
  if (process.env.MESHANICS_TEST_SERVER_DATABASE !== 'postgres') return {};
  return { databaseUrl: await freshPostgresDatabase() };
}

export async function startTestServer(options: Partial<Omit<StartServerOptions, 'dataDir'>> = {}): Promise<TestServer> {
  const dataDir = tempDir();
  const database = options.databaseUrl !== undefined ? { databaseUrl: options.databaseUrl } : await testServerDatabase();
  const server = await startServer({
    dataDir,
    grpcListen: '127.0.0.1:0',
    artifactListen: '127.0.0.1:0',
    enrollListen: '127.0.0.1:0',
    logger: silentLogger(),
    heartbeatIntervalSeconds: 15,
    ...database,
    ...options,
  });
  const ctx = await openDataDir({ dataDir, ...database });
  return {
    server,
    dataDir,
    ctx,
    database,
    close: async () => {
      await ctx.close();
      await server.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The Register request of a device that says nothing about its hardware, tags or capabilities. */
export const REGISTER_REQUEST = { hardware: null, agentVersion: '1.0.0', tags: {}, capabilities: [] };

export interface DeviceTestServer extends TestServer {
  /** The device CA: what an enrolling device trusts, and what its gRPC clients verify the server with. */
  caPem: string;
  /** A gRPC client over mTLS with this identity, closed by close(). */
  client(identity: { keyPem: string; certPem: string }): DeviceClient;
}

/** startTestServer for the tests that enroll devices and then call as them. */
export async function startDeviceTestServer(options: Partial<Omit<StartServerOptions, 'dataDir'>> = {}): Promise<DeviceTestServer> {
  const t = await startTestServer(options);
  const caPem = fs.readFileSync(t.ctx.layout.caCertFile, 'utf8');
  const clients: DeviceClient[] = [];
  return {
    ...t,
    caPem,
    client(identity) {
      const c = new DeviceClient(t.server.grpcAddress, { ...identity, caPem });
      clients.push(c);
      return c;
    },
    close: async () => {
      for (const c of clients.splice(0)) c.close();
      await t.close();
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

/** A fresh key and a certificate for device `lab/NAME` from the data dir's CA (optionally short-lived). */
export async function deviceIdentity(ctx: MeshanicsContext, name: string, validitySeconds?: number): Promise<{ keyPem: string; certPem: string }> {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = await issueDeviceCertificate(
    await ctx.deviceCa(),
    publicKey,
    { trustDomain: ctx.trustDomain, fleet: 'lab', name },
    validitySeconds ? { seconds: validitySeconds } : {},
  );
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
    this.raw = new Client(address, grpc.credentials.createSsl(Buffer.from(identity.caPem), Buffer.from(identity.keyPem), Buffer.from(identity.certPem)));
  }

  call<T = Record<string, unknown>>(method: string, request: Record<string, unknown>, { deadlineMs = 5000 } = {}): Promise<T> {
    const fn = (this.raw as unknown as Record<string, (req: unknown, options: grpc.CallOptions, cb: Callback) => void>)[method]!;
    return new Promise((resolve, reject) => fn.call(this.raw, request, { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res as T))));
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

export function httpsGet(baseUrl: string, rawPath: string, tls: Partial<TlsIdentity> & { caPem: string }, headers: Record<string, string> = {}): Promise<HttpResult> {
  return httpsRequest('GET', baseUrl, rawPath, tls, headers);
}

export function httpsRequest(
  method: string,
  baseUrl: string,
  rawPath: string,
  tls: Partial<TlsIdentity> & { caPem: string },
  headers: Record<string, string> = {},
  body?: Buffer | string,
): Promise<HttpResult> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: url.hostname,
        port: url.port,
        // Passed verbatim: Node's client does not normalize "..", so traversal reaches the server.
        path: rawPath,
        method,
        headers: body === undefined ? headers : { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)), ...headers },
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
    req.end(body);
  });
}

/** POSTs JSON to the enrollment endpoint and parses the JSON answer. */
export async function postJson<T = Record<string, unknown>>(
  baseUrl: string,
  rawPath: string,
  body: unknown,
  tls: Partial<TlsIdentity> & { caPem: string },
): Promise<{ status: number; json: T }> {
  const res = await httpsRequest('POST', baseUrl, rawPath, tls, {}, JSON.stringify(body));
  return { status: res.status, json: JSON.parse(res.body.toString('utf8')) as T };
}

export type TestKeyType = 'p256' | 'p384' | 'ed25519' | 'rsa';

const KEY_ALGORITHMS: Record<TestKeyType, { generate: Record<string, unknown>; sign: Record<string, unknown> }> = {
  p256: { generate: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } },
  p384: { generate: { name: 'ECDSA', namedCurve: 'P-384' }, sign: { name: 'ECDSA', hash: 'SHA-384' } },
  ed25519: { generate: { name: 'Ed25519' }, sign: { name: 'Ed25519' } },
  rsa: {
    generate: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    sign: { name: 'RSASSA-PKCS1-v1_5' },
  },
};

export interface DeviceKeyAndCsr {
  /** PKCS#8 PEM: stays with the "device" (the test). */
  keyPem: string;
  /** DER SubjectPublicKeyInfo. */
  spki: Buffer;
  csrPem: string;
}

/** A fresh key pair and a PKCS#10 CSR signed with it, as an agent makes them (@peculiar/x509). */
export async function makeCsr(type: TestKeyType = 'p256', subject = 'CN=device'): Promise<DeviceKeyAndCsr> {
  const alg = KEY_ALGORITHMS[type];
  const keys = await crypto.webcrypto.subtle.generateKey(alg.generate as never, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: subject, keys, signingAlgorithm: alg.sign as never });
  const pkcs8 = Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const spki = Buffer.from(await crypto.webcrypto.subtle.exportKey('spki', keys.publicKey));
  return { keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'), spki, csrPem: csr.toString('pem') };
}

/** The same CSR with another (same-size) public key swapped in: its signature no longer matches its key. */
export function swapCsrPublicKey(csr: DeviceKeyAndCsr, other: DeviceKeyAndCsr): string {
  const der = Buffer.from(new x509.Pkcs10CertificateRequest(csr.csrPem).rawData);
  const at = der.indexOf(csr.spki);
  if (at < 0 || other.spki.length !== csr.spki.length) throw new Error('cannot swap keys of different sizes');
  other.spki.copy(der, at);
  return x509.PemConverter.encode(der, 'CERTIFICATE REQUEST');
}

/** The same CSR with one bit of its signature flipped. */
export function corruptCsrSignature(csrPem: string): string {
  const der = Buffer.from(new x509.Pkcs10CertificateRequest(csrPem).rawData);
  der[der.length - 1]! ^= 0x01;
  return x509.PemConverter.encode(der, 'CERTIFICATE REQUEST');
}

/** A tuf-js fetcher that presents the device's client certificate, as the agent must. */
export class MtlsFetcher extends BaseFetcher {
  constructor(private readonly tls: TlsIdentity) {
    super();
  }

  override fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    return new Promise((resolve, reject) => {
      const req = https.get(url, { ca: this.tls.caPem, key: this.tls.keyPem, cert: this.tls.certPem, agent: false, timeout: 5000 }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          // tuf-js needs DownloadHTTPError on 403/404 to know a newer root does not exist.
          reject(new DownloadHTTPError(`GET ${url}: HTTP ${res.statusCode}`, res.statusCode ?? 0));
          return;
        }
        resolve(Readable.toWeb(res));
      });
      req.on('error', reject);
    });
  }
}

/**
 * A plain grpc-js device client (no agent code) on `port` with the device's own mTLS
 * credentials, for tests of the bare TLS listener: Register with an empty request.
 */
export function bareRegisterClient(port: number, caPem: string, creds: DeviceCredentials): { register(): Promise<void>; close(): void } {
  const { Client } = loadDeviceService();
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(caPem), Buffer.from(creds.keyPem), Buffer.from(creds.certPem))) as unknown as {
    register(req: object, cb: (err: Error | null) => void): void;
    close(): void;
  };
  return {
    register: () => new Promise<void>((resolve, reject) => client.register({}, (err) => (err ? reject(err) : resolve()))),
    close: () => client.close(),
  };
}

/** The unlabelled samples `names` from a server's /metrics, read in one scrape; NaN for one it does not show. */
export async function unlabelledMetrics<N extends string>(apiUrl: string, names: readonly N[]): Promise<Record<N, number>> {
  const text = await (await fetch(`${apiUrl}/metrics`)).text();
  const values = {} as Record<N, number>;
  for (const name of names) {
    const m = new RegExp(`^${name} ([\\d.e+-]+)$`, 'm').exec(text);
    values[name] = m ? Number(m[1]) : NaN;
  }
  return values;
}
