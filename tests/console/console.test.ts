// The operator console in headless Chromium (playwright-core, the system's /usr/bin/chromium),
// served by the real server at / over its REST API: sign in with an API key, create a rollout
// in the console for two real agent processes and four simulated devices, watch the detail view
// bring every device to healthy live, approve the manual wave, see a halted rollout's reason,
// and find the approve/resume/abort buttons only for keys that hold the right.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { serverCli, startAgent, type Child } from '../../scripts/lib/processes.mjs';
import { type CliEnvironment, cliEnvironment, createApiKey, meshanics, publishViaApi, registerIdleDevices, ROOT } from '../cli/harness.js';

const CHROMIUM = process.env.MESHANICS_CHROMIUM ?? '/usr/bin/chromium';
const CI = process.env.CI === 'true' || process.env.CI === '1';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  const message = `console browser tests: ${CHROMIUM} not found; install the Debian package "chromium" (apt-get install -y chromium)`;
  if (CI) throw new Error(message);
  console.warn(`${message}; skipping them`);
}
const RESULTS = path.join(ROOT, 'test-results');

let env: CliEnvironment;
let agents: Child[] = [];
let context: BrowserContext;
let profileDir: string;
let page: Page;
let viewerKey: string;
let readyFile: string;
const pageErrors: string[] = [];
/** Every URL the pages requested: the API key must never be in one. */
const requestedUrls: string[] = [];

async function newPage(): Promise<Page> {
  const p = await context.newPage();
  p.setDefaultTimeout(20_000);
  p.on('pageerror', (err) => pageErrors.push(`pageerror: ${err.message}`));
  p.on('request', (r) => requestedUrls.push(r.url()));
  p.on('console', (msg) => {
    if (msg.type() === 'error' && !/status of (401|403|404|409)/.test(msg.text())) pageErrors.push(`console: ${msg.text()}`);
  });
  return p;
}

async function signIn(p: Page, key: string): Promise<void> {
  await p.goto(`${env.server.api}/`);
  await p.getByLabel('API key').fill(key);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.getByRole('navigation', { name: 'Main' }).waitFor();
}

/**
 * Navigates and returns once the router has put up the new page's shell. Setting the hash only
 * queues the `hashchange` the router listens to: without waiting for it, the next locator can
 * still find the previous page (its Fleet field, its table rows).
 */
async function go(p: Page, route: string): Promise<void> {
  await p.evaluate(
    (r) =>
      new Promise<void>((resolve) => {
        if (location.hash === `#${r}`) return resolve();
        // Registered after the router's listener, so it runs after the router rendered.
        window.addEventListener('hashchange', () => resolve(), { once: true });
        location.hash = `#${r}`;
      }),
    route,
  );
}

const rowStates = (p: Page) =>
  p.$$eval('#rollout-devices tbody tr', (rows) => Object.fromEntries(rows.map((r) => [(r as HTMLElement).dataset.device!, (r as HTMLElement).dataset.state!])));

describe.skipIf(!haveChromium)('operator console in headless Chromium', () => {
  beforeAll(async () => {
    // Chromium starts while the server, devices and agents come up.
    const browser = (async () => {
      // The console is static: make sure dist holds index.html and the CSS next to the compiled JS.
      if (!existsSync(path.join(ROOT, 'console/dist/main.js'))) throw new Error('console/dist/main.js missing: run `npm run build` first');
      execFileSync(process.execPath, [path.join(ROOT, 'console/build-static.mjs')]);
      await mkdir(RESULTS, { recursive: true });
      profileDir = await mkdtemp(path.join(os.tmpdir(), 'meshanics-chromium-'));
      const { chromium } = await import('playwright-core');
      return chromium.launchPersistentContext(profileDir, {
        executablePath: CHROMIUM,
        headless: true,
        viewport: { width: 1280, height: 900 },
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      });
    })();
    browser.catch(() => {});

    env = await cliEnvironment('meshanics-console-', ['sim-1', 'sim-2', 'sim-3', 'sim-4']);
    // A bad detector 2.0.0 rolls back on sim-3 (its probe fails); everything else goes healthy.
    for (const s of env.sims) {
      s.outcome = (a) => (a.version === '2.0.0' && s.name === 'sim-3' ? 'ROLLED_BACK' : 'HEALTHY');
      s.stepMs = 250;
      s.start(400);
    }
    readyFile = path.join(env.root, 'ready', 'detector');
    await mkdir(path.dirname(readyFile), { recursive: true });
    await writeFile(readyFile, 'ok');

    await Promise.all([
      (async () => {
        viewerKey = await createApiKey(env.server.dataDir, 'viewer', { fleet: 'lab', permissions: ['devices.read', 'artifacts.read', 'rollouts.read'] });
      })(),
      // Two real agents, with certificates the server issued.
      (async () => {
        const certs = path.join(env.root, 'agent-certs');
        await serverCli(env.server.dataDir, ['device', 'issue-cert', '--fleet', 'lab', '--names', 'edge-1,edge-2', '--out', certs]);
        agents = ['edge-1', 'edge-2'].map((name) => startAgent(env.server.child, path.join(certs, name), path.join(env.root, 'agents', name)));
        await Promise.all(agents.map((a) => a.waitForLine((l: { msg?: string }) => l?.msg === 'registered')));
      })(),
      (async () => {
        for (const version of ['1.0.0', '2.0.0']) {
          const file = path.join(env.root, `detector-${version}.bin`);
          await writeFile(file, randomBytes(256 * 1024));
          await publishViaApi(env.server, env.adminKey, file, { name: 'detector', version, kind: 'model' });
        }
      })(),
    ]);
    context = await browser;
    page = await newPage();
  }, 60_000);

  beforeEach((test) => {
    // A failing test leaves a picture of the page behind.
    test.onTestFailed(async () => {
      const name = test.task.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
      await page?.screenshot({ path: path.join(RESULTS, `failed-${name}.png`), fullPage: true }).catch(() => {});
    });
  });

  afterAll(async () => {
    await context?.close();
    await Promise.all(agents.map((a) => a.stop()));
    await env?.close();
    if (profileDir) await rm(profileDir, { recursive: true, force: true });
  });

  it('is served at / and signs in with an API key (a wrong key is refused)', async () => {
    await page.goto(`${env.server.api}/`);
    await page.getByRole('heading', { name: 'Meshanics console' }).waitFor();
    await page.getByLabel('API key').fill('mesh_key_wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'refused' }).waitFor();
    await page.getByLabel('API key').fill(env.adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Fleet overview' }).waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('meshanics.apiKey'))).toBe(env.adminKey);
    // Six devices, all online (two agents, four simulated).
    await page.waitForFunction(() => {
      const stat = [...document.querySelectorAll('.stat')].find((s) => s.textContent?.includes('online'));
      return stat?.querySelector('.stat-value')?.textContent === '6';
    });
    const nav = await page.getByRole('navigation', { name: 'Main' }).getByRole('link').allTextContents();
    expect(nav).toEqual(['Overview', 'Devices', 'Artifacts', 'Rollouts', 'Audit log']);
  });

  it('creates a rollout for enrolled agents, watches every device reach healthy live, and approves the manual wave', async () => {
    await page.getByRole('link', { name: 'Rollouts' }).click();
    await page.getByRole('heading', { name: 'Rollouts', level: 1 }).waitFor();
    await page.getByRole('link', { name: 'New rollout' }).click();
    // The list page has a Fleet field too: fill the form's only once the form is up.
    await page.getByRole('heading', { name: 'New rollout', level: 1 }).waitFor();
    await page.getByLabel('Fleet').fill('lab');
    await page.getByLabel('Fleet').press('Tab');
    await page.getByLabel('Artifact version').selectOption('detector@1.0.0');
    await page.getByLabel('New group name').fill('everyone');
    await page.getByLabel('All devices').check();
    expect(await page.locator('input[name=device]:checked').count()).toBe(6);
    await page.getByLabel('Type', { exact: true }).selectOption('file');
    await page.getByLabel('Spec (JSON)').fill(JSON.stringify({ path: readyFile }));
    await page.getByLabel('Timeout (s)').fill('2');
    await page.getByLabel('Attempts').fill('3');
    await page.locator('input[name=waves]').fill('50, 100:manual');
    await page.screenshot({ path: path.join(RESULTS, 'console-new-rollout.png'), fullPage: true });
    await page.getByRole('button', { name: 'Start rollout' }).click();
    await page.waitForURL(/#\/rollouts\/[0-9a-f-]{36}$/);
    const id = page.url().split('/').pop()!;

    // The first wave (3 devices) goes healthy by itself; the second waits for an approval.
    await page.locator('#approval-needed').filter({ hasText: 'Wave 2 (up to 100 %) is waiting for approval' }).waitFor({ timeout: 40_000 });
    await page.locator('.live-indicator[data-mode=live]').waitFor();
    const before = await rowStates(page);
    expect(Object.keys(before).sort()).toEqual(['edge-1', 'edge-2', 'sim-1', 'sim-2', 'sim-3', 'sim-4']);
    expect(Object.values(before).filter((s) => s === 'HEALTHY')).toHaveLength(3);
    expect(Object.values(before).filter((s) => s === 'PENDING')).toHaveLength(3);
    expect(await page.locator('.wave[data-wave="0"] [role=progressbar]').getAttribute('aria-valuenow')).toBe('3');
    expect(await page.locator('.wave[data-wave="1"]').getAttribute('data-status')).toBe('pending');
    await page.getByRole('button', { name: /^Abort/ }).waitFor();
    expect(await page.getByRole('button', { name: 'Resume rollout' }).count()).toBe(0);

    // Record every state the rows show from now on, without reloading: the view updates itself.
    await page.evaluate(() => {
      const seen: Record<string, string[]> = {};
      (window as unknown as { seenStates: typeof seen }).seenStates = seen;
      const record = () => {
        for (const r of document.querySelectorAll<HTMLElement>('#rollout-devices tbody tr')) {
          const list = (seen[r.dataset.device!] ??= []);
          if (list.at(-1) !== r.dataset.state) list.push(r.dataset.state!);
        }
      };
      record();
      new MutationObserver(record).observe(document.getElementById('rollout-devices')!, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
    });
    await page.getByRole('button', { name: 'Approve wave 2' }).click();

    await page.locator('.status-holder [data-status=completed]').waitFor({ timeout: 40_000 });
    await page.waitForFunction(() => document.querySelectorAll('#rollout-devices tbody tr[data-state=HEALTHY]').length === 6);
    const after = await rowStates(page);
    expect(Object.values(after)).toEqual(Array(6).fill('HEALTHY'));
    const seen = await page.evaluate(() => (window as unknown as { seenStates: Record<string, string[]> }).seenStates);
    const secondWave = Object.keys(before).filter((n) => before[n] === 'PENDING');
    for (const name of secondWave) {
      expect(seen[name]![0], name).toBe('PENDING');
      expect(seen[name]!.at(-1), name).toBe('HEALTHY');
    }
    expect(await page.locator('.summary [role=progressbar]').first().getAttribute('aria-valuenow')).toBe('6');
    expect(await page.locator('.wave[data-status=complete]').count()).toBe(2);
    // No action is left for a completed rollout.
    expect(await page.locator('.actions button').count()).toBe(0);
    await page.screenshot({ path: path.join(RESULTS, 'rollout-detail.png'), fullPage: true });

    // The live view streamed with single-use tickets: the key was never in a URL.
    const streams = requestedUrls.filter((u) => u.includes(`/api/v1/rollouts/${id}/events`));
    expect(streams.length).toBeGreaterThan(0);
    for (const u of streams) expect(u).toMatch(/\/events\?ticket=mesh_st_[^&]*&view=summary$/);
    // The table is read a page at a time, never as the whole detail.
    expect(requestedUrls.some((u) => u.includes(`/api/v1/rollouts/${id}/devices?limit=200`))).toBe(true);
    expect(requestedUrls.filter((u) => new URL(u).pathname === `/api/v1/rollouts/${id}`)).toEqual([]);
    expect(requestedUrls.filter((u) => u.includes(`/api/v1/rollouts/${id}/approve`))).toEqual([expect.stringMatching(/\/approve\?view=summary$/)]);
    // Filters read the matching devices: the second wave's three; no failed device.
    await page.locator('#devices-wave').selectOption('1');
    await page.locator('#devices-range').filter({ hasText: 'Devices 1–3 of 3' }).waitFor();
    expect(Object.keys(await rowStates(page)).sort()).toEqual(secondWave.sort());
    await page.locator('#devices-wave').selectOption('');
    await page.locator('#devices-state').selectOption('FAILED');
    await page.locator('#devices-range').filter({ hasText: 'No device matches.' }).waitFor();
    expect(await page.locator('#rollout-devices tbody tr').count()).toBe(0);
    expect(requestedUrls.filter((u) => u.includes(env.adminKey) || u.includes('access_token'))).toEqual([]);

    // The agents really installed it.
    const device = await meshanics(['devices', 'show', 'lab/edge-1', '--json'], env.admin);
    expect(JSON.parse(device.stdout).installed).toEqual([expect.objectContaining({ name: 'detector', version: '1.0.0', state: 'HEALTHY' })]);
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("shows a halted rollout's reason; resume and abort only for keys that hold the right", async () => {
    const created = await meshanics(
      [
        'rollouts',
        'create',
        '--fleet',
        'lab',
        '--artifact',
        'detector@2.0.0',
        '--group',
        'sims',
        '--devices',
        'sim-1,sim-2,sim-3,sim-4',
        '--probe-type',
        'file',
        '--probe-spec',
        JSON.stringify({ path: readyFile }),
        '--json',
      ],
      env.admin,
    );
    expect(created.code, created.stderr).toBe(0);
    const id = JSON.parse(created.stdout).id as string;
    await go(page, `/rollouts/${id}`);
    const halt = page.locator('#halt-reason');
    await halt.waitFor({ timeout: 30_000 });
    await page.locator('.status-holder [data-status=halted]').waitFor();
    expect(await halt.getAttribute('role')).toBe('alert');
    expect(await halt.textContent()).toMatch(/Rollout halted/);
    const reason = JSON.parse((await meshanics(['rollouts', 'show', id, '--json'], env.admin)).stdout).halt.reason as string;
    expect(reason).toBeTruthy();
    expect(await halt.locator('.halt-text').textContent()).toBe(reason);
    await page.waitForFunction(() => document.querySelector('#rollout-devices tr[data-device="sim-3"]')?.getAttribute('data-state') === 'ROLLED_BACK');
    expect(await page.locator('#rollout-devices tr[data-device="sim-3"] td.reason').textContent()).toContain('probe file: /run/app/ready missing');
    await page.getByRole('button', { name: 'Resume rollout' }).waitFor();
    await page.getByRole('button', { name: /^Abort/ }).waitFor();
    expect(await page.getByRole('button', { name: /^Approve/ }).count()).toBe(0);
    await page.screenshot({ path: path.join(RESULTS, 'rollout-halted.png'), fullPage: true });

    // A read-only key sees the same reason, and no button it could not use.
    const viewer = await newPage();
    await signIn(viewer, viewerKey);
    await go(viewer, `/rollouts/${id}`);
    await viewer.locator('#halt-reason .halt-text').filter({ hasText: reason }).waitFor();
    expect(await viewer.locator('#halt-reason').textContent()).toContain('Resuming needs a key with the approve right');
    expect(await viewer.getByRole('button', { name: /Resume|Abort|Approve/ }).count()).toBe(0);
    expect(await viewer.getByRole('navigation', { name: 'Main' }).getByRole('link').allTextContents()).toEqual(['Overview', 'Devices', 'Artifacts', 'Rollouts']);
    await viewer.close();

    // The admin aborts it, sending the updated devices back.
    await page.getByRole('button', { name: 'Abort…' }).click();
    await page.getByLabel('go back to their previous version (policy revert)').check();
    await page.getByRole('button', { name: 'Abort rollout' }).click();
    await page.locator('.status-holder [data-status=aborted]').waitFor();
    expect(await page.locator('.props').textContent()).toContain('revert');
    expect(await page.getByRole('button', { name: /Resume|Abort/ }).count()).toBe(0);
  });

  it('shows the overview, a device with its installed artifacts and history, the artifacts and the verified audit chain', async () => {
    await go(page, '/');
    await page.getByRole('heading', { name: /Active rollouts/ }).waitFor();
    await page.screenshot({ path: path.join(RESULTS, 'console-overview.png'), fullPage: true });
    await go(page, '/devices/lab/edge-1');
    await page.getByRole('heading', { name: 'Installed artifacts' }).waitFor();
    const installed = await page.locator('section[aria-labelledby=installed-h] tbody tr').first().textContent();
    expect(installed).toMatch(/detector.*model.*1\.0\.0.*Healthy/);
    expect(await page.locator('section[aria-labelledby=history-h] tbody tr').count()).toBeGreaterThanOrEqual(4);
    expect(await page.locator('.props').textContent()).toContain('spiffe://meshanics.local/fleet/lab/device/edge-1');
    await page.getByRole('button', { name: 'Decommission…' }).waitFor();
    await page.screenshot({ path: path.join(RESULTS, 'console-device.png'), fullPage: true });

    await go(page, '/artifacts');
    await page.locator('table tbody tr').nth(1).waitFor();
    expect(await page.locator('table tbody tr').count()).toBe(2);

    await go(page, '/audit');
    await page.locator('#chain-status[data-verified=true]').waitFor();
    expect(await page.locator('#chain-status').textContent()).toMatch(/Chain verified/);
    await page.locator('table tbody tr').nth(5).waitFor();
    await page.screenshot({ path: path.join(RESULTS, 'console-audit.png') });
    expect(pageErrors).toEqual([]);
  });

  it('lists rollouts and devices, requests and downloads a device log bundle, and decommissions a device', async () => {
    await go(page, '/rollouts');
    await page.locator('table tbody tr').nth(1).waitFor();
    const statuses = await page.locator('table tbody [data-status]').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.status));
    expect(statuses).toEqual(['aborted', 'completed']);

    await go(page, '/devices?online=true');
    await page.locator('table tbody tr').nth(5).waitFor();
    expect(await page.locator('table tbody tr').count()).toBe(6);
    await page.getByRole('link', { name: 'sim-4' }).click();
    await page.getByRole('heading', { name: 'Logs' }).waitFor();
    await page.getByRole('button', { name: 'Request logs' }).click();
    await page.getByText(/Requested logs \(request /).waitFor();
    // The simulated device uploads at its next heartbeat; the page refreshes the list itself.
    const downloadButton = page.getByRole('button', { name: 'Download' });
    await downloadButton.waitFor({ timeout: 15_000 });
    const [download] = await Promise.all([page.waitForEvent('download'), downloadButton.click()]);
    expect(download.suggestedFilename()).toMatch(/^lab-sim-4-.+\.gz$/);

    await page.getByRole('button', { name: 'Decommission…' }).click();
    await page.getByRole('button', { name: 'Yes, decommission sim-4' }).click();
    await page.locator('h1 [data-status=decommissioned]').waitFor();
    expect(await page.getByRole('button', { name: /Decommission/ }).count()).toBe(0);
    expect(pageErrors).toEqual([]);
  });

  it("pages a rollout of 450 devices 200 at a time, forward and back, within a wave's filter too", async () => {
    // Devices that never connect: the rollout stays pending, which is all this needs.
    const names = Array.from({ length: 450 }, (_, i) => `big-${String(i).padStart(3, '0')}`);
    await registerIdleDevices(env.server.dataDir, 'big', names);
    const created = await meshanics(
      [
        'rollouts',
        'create',
        '--fleet',
        'big',
        '--artifact',
        'detector@1.0.0',
        '--group',
        'all-big',
        '--devices',
        names.join(','),
        '--probe-type',
        'file',
        '--probe-spec',
        JSON.stringify({ path: readyFile }),
        '--waves',
        '50,100',
        '--json',
      ],
      env.admin,
    );
    expect(created.code, created.stderr).toBe(0);
    const id = JSON.parse(created.stdout).id as string;
    const planned = JSON.parse((await meshanics(['rollouts', 'devices', id, '--all', '--json'], env.admin)).stdout).items as Array<{ name: string; wave: number }>;
    expect(planned).toHaveLength(450);
    const shownNames = () => page.$$eval('#rollout-devices tbody tr', (rows) => rows.map((r) => (r as HTMLElement).dataset.device!));
    const showsRange = async (range: string, from: Array<{ name: string }>) => {
      await page.locator('#devices-range').filter({ hasText: range }).waitFor();
      expect(await shownNames()).toEqual(from.map((d) => d.name));
    };

    // Its own tab and session: the test stands alone (-t) as well as after the others.
    const previous = page;
    page = await newPage();
    await previous.close();
    await signIn(page, env.adminKey);
    const next = page.locator('#devices-next');
    const prev = page.locator('#devices-prev');
    await go(page, `/rollouts/${id}`);
    await showsRange('Devices 1–200 of 450', planned.slice(0, 200));
    expect(await prev.isDisabled()).toBe(true);
    await next.click();
    await showsRange('Devices 201–400 of 450', planned.slice(200, 400));
    await next.click();
    await showsRange('Devices 401–450 of 450', planned.slice(400));
    expect(await next.isDisabled()).toBe(true);
    await prev.click();
    await showsRange('Devices 201–400 of 450', planned.slice(200, 400));
    await prev.click();
    await showsRange('Devices 1–200 of 450', planned.slice(0, 200));

    // A filter starts again at its first page; its pages hold only its devices.
    const secondWave = planned.filter((d) => d.wave === 1);
    expect(secondWave).toHaveLength(225);
    await next.click();
    await page.locator('#devices-range').filter({ hasText: 'Devices 201–400' }).waitFor();
    await page.locator('#devices-wave').selectOption('1');
    await showsRange('Devices 1–200 of 225', secondWave.slice(0, 200));
    await next.click();
    await showsRange('Devices 201–225 of 225', secondWave.slice(200));
    expect(await next.isDisabled()).toBe(true);
    // Every page came from the paged route, never the whole detail, nor a stream of it.
    expect(requestedUrls.filter((u) => new URL(u).pathname === `/api/v1/rollouts/${id}`)).toEqual([]);
    const streams = requestedUrls.filter((u) => new URL(u).pathname === `/api/v1/rollouts/${id}/events`);
    expect(streams.length).toBeGreaterThan(0);
    for (const u of streams) expect(new URL(u).searchParams.get('view')).toBe('summary');
    expect(pageErrors).toEqual([]);
  });
});
