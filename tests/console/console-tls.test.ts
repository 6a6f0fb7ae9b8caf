// The console over HTTPS in headless Chromium (playwright-core, /usr/bin/chromium) with the
// operator's certificate (issue 25): Chromium trusts the operator's CA through its own NSS
// database (certutil), not by ignoring certificate errors. Shown: sign-in and a live rollout
// view over https; the event stream opened with single-use stream tickets, never the key in a
// URL, and reopened transparently with a fresh ticket when the server ends it at its maximum
// lifetime (issue 23); the console runs under the server's CSP without a violation; and a
// page with an inline script, served by the server with its CSP, does not run it (while the
// same page without the CSP does).
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '@meshanics/server';
import type { Child } from '../../scripts/lib/processes.mjs';
import { createApiKey, meshanics, ROOT, SimDevice } from '../cli/harness.js';
import { operatorCa, serverCertificate } from '../cli/operator-pki.js';

const CHROMIUM = process.env.MESHANICS_CHROMIUM ?? '/usr/bin/chromium';
const CERTUTIL = '/usr/bin/certutil';
const CI = process.env.CI === 'true' || process.env.CI === '1';
const missing = [CHROMIUM, CERTUTIL].filter((f) => !existsSync(f));
if (missing.length > 0) {
  const message = `console TLS browser tests: ${missing.join(', ')} not found; install the Debian packages "chromium" and "libnss3-tools"`;
  if (CI) throw new Error(message);
  console.warn(`${message}; skipping them`);
}
const STREAM_LIFETIME_MS = 3000;
const INLINE_PAGE = '<!doctype html><html><head><title>inline</title></head><body><script>window.inlineRan = true; document.title = "ran";</script></body></html>';

let root: string;
let server: RunningServer;
let context: BrowserContext;
let page: Page;
let adminKey: string;
let rolloutId: string;
let sims: SimDevice[] = [];
const pageErrors: string[] = [];
const requests: string[] = [];

describe.skipIf(missing.length > 0)('operator console over HTTPS in headless Chromium', () => {
  beforeAll(async () => {
    if (!existsSync(path.join(ROOT, 'console/dist/main.js'))) throw new Error('console/dist/main.js missing: run `npm run build` first');
    execFileSync(process.execPath, [path.join(ROOT, 'console/build-static.mjs')]);
    root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-console-tls-'));
    const ca = await operatorCa();
    const cert = await serverCertificate(ca, 'meshanics-console');
    const files = { ca: path.join(root, 'ca.pem'), cert: path.join(root, 'api.crt'), key: path.join(root, 'api.key') };
    await Promise.all([writeFile(files.ca, ca.certPem), writeFile(files.cert, cert.certPem), writeFile(files.key, cert.keyPem, { mode: 0o600 })]);

    // The console as built, plus a page with an inline script, served by the server.
    const consoleDir = path.join(root, 'console');
    cpSync(path.join(ROOT, 'console/dist'), consoleDir, { recursive: true });
    await writeFile(path.join(consoleDir, 'inline-test.html'), INLINE_PAGE);

    // Chromium's own trust store (NSS, in $HOME/.pki/nssdb) gets the operator's CA.
    const home = path.join(root, 'home');
    const nssdb = path.join(home, '.pki', 'nssdb');
    await mkdir(nssdb, { recursive: true });
    execFileSync(CERTUTIL, ['-d', `sql:${nssdb}`, '-N', '--empty-password']);
    execFileSync(CERTUTIL, ['-d', `sql:${nssdb}`, '-A', '-n', 'meshanics-operator-ca', '-t', 'C,,', '-i', files.ca]);

    const dataDir = path.join(root, 'server');
    server = await startServer({
      dataDir,
      grpcListen: '127.0.0.1:0',
      artifactListen: '127.0.0.1:0',
      enrollListen: '127.0.0.1:0',
      apiListen: '127.0.0.1:0',
      apiTls: { certFile: files.cert, keyFile: files.key },
      apiEventStreams: { maxLifetimeMs: STREAM_LIFETIME_MS },
      consoleDir,
      heartbeatIntervalSeconds: 1,
    });
    const api = server.apiUrl!.replace('127.0.0.1', 'localhost');
    adminKey = await createApiKey(dataDir, 'admin', { approve: true });
    sims = await SimDevice.provision({ child: { grpc: server.grpcAddress } as unknown as Child, dataDir, api }, path.join(root, 'certs'), 'lab', ['web-1', 'web-2']);
    const env = { MESHANICS_API_URL: api, MESHANICS_API_KEY: adminKey, MESHANICS_CA_FILE: files.ca };
    const model = path.join(root, 'model.bin');
    await writeFile(model, randomBytes(32 * 1024));
    const published = await meshanics(['artifacts', 'publish', model, '--name', 'web-model', '--version', '1.0.0', '--kind', 'model'], env);
    expect(published.code, published.stderr).toBe(0);
    const created = await meshanics(
      [
        'rollouts',
        'create',
        '--fleet',
        'lab',
        '--artifact',
        'web-model@1.0.0',
        '--group',
        'web',
        '--devices',
        'web-1,web-2',
        '--probe-type',
        'file',
        '--probe-spec',
        '{"path":"/run/ready"}',
        '--json',
      ],
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    rolloutId = JSON.parse(created.stdout).id;

    const { chromium } = await import('playwright-core');
    context = await chromium.launchPersistentContext(path.join(root, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      env: { ...process.env, HOME: home },
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await context.newPage();
    page.setDefaultTimeout(20_000);
    page.on('pageerror', (err) => pageErrors.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !/status of (401|403|404|409)/.test(msg.text())) pageErrors.push(`console: ${msg.text()}`);
    });
    page.on('request', (r) => requests.push(r.url()));
  }, 90_000);

  afterAll(async () => {
    await context?.close();
    await Promise.all(sims.map((s) => s.stop()));
    await server?.close();
    if (root) await rm(root, { recursive: true, force: true });
  });

  const base = () => server.apiUrl!.replace('127.0.0.1', 'localhost');

  it('signs in over https with the operator certificate, trusted through the CA, under the CSP without a violation', async () => {
    // The first start of a fresh profile can be slow on a busy machine.
    const response = await page.goto(`${base()}/`, { timeout: 60_000 });
    expect(response!.status()).toBe(200);
    const headers = response!.headers();
    expect(headers['content-security-policy']).toContain("script-src 'self'");
    expect(headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(headers['referrer-policy']).toBe('no-referrer');
    expect(headers['x-content-type-options']).toBe('nosniff');
    expect(headers['strict-transport-security']).toBe('max-age=31536000');
    expect((await response!.securityDetails())?.subjectName).toBe('meshanics-console');
    await page.getByLabel('API key').fill(adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Fleet overview' }).waitFor();
    expect(pageErrors).toEqual([]);
  });

  it('streams a rollout with single-use tickets, never the key in a URL, and reconnects when the server ends the stream', async () => {
    await page.evaluate((id) => {
      location.hash = `#/rollouts/${id}`;
    }, rolloutId);
    await page.locator('.live-indicator[data-mode=live]').waitFor();
    const streamUrls = () => requests.filter((u) => u.includes(`/api/v1/rollouts/${rolloutId}/events`));
    expect(streamUrls()[0]).toMatch(/\/events\?ticket=mesh_st_/);
    // The server ends each stream after its lifetime; the console mints a new ticket and goes on.
    await expect.poll(() => streamUrls().length, { timeout: 3 * STREAM_LIFETIME_MS + 5000 }).toBeGreaterThanOrEqual(3);
    await page.locator('.live-indicator[data-mode=live]').waitFor();
    const tickets = streamUrls().map((u) => new URL(u).searchParams.get('ticket'));
    expect(new Set(tickets).size).toBe(tickets.length);
    // A change still arrives on the current stream.
    const abort = await page.evaluate(
      async ({ id, key }) => (await fetch(`/api/v1/rollouts/${id}/abort`, { method: 'POST', headers: { authorization: `Bearer ${key}` } })).status,
      { id: rolloutId, key: adminKey },
    );
    expect(abort).toBe(200);
    await page.locator('.status-holder [data-status=aborted]').waitFor();
    for (const u of requests) {
      expect(u).not.toContain(adminKey);
      expect(u).not.toContain('access_token');
    }
    expect(pageErrors).toEqual([]);
  });

  it('blocks an inline script served with the server CSP, which runs without it', async () => {
    const violations: string[] = [];
    const inline = await context.newPage();
    inline.on('console', (msg) => violations.push(msg.text()));
    const res = await inline.goto(`${base()}/inline-test.html`);
    expect(res!.headers()['content-security-policy']).toContain("script-src 'self'");
    expect(await inline.evaluate(() => (window as unknown as { inlineRan?: boolean }).inlineRan)).toBeUndefined();
    expect(await inline.title()).toBe('inline');
    // Chromium's wording: "Executing inline script violates the following Content Security Policy directive 'script-src 'self''..."
    // (older releases: "Refused to execute inline script because it violates ...").
    expect(
      violations.filter((v) => /inline script.*violates the following Content Security Policy directive/i.test(v)),
      violations.join('\n'),
    ).toHaveLength(1);

    // The control: the same page from the same origin, without the CSP header, runs its script.
    await inline.route(`${base()}/inline-control.html`, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: INLINE_PAGE }));
    await inline.goto(`${base()}/inline-control.html`);
    expect(await inline.evaluate(() => (window as unknown as { inlineRan?: boolean }).inlineRan)).toBe(true);
    await inline.close();
  });
});
