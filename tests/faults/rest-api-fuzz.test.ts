// Schema-driven random requests against every route of the operator REST API
// (`meshanics-server serve --api-listen`, docs/operator-api.md). The routes and their
// schemas come from the server's own OpenAPI document; for each operation the fuzzer sends
// seeded requests: path and query values (real names the server knows, random ones, hostile
// strings), bodies shaped by the route's schema and then broken (missing or extra fields,
// wrong types, deep nesting, truncated JSON, prototype keys, a body over the size limit, a
// wrong content type), random multipart uploads, and requests with no or a bogus API key.
// The server must answer every one with a 2xx or a 4xx `{ "error": ... }`, never a 5xx;
// stay up; and keep its memory bounded.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverCli, startServer, type Child } from '../../scripts/lib/processes.mjs';
import { LONG, baseSeed, prng, recordResults, rssKiB } from './fixtures/fault-lib.mjs';
import { HOSTILE_STRINGS, generate, mutate, rng } from './fixtures/schema-fuzz.mjs';

const SEED = baseSeed();
const PER_OPERATION = LONG ? 300 : 30;

let root: string;
let serverDir: string;
let server: Child;
let api: string;
let key: string;
const results: Record<string, unknown> = {};

/**
 * A request with a string body over node:http: the answer is read even when the server
 * answers early (413) and drops the connection while the body is still being sent, which
 * fetch reports as a network failure.
 */
function send(url: string, method: string, headers: Record<string, string>, body: string | undefined): Promise<{ status: number; text: string; contentType: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, timeout: 5000, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const contentType = String(res.headers['content-type'] ?? '');
      if (contentType.includes('text/event-stream')) {
        res.destroy();
        resolve({ status: res.statusCode ?? 0, text: '', contentType });
        return;
      }
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString(), contentType }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { name: 'TimeoutError' })));
    req.on('error', (err) => reject(err));
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

interface Operation {
  method: string;
  path: string;
  parameters: Array<{ in: string; name: string; schema?: Record<string, unknown>; required?: boolean }>;
  body?: { contentType: string; schema: Record<string, unknown> };
  public: boolean;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-rest-fuzz-'));
  serverDir = path.join(root, 'server');
  // Every bogus key comes from 127.0.0.1: a high failure limit keeps the rate limit of
  // failed keys (429) from answering the rest of the run.
  server = await startServer(serverDir, { extraArgs: ['--api-listen', '127.0.0.1:0', '--api-auth-max-failures', '1000000'] });
  api = server.api; // startServer keeps the address its 'server listening' line gave
  expect(api).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  const created = await serverCli(serverDir, [
    'apikey',
    'create',
    '--name',
    'fuzzer',
    '--fleet',
    '*',
    '--approve',
    '--permissions',
    'devices.manage,artifacts.manage,rollouts.manage,enrollment.manage,audit.manage,logs.manage',
  ]);
  key = JSON.stringify(created).match(/mesh_key_[A-Za-z0-9_-]+/)![0];
  // Something real to hit: a device, an artifact, a group.
  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'faults', '--name', 'edge-1', '--out', path.join(root, 'creds')]);
  const file = path.join(root, 'model.bin');
  await writeFile(file, randomBytes(2048));
  await serverCli(serverDir, ['artifact', 'publish', file, '--name', 'detector', '--version', '1.0.0', '--kind', 'model']);
  await serverCli(serverDir, ['group', 'create', '--fleet', 'faults', '--name', 'canary', '--devices', 'edge-1']);
}, 90_000);

afterAll(async () => {
  recordResults('rest-api-fuzz', results);
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

function operations(doc: { paths: Record<string, Record<string, any>> }): Operation[] {
  const ops: Operation[] = [];
  for (const [p, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const content = op.requestBody?.content ?? {};
      const contentType = Object.keys(content)[0];
      ops.push({
        method: method.toUpperCase(),
        path: p,
        parameters: op.parameters ?? [],
        ...(contentType ? { body: { contentType, schema: content[contentType].schema ?? {} } } : {}),
        public: (Array.isArray(op.security) && op.security.length === 0) || ['/healthz', '/readyz', '/api/v1/openapi.json'].includes(p),
      });
    }
  }
  return ops;
}

describe('operator REST API under schema-driven random requests', () => {
  it(
    `answers every route with 2xx or 4xx, never 5xx, and stays up (${PER_OPERATION} requests per operation, seed ${SEED})`,
    async () => {
      const doc = (await (await fetch(`${api}/api/v1/openapi.json`)).json()) as Parameters<typeof operations>[0];
      const ops = operations(doc);
      expect(ops.length).toBeGreaterThanOrEqual(25);
      const r = rng(prng(SEED));
      const known = {
        fleet: ['faults', '*', 'nofleet'],
        name: ['edge-1', 'detector', 'canary'],
        device: ['edge-1'],
        devices: [['edge-1'], ['edge-1', 'ghost']],
        group: ['canary'],
        version: ['1.0.0'],
        kind: ['model', 'config', 'container'],
        artifact: [{ name: 'detector', version: '1.0.0' }],
        id: ['00000000-0000-4000-8000-000000000000'],
        policy: ['keep', 'revert'],
      };
      const before = rssKiB(server.proc.pid!);
      const perRoute: Record<string, Record<string, number>> = {};
      const serverErrors: Array<Record<string, unknown>> = [];
      const anomalies: string[] = [];
      let sent = 0;
      for (const op of ops) {
        const tally: Record<string, number> = {};
        for (let i = 0; i < PER_OPERATION; i++) {
          let url = op.path.replace(/\{(\w+)\}/g, (_m, name: string) => {
            const v = r.chance(0.5) && known[name as keyof typeof known] ? String(r.pick(known[name as keyof typeof known])) : r.chance(0.5) ? r.pick(HOSTILE_STRINGS) : `x${i}`;
            return encodeURIComponent(v);
          });
          const query = new URLSearchParams();
          for (const p of op.parameters.filter((x) => x.in === 'query')) {
            if (!r.chance(0.5)) continue;
            const v = r.chance(0.7) ? generate(p.schema ?? { type: 'string' }, r, known, 0, p.name) : r.pick(HOSTILE_STRINGS);
            query.set(p.name, typeof v === 'string' ? v : JSON.stringify(v));
          }
          if ([...query].length) url += `?${query.toString()}`;
          const headers: Record<string, string> = {};
          const auth = r.int(0, 19);
          if (auth === 0) headers.authorization = `Bearer mesh_key_${randomBytes(16).toString('hex')}`;
          else if (auth === 1) headers.authorization = r.pick(['Basic Zm9vOmJhcg==', 'Bearer', 'Bearer ' + 'x'.repeat(10_000)]);
          else if (auth !== 2) headers.authorization = `Bearer ${key}`;
          let body: RequestInit['body'];
          let what = 'no body';
          if (op.body?.contentType === 'application/json' || (op.method !== 'GET' && op.method !== 'DELETE' && !op.body && r.chance(0.3))) {
            const shaped = generate(op.body?.schema ?? { type: 'object' }, r, known);
            const m = mutate(shaped, op.body?.schema, r);
            body = m.body;
            what = m.what;
            if (m.contentType) headers['content-type'] = m.contentType;
          } else if (op.body?.contentType === 'multipart/form-data') {
            const form = new FormData();
            for (const field of ['name', 'version', 'kind', 'spec', 'manifest']) {
              if (r.chance(0.8))
                form.set(field, r.chance(0.5) ? String(generate({ type: 'string' }, r, known, 0, field)) : r.pick([...HOSTILE_STRINGS, '{}', '{"fileName":"m"}', '[]']));
            }
            if (r.chance(0.8)) form.set('file', new Blob([randomBytes(r.int(0, 64 * 1024))]), r.pick(['m.bin', '../../x', '']));
            body = form;
            what = 'random multipart';
          }
          let status: number;
          let text = '';
          try {
            if (body instanceof FormData) {
              const res = await fetch(`${api}${url}`, { method: op.method, headers, body, signal: AbortSignal.timeout(5000) });
              status = res.status;
              text = await res.text();
            } else {
              ({ status, text } = await send(`${api}${url}`, op.method, headers, body as string | undefined));
            }
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            // The server answered an oversized body early (413, Content-Length is checked first)
            // and closed the connection while the client was still sending it.
            const early = what === 'body above the 4 MiB limit' && (code === 'EPIPE' || code === 'ECONNRESET');
            status = (err as Error).name === 'TimeoutError' ? -1 : early ? -3 : -2;
            text = (err as Error).message;
          }
          sent += 1;
          tally[status] = (tally[status] ?? 0) + 1;
          if (status >= 500 || status === -2) serverErrors.push({ method: op.method, url: url.slice(0, 200), what, status, answer: text.slice(0, 300) });
          const where = `${op.method} ${url.slice(0, 120)}${url.length > 120 ? '…' : ''} (${what})`;
          if (status >= 400 && status < 500 && status !== 414 && status !== 431) {
            let error: unknown;
            try {
              error = JSON.parse(text).error;
            } catch {
              error = undefined;
            }
            if (typeof error !== 'string') anomalies.push(`${where}: ${status} without a JSON { error }: ${text.slice(0, 80)}`);
          }
          if (!op.public && (auth === 0 || auth === 2) && status > 0 && ![401, 404, 413, 414, 431].includes(status)) {
            anomalies.push(`${where}: ${status} without a valid key`);
          }
        }
        perRoute[`${op.method} ${op.path}`] = tally;
      }
      const health = await fetch(`${api}/healthz`);
      expect(health.status).toBe(200);
      expect(server.proc.exitCode).toBeNull();
      const after = rssKiB(server.proc.pid!);
      Object.assign(results, { operations: ops.length, requests: sent, perRoute, serverErrors, anomalies, rssKiB: { before, after } });
      console.log(`[faults] REST fuzz: ${sent} requests over ${ops.length} operations; 5xx/connection errors: ${serverErrors.length}; VmRSS ${before} -> ${after} KiB`);
      expect(serverErrors, JSON.stringify(serverErrors.slice(0, 5), null, 1)).toEqual([]);
      expect(anomalies.slice(0, 10)).toEqual([]);
      expect(after - before).toBeLessThan(300 * 1024);
    },
    LONG ? 1_800_000 : 180_000,
  );

  // Was a bug, fixed in server/src/api/validation.ts and schemas.ts: ajv coerces the query
  // strings "1e309" and "Infinity" to the number Infinity and skips `maximum` for non-finite
  // numbers, and `offset` had no maximum, so `limit=1e309`, `limit=Infinity`, `offset=1e309`
  // and `offset=1e20` reached SQLite or the response serializer: HTTP 500 on every paged
  // list. They are 400s now.
  it('page parameters that are not finite safe integers are a 400 on every paged list, not a 500', async () => {
    const answers: string[] = [];
    for (const route of ['/api/v1/devices', '/api/v1/artifacts', '/api/v1/groups', '/api/v1/rollouts', '/api/v1/audit', '/api/v1/log-requests', '/api/v1/enrollment-tokens']) {
      for (const q of ['limit=1e309', 'limit=Infinity', 'offset=1e309', 'offset=1e20']) {
        const res = await send(`${api}${route}?${q}`, 'GET', { authorization: `Bearer ${key}` }, undefined);
        answers.push(`${route}?${q} -> ${res.status}`);
      }
    }
    results.pageParameters = answers;
    expect(answers.filter((a) => !a.endsWith('-> 400'))).toEqual([]);
  });
});
