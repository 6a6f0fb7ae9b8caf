// Scaffolding of the REST API tests: keys, an inject client, simulated devices over real mTLS gRPC.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createApiKey } from '../src/api/keys.js';
import { publishArtifact } from '../src/catalog/publish.js';
import type { MeshanicsContext } from '../src/config/data-dir.js';
import { DeviceClient, provision, tempDir, type TestServer } from './helpers.js';

export const ALL_PERMISSIONS = ['devices.manage', 'artifacts.manage', 'rollouts.manage', 'enrollment.manage', 'audit.manage', 'logs.manage'];

let keyCounter = 0;

/** A fresh key (unique name) with these permissions; returns the secret. */
export async function key(ctx: MeshanicsContext, permissions: string[], options: { fleet?: string; approve?: boolean; name?: string } = {}): Promise<string> {
  keyCounter += 1;
  return (
    await createApiKey(ctx, {
      name: options.name ?? `test-key-${keyCounter}`,
      fleet: options.fleet ?? '*',
      permissions,
      approve: options.approve ?? false,
      actor: 'operator:test',
    })
  ).key;
}

export interface ApiResult<T = any> {
  status: number;
  json: T;
  body: string;
  headers: Record<string, unknown>;
}

/** One request through `inject`; the key goes in the Authorization header. */
export async function call<T = any>(
  app: FastifyInstance,
  method: string,
  url: string,
  options: { key?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<ApiResult<T>> {
  const res = await app.inject({
    method: method as 'GET',
    url,
    headers: { ...(options.key !== undefined ? { authorization: `Bearer ${options.key}` } : {}), ...options.headers },
    ...(options.body !== undefined ? { payload: options.body as object } : {}),
  });
  let json: unknown;
  try {
    json = JSON.parse(res.body);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, json: json as T, body: res.body, headers: res.headers };
}

export interface WireAssignment {
  assignmentId: string;
  rolloutId: string;
  name: string;
  version: string;
}

/** A device as the server sees an agent: register, heartbeat, report. */
export class SimDevice {
  seq = 0;
  constructor(
    readonly fleet: string,
    readonly name: string,
    readonly client: DeviceClient,
  ) {}

  async heartbeat(): Promise<{ assignments: WireAssignment[]; logRequests: Array<{ logRequestId: string }> }> {
    return this.client.call('Heartbeat', { installed: [] });
  }

  report(assignmentId: string, state: string, reason = ''): Promise<{ accepted: boolean }> {
    return this.client.call('ReportArtifactStatus', {
      assignmentId,
      state,
      sequence: ++this.seq,
      reason,
      bytesDone: 0,
      bytesTotal: 0,
      deviceTime: new Date().toISOString(),
    });
  }

  async run(assignmentId: string, outcome: 'HEALTHY' | 'FAILED'): Promise<void> {
    await this.report(assignmentId, 'DOWNLOADING');
    if (outcome === 'FAILED') {
      await this.report(assignmentId, 'FAILED', 'could not download');
      return;
    }
    await this.report(assignmentId, 'VERIFYING');
    await this.report(assignmentId, 'APPLYING');
    await this.report(assignmentId, 'HEALTHY', 'probe ok');
  }
}

const clients: DeviceClient[] = [];

export function closeDeviceClients(): void {
  for (const c of clients.splice(0)) c.close();
}

/** Provisions and registers real devices (certificates from the device CA, mTLS gRPC). */
export async function simDevices(t: TestServer, fleet: string, names: string[], tags: Record<string, string> = {}): Promise<SimDevice[]> {
  return Promise.all(
    names.map(async (name) => {
      const creds = await provision(t.ctx, fleet, name);
      const client = new DeviceClient(t.server.grpcAddress, creds);
      clients.push(client);
      await client.call('Register', {
        hardware: { model: 'rpi5', soc: 'bcm2712', arch: 'arm64', cpuCores: 4, memoryBytes: 8 << 30, accelerators: [], os: 'debian', kernel: '6.6' },
        agentVersion: '1.2.3',
        tags,
        capabilities: [{ kind: 'ARTIFACT', name: 'model', version: '0.1.0' }],
      });
      return new SimDevice(fleet, name, client);
    }),
  );
}

export async function publishModel(ctx: MeshanicsContext, name: string, version: string) {
  const file = path.join(tempDir(), `${name}-${version}`);
  fs.writeFileSync(file, crypto.randomBytes(512));
  return publishArtifact(ctx, { file, name, version, kind: 'model', spec: {} });
}

export const FILE_PROBE = { type: 'file', spec: { path: '/run/ready' }, timeoutSeconds: 5, attempts: 2, initialDelaySeconds: 0 };

/** Parses a text/event-stream body into `{ event, data }` messages. */
export async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string; data: any }> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const lines = block.split('\n');
      const event = lines.find((l) => l.startsWith('event: '))?.slice(7);
      const data = lines.find((l) => l.startsWith('data: '))?.slice(6);
      if (event && data) yield { event, data: JSON.parse(data) };
    }
  }
}
