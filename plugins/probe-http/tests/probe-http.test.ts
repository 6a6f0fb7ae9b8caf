import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileSchema, runProbe, type Allowlist } from '@meshanics/core';
import { createTestAgent, testAssignment } from '@meshanics/core/testing';
import HttpProbePlugin, { HTTP_PROBE_SPEC_SCHEMA } from '../src/index.js';

const log = pino({ level: 'silent' });
let server: http.Server;
let base: string;
let port: number;
const hits = new Map<string, number>();

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const count = (hits.get(req.url!) ?? 0) + 1;
    hits.set(req.url!, count);
    switch (req.url!) {
      case '/ok':
        return res.end('fine');
      case '/500':
        res.statusCode = 500;
        return res.end('broken');
      case '/third-time':
        res.statusCode = count >= 3 ? 204 : 503;
        return res.end();
      case '/away':
        res.writeHead(301, { location: 'http://example.com/ok' });
        return res.end();
      case '/same-host':
        res.writeHead(302, { location: '/ok' });
        return res.end();
      case '/slow-body':
        res.writeHead(200, { 'content-length': '10' });
        res.write('12345');
        return; // never finishes
      default:
        res.statusCode = 404;
        return res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function probe(url: string, probe: { attempts?: number; timeoutSeconds?: number } = {}, allowlist?: Partial<Allowlist>) {
  const { agent } = await createTestAgent([new HttpProbePlugin()], { allowlist });
  const a = testAssignment(
    { targetPath: 'x', length: 0, sha256: '0'.repeat(64) },
    {
      kind: 'model',
      probe: { type: 'http', specJson: JSON.stringify({ url }), timeoutSeconds: probe.timeoutSeconds ?? 2, attempts: probe.attempts ?? 1, initialDelaySeconds: 0 },
    },
  );
  return runProbe(agent.hooks, a, { url }, log, new AbortController().signal);
}

describe('http probe', () => {
  it('is healthy on a 2xx from a loopback host (allowed by default)', async () => {
    const outcome = await probe(`${base}/ok`);
    expect(outcome).toEqual({ healthy: true, attempts: [`attempt 1/1: healthy: GET ${base}/ok: HTTP 200`] });
  });

  it('is unhealthy on a 500', async () => {
    const outcome = await probe(`${base}/500`);
    expect(outcome.healthy).toBe(false);
    expect(outcome.attempts[0]).toContain('HTTP 500');
  });

  it('passes when the endpoint answers 2xx on the third attempt', async () => {
    const outcome = await probe(`${base}/third-time`, { attempts: 3 });
    expect(outcome.healthy).toBe(true);
    expect(outcome.attempts.map((a) => a.split(': ')[1])).toEqual(['unhealthy', 'unhealthy', 'healthy']);
    expect(hits.get('/third-time')).toBe(3);
  });

  it('refuses a 301 to another host without following it', async () => {
    const outcome = await probe(`${base}/away`, {}, { httpHosts: ['127.0.0.1', 'example.com'] });
    expect(outcome.healthy).toBe(false);
    expect(outcome.attempts[0]).toContain('HTTP 301 redirect to another host (example.com) refused');
  });

  it('follows a redirect on the same host', async () => {
    expect((await probe(`${base}/same-host`)).healthy).toBe(true);
  });

  it('refuses a host that is not on the allowlist without connecting', async () => {
    const before = hits.get('/ok') ?? 0;
    const outcome = await probe(`http://localhost:${port}/ok`, {}, { httpHosts: ['127.0.0.1'] });
    expect(outcome.healthy).toBe(false);
    expect(outcome.attempts[0]).toContain('host "localhost" is not on the allowlist (allowlist.httpHosts)');
    expect(hits.get('/ok') ?? 0).toBe(before);
  });

  it('times out on a response whose body never completes', async () => {
    const outcome = await probe(`${base}/slow-body`, { timeoutSeconds: 1 });
    expect(outcome.healthy).toBe(false);
    expect(outcome.attempts[0]).toContain('timed out after 1s');
  });

  it('rejects a URL with credentials or another scheme at schema validation', () => {
    const validate = compileSchema(HTTP_PROBE_SPEC_SCHEMA, 'probe/spec');
    expect(validate({ url: 'http://user:pw@127.0.0.1/' }).ok).toBe(false);
    expect(validate({ url: 'file:///etc/passwd' }).ok).toBe(false);
    expect(validate({ url: 'http://127.0.0.1:8080/healthz' }).ok).toBe(true);
  });
});
