// The REST API's guards over a real socket (issues 23 and 25): event streams opened with
// single-use stream tickets (the key never in a URL), capped per key (429), ended at their
// maximum lifetime and within a second of their key's revocation; a malformed multipart
// upload answered 400 with the reason and no error-level stack in the log; failed API keys
// rate limited per address (429 with Retry-After); the security headers of every response.
import * as fs from 'node:fs';
import * as path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, revokeApiKey } from '../src/api/keys.js';
import { StreamTickets } from '../src/api/stream-tickets.js';
import { ALL_PERMISSIONS, closeDeviceClients, FILE_PROBE, key, publishModel, simDevices, sseEvents } from './api-helpers.js';
import { startTestServer, tempDir, unlabelledMetrics, type TestServer } from './helpers.js';

const MAX_STREAMS = 3;
const LIFETIME_MS = 4000;

let t: TestServer;
let base: string;
let admin: string;
let rolloutId: string;
const logLines: Array<Record<string, any>> = [];

beforeAll(async () => {
  const consoleDir = tempDir();
  fs.writeFileSync(path.join(consoleDir, 'index.html'), '<!doctype html><title>Meshanics console</title>');
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
  t = await startTestServer({
    apiListen: '127.0.0.1:0',
    consoleDir,
    logger,
    apiEventStreams: { maxPerKey: MAX_STREAMS, maxLifetimeMs: LIFETIME_MS },
    apiAuthThrottle: { maxFailures: 1_000_000 },
  });
  base = t.server.apiUrl!;
  admin = await key(t.ctx, ALL_PERMISSIONS, { name: 'streams-admin' });
  await simDevices(t, 'lab', ['st-1']);
  await publishModel(t.ctx, 'st-model', '1.0.0');
  await post('/api/v1/groups', { fleet: 'lab', name: 'st', devices: ['st-1'] });
  rolloutId = (await post('/api/v1/rollouts', { fleet: 'lab', artifact: { name: 'st-model', version: '1.0.0' }, group: 'st', probe: FILE_PROBE })).json.id;
});
afterAll(async () => {
  closeDeviceClients();
  await t.close();
});

async function post(urlPath: string, body?: unknown, k = admin): Promise<{ status: number; json: any }> {
  const res = await fetch(base + urlPath, {
    method: 'POST',
    headers: { authorization: `Bearer ${k}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: await res.json() };
}

async function ticket(k: string): Promise<string> {
  const minted = await post('/api/v1/stream-tickets', undefined, k);
  expect(minted.status).toBe(201);
  return minted.json.ticket;
}

interface OpenedStream {
  status: number;
  events: AsyncGenerator<{ event: string; data: any }>;
  close(): void;
  /** Resolves with the last event when the server ends the stream. */
  ended: Promise<{ event: string; data: any } | undefined>;
}

async function openStream(auth: { key?: string; ticket?: string }, view?: 'summary' | 'detail'): Promise<OpenedStream> {
  const controller = new AbortController();
  const params = new URLSearchParams({ ...(auth.ticket !== undefined ? { ticket: auth.ticket } : {}), ...(view ? { view } : {}) }).toString();
  const query = params ? `?${params}` : '';
  const res = await fetch(`${base}/api/v1/rollouts/${rolloutId}/events${query}`, {
    headers: auth.key !== undefined ? { authorization: `Bearer ${auth.key}` } : {},
    signal: controller.signal,
  });
  const events = res.status === 200 ? sseEvents(res.body!) : (async function* () {})();
  if (res.status !== 200) await res.body?.cancel();
  let endedResolve!: (v: { event: string; data: any } | undefined) => void;
  const ended = new Promise<{ event: string; data: any } | undefined>((resolve) => (endedResolve = resolve));
  // Reads in the background after the first event, remembering the last one.
  const first = res.status === 200 ? (await events.next()).value : undefined;
  if (res.status === 200) {
    expect(first).toMatchObject({ event: 'rollout', data: { id: rolloutId } });
    void (async () => {
      let last: { event: string; data: any } | undefined;
      try {
        for await (const ev of events) last = ev;
      } catch {
        // aborted by the test
      }
      endedResolve(last);
    })();
  } else endedResolve(undefined);
  return { status: res.status, events, close: () => controller.abort(), ended };
}

const within = <T>(ms: number, p: Promise<T>): Promise<T | 'timeout'> => Promise.race([p, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms))]);

describe('event streams', () => {
  it('opens a stream with a stream ticket once; a used, forged or wrong-purpose ticket and ?access_token= are refused', async () => {
    const reader = await createApiKey(t.ctx, { name: 'ticket-reader', fleet: '*', permissions: ['rollouts.read'] });
    const minted = await post('/api/v1/stream-tickets', undefined, reader.key);
    expect(minted.status).toBe(201);
    expect(minted.json.ticket).toMatch(/^mesh_st_/);
    expect(minted.json.ticket).not.toContain(reader.key.slice('mesh_key_'.length));
    const expiresIn = Date.parse(minted.json.expiresAt) - Date.now();
    expect(expiresIn).toBeGreaterThan(50_000);
    expect(expiresIn).toBeLessThanOrEqual(60_000);

    const stream = await openStream({ ticket: minted.json.ticket });
    expect(stream.status).toBe(200);
    stream.close();
    // Single use.
    expect((await openStream({ ticket: minted.json.ticket })).status).toBe(401);
    // Only event streams: not a key for anything else.
    const other = await fetch(`${base}/api/v1/rollouts/${rolloutId}?ticket=${await ticket(reader.key)}`);
    expect([other.status, await other.json()]).toEqual([401, { error: 'missing API key (send Authorization: Bearer <key>)', code: 'MESH_ERR_API_UNAUTHENTICATED' }]);
    // Forged: another key id in the payload, the MAC of the original.
    const genuine = await ticket(reader.key);
    const [body, mac] = genuine.slice('mesh_st_'.length).split('.') as [string, string];
    const payload = JSON.parse(Buffer.from(body, 'base64url').toString());
    const forged = `mesh_st_${Buffer.from(JSON.stringify({ ...payload, k: 'someone-else' })).toString('base64url')}.${mac}`;
    expect((await openStream({ ticket: forged })).status).toBe(401);
    // The key in the URL is no longer accepted anywhere.
    const res = await fetch(`${base}/api/v1/rollouts/${rolloutId}/events?access_token=${reader.key}`);
    expect(res.status).toBe(401);
    // A ticket carries the rights of its key: one without rollouts.read opens nothing.
    const noRead = await key(t.ctx, ['devices.read']);
    const denied = await fetch(`${base}/api/v1/rollouts/${rolloutId}/events?ticket=${await ticket(noRead)}`);
    expect([denied.status, await denied.json()]).toEqual([403, { error: 'missing permission: rollouts.read', code: 'MESH_ERR_API_FORBIDDEN' }]);
  });

  it('a ticket expires after its time and is checked with the secret of the data dir', () => {
    const secret = Buffer.alloc(32, 7);
    const tickets = new StreamTickets(secret, 60_000);
    const now = Date.now();
    const { ticket: late } = tickets.mint('key-1', now);
    expect(tickets.redeem(late, now + 60_001)).toBeUndefined();
    const { ticket: fresh } = tickets.mint('key-1', now);
    expect(new StreamTickets(Buffer.alloc(32, 8)).redeem(fresh, now)).toBeUndefined();
    expect(new StreamTickets(secret).redeem(fresh, now + 59_000)).toBe('key-1');
  });

  it('closes every open stream of a key within a second of its revocation, and only those', async () => {
    const doomed = await createApiKey(t.ctx, { name: 'doomed', fleet: '*', permissions: ['rollouts.read'] });
    const bystander = await key(t.ctx, ['rollouts.read']);
    const viaHeader = await openStream({ key: doomed.key });
    const viaTicket = await openStream({ ticket: await ticket(doomed.key) });
    const other = await openStream({ key: bystander });
    expect([viaHeader.status, viaTicket.status, other.status]).toEqual([200, 200, 200]);

    // Revoked through the database, as `meshanics-server apikey revoke` does from its own process.
    const revokedAt = Date.now();
    await revokeApiKey(t.ctx, doomed.id, 'operator:test');
    const [a, b] = await Promise.all([within(1000, viaHeader.ended), within(1000, viaTicket.ended)]);
    expect(a).toEqual({ event: 'revoked', data: { error: 'the API key was revoked' } });
    expect(b).toEqual({ event: 'revoked', data: { error: 'the API key was revoked' } });
    const closedAfterMs = Date.now() - revokedAt;
    console.log(`[streams] a revoked key's 2 streams ended ${closedAfterMs} ms after the revocation was written`);
    expect(closedAfterMs).toBeLessThan(1000);
    expect(await within(1500, other.ended)).toBe('timeout');
    other.close();
    expect(logLines.some((l) => l.msg === 'API key revoked: closing its event streams' && l.apiKeyId === doomed.id)).toBe(true);
  });

  it(`caps the open streams of one key at ${MAX_STREAMS} (429 past it), and a closed stream frees its slot`, async () => {
    const k = await key(t.ctx, ['rollouts.read']);
    const open = await Promise.all(Array.from({ length: MAX_STREAMS }, () => openStream({ key: k })));
    expect(open.map((s) => s.status)).toEqual(Array(MAX_STREAMS).fill(200));
    const refused = await fetch(`${base}/api/v1/rollouts/${rolloutId}/events`, { headers: { authorization: `Bearer ${k}` } });
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: string }).error).toBe(`this API key already has ${MAX_STREAMS} open event streams (at most ${MAX_STREAMS}); close one first`);
    // Another key is not affected.
    const another = await openStream({ key: admin });
    expect(another.status).toBe(200);
    another.close();
    open[0]!.close();
    await expect
      .poll(
        async () => {
          const s = await openStream({ key: k });
          s.close();
          return s.status;
        },
        { timeout: 3000 },
      )
      .toBe(200);
    for (const s of open) s.close();
  });

  it('counts its streams and snapshots in /metrics: a stream refused with 429 holds nothing, and the last one closed drops the snapshots', async () => {
    const gauges = async () => {
      const m = await unlabelledMetrics(base, ['meshanics_rollout_event_streams', 'meshanics_rollout_snapshots', 'meshanics_rollout_snapshot_chars']);
      return { streams: m.meshanics_rollout_event_streams, snapshots: m.meshanics_rollout_snapshots, chars: m.meshanics_rollout_snapshot_chars };
    };
    await expect.poll(gauges, { timeout: 3000 }).toEqual({ streams: 0, snapshots: 0, chars: 0 });
    const k = await key(t.ctx, ['rollouts.read']);
    const open = await Promise.all(Array.from({ length: MAX_STREAMS }, (_, i) => openStream({ key: k }, i === 0 ? 'summary' : 'detail')));
    expect(open.map((s) => s.status)).toEqual(Array(MAX_STREAMS).fill(200));
    const held = await gauges();
    expect(held).toMatchObject({ streams: MAX_STREAMS, snapshots: 2 });
    expect(held.chars).toBeGreaterThan(0);
    const refused = await fetch(`${base}/api/v1/rollouts/${rolloutId}/events`, { headers: { authorization: `Bearer ${k}` } });
    await refused.body?.cancel();
    // Within the streams' lifetime (LIFETIME_MS), or the three have ended and the gauge tells nothing.
    expect(refused.status).toBe(429);
    expect((await gauges()).streams).toBe(MAX_STREAMS);
    open[0]!.close();
    await expect.poll(async () => (await gauges()).streams, { timeout: 3000 }).toBe(MAX_STREAMS - 1);
    // The rollout's snapshots stay while any stream of it is open.
    expect((await gauges()).snapshots).toBe(2);
    for (const s of open) s.close();
    await expect.poll(gauges, { timeout: 3000 }).toEqual({ streams: 0, snapshots: 0, chars: 0 });
  });

  it('sends the summary without the device list with ?view=summary, and the detail with it by default', async () => {
    const firstEvent = async (query: string) => {
      const controller = new AbortController();
      const res = await fetch(`${base}/api/v1/rollouts/${rolloutId}/events${query}`, { headers: { authorization: `Bearer ${admin}` }, signal: controller.signal });
      const event = (await sseEvents(res.body!).next()).value;
      controller.abort();
      return event;
    };
    const first = await firstEvent('?view=summary');
    expect(first).toMatchObject({ event: 'rollout', data: { id: rolloutId, counts: expect.any(Object), waves: expect.any(Array) } });
    expect(first.data).not.toHaveProperty('devices');
    const full = await firstEvent('');
    expect(full.data.devices.map((d: { name: string }) => d.name)).toEqual(['st-1']);
    const { devices: _, ...withoutDevices } = full.data;
    expect(first.data).toEqual(withoutDevices);
    const bad = await fetch(`${base}/api/v1/rollouts/${rolloutId}/events?view=devices`, { headers: { authorization: `Bearer ${admin}` } });
    expect([bad.status, ((await bad.json()) as { error: string }).error]).toEqual([400, 'querystring/view must be one of "detail", "summary"']);
  });

  it('ends a stream at its maximum lifetime with a reconnect event', async () => {
    const started = Date.now();
    const stream = await openStream({ key: admin });
    expect(await within(LIFETIME_MS + 2000, stream.ended)).toEqual({ event: 'reconnect', data: { reason: 'the stream reached its maximum lifetime; reconnect' } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(LIFETIME_MS - 100);
  });
});

describe('malformed multipart uploads', () => {
  const cases: Array<[string, string, string | Buffer]> = [
    [
      'a body cut off in the middle of a part',
      'multipart/form-data; boundary=XyZ',
      '--XyZ\r\ncontent-disposition: form-data; name="name"\r\n\r\nmodel\r\n--XyZ\r\ncontent-disposition: form-data; name="file"; filename="m.bin"\r\n\r\nabc',
    ],
    ['a part without headers', 'multipart/form-data; boundary=XyZ', '--XyZ\r\n\r\n\r\nvalue\r\n--XyZ--\r\n'],
    ['no boundary in the content type', 'multipart/form-data', 'whatever'],
    ['a garbled part header', 'multipart/form-data; boundary=XyZ', `--XyZ\r\n${'x'.repeat(100)}\r\n\r\nvalue\r\n--XyZ--\r\n`],
  ];
  for (const [what, contentType, body] of cases) {
    it(`answers 400 with the reason for ${what}, with no error-level stack in the log`, async () => {
      const before = logLines.length;
      const res = await fetch(`${base}/api/v1/artifacts`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': contentType }, body });
      const answer = (await res.json()) as { error: string };
      expect(res.status, answer.error).toBe(400);
      expect(answer.error).toMatch(/multipart|boundary|body/i);
      expect(answer.error).not.toMatch(/internal server error/);
      const logged = logLines.slice(before);
      expect(
        logged.filter((l) => l.level >= 50),
        JSON.stringify(logged),
      ).toEqual([]);
      expect(JSON.stringify(logged)).not.toMatch(/\n\s+at /);
    });
  }
});

describe('security headers', () => {
  it('sends a strict CSP, frame-ancestors none, no-referrer and nosniff with the console, the API and event streams', async () => {
    const stream = await fetch(`${base}/api/v1/rollouts/${rolloutId}/events`, { headers: { authorization: `Bearer ${admin}` } });
    const responses = [await fetch(`${base}/`), await fetch(`${base}/rollouts/x`), await fetch(`${base}/api/v1/whoami`, { headers: { authorization: `Bearer ${admin}` } }), stream];
    for (const res of responses) {
      const csp = res.headers.get('content-security-policy') ?? '';
      expect(csp, res.url).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).toContain("default-src 'none'");
      expect(csp).not.toContain('unsafe-inline');
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('x-frame-options')).toBe('DENY');
      // Plain HTTP on loopback: no HSTS (it would pin https on a name that has none).
      expect(res.headers.get('strict-transport-security')).toBeNull();
    }
    await stream.body?.cancel();
  });
});

describe('failed API key attempts', () => {
  it('answers 429 with Retry-After to an address past its failures, even with a good key, until the window passes', async () => {
    const limited = await startTestServer({ apiListen: '127.0.0.1:0', consoleDir: null, apiAuthThrottle: { maxFailures: 3, windowMs: 2000 } });
    try {
      const url = `${limited.server.apiUrl}/api/v1/whoami`;
      const good = (await createApiKey(limited.ctx, { name: 'good', fleet: '*', permissions: ['devices.read'] })).key;
      const as = (k: string) => fetch(url, { headers: { authorization: `Bearer ${k}` } });
      expect((await as(good)).status).toBe(200);
      for (let i = 0; i < 3; i++) expect((await as(`mesh_key_guess${i}`)).status).toBe(401);
      const refused = await as(good);
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(2);
      expect(((await refused.json()) as { error: string }).error).toMatch(/^too many failed API key attempts from 127\.0\.0\.1; retry in \d s$/);
      // Without a key there is nothing to guess: still 401, not counted.
      expect((await fetch(url)).status).toBe(401);
      await new Promise((r) => setTimeout(r, Number(refused.headers.get('retry-after')) * 1000 + 100));
      expect((await as(good)).status).toBe(200);
    } finally {
      await limited.close();
    }
  });
});
