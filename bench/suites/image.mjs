// 6. The server image (issue 25): its size, and cold start to /readyz: `podman run` of the
// image on a new volume (so the start includes initializing the data dir: CA, server
// certificate, TUF keys) until GET /readyz answers 200, next to the same server started from the
// checkout on a new data dir in the same run (the baseline: what the container itself adds).
// Also the time of an image rebuild after a code change (dependencies and base cached).
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { BENCH_DIR } from '../lib/fixtures.mjs';
import { fmtBytes, progress, sleep } from '../lib/log.mjs';
import { ratio, summarize } from '../lib/stats.mjs';
import { freePorts, podman, runServerContainer } from '../../scripts/image/podman.mjs';
import { SERVER_CLI, serveArgs } from '../../scripts/lib/processes.mjs';

const SUITE = 'image';
const ROOT = path.join(BENCH_DIR, '..');
const SIZE_TARGET = 250 * 1000 * 1000;
const START_TARGET_MS = 2000;
const execFileP = promisify(execFile);

export const CONFIG = {
  full: { starts: 5 },
  smoke: { starts: 1 },
};

async function untilReady(url, deadlineMs = 30_000) {
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`${url} not ready within ${deadlineMs} ms`);
    await sleep(20);
  }
}

async function containerStartMs(tag, n) {
  const [grpc, artifacts, enroll, api] = await freePorts(4);
  const name = `meshanics-bench-${process.pid}-${n}`;
  const volume = `${name}-data`;
  await podman(['volume', 'create', volume]);
  try {
    const t0 = performance.now();
    await runServerContainer(tag, {
      name,
      volume,
      env: {
        MESHANICS_GRPC_LISTEN: `127.0.0.1:${grpc}`,
        MESHANICS_ARTIFACT_LISTEN: `127.0.0.1:${artifacts}`,
        MESHANICS_ENROLL_LISTEN: `127.0.0.1:${enroll}`,
        MESHANICS_API_LISTEN: `127.0.0.1:${api}`,
      },
    });
    await untilReady(`http://127.0.0.1:${api}/readyz`);
    const first = performance.now() - t0;
    await podman(['stop', '-t', '10', name]);
    const t1 = performance.now();
    await podman(['start', name]);
    await untilReady(`http://127.0.0.1:${api}/readyz`);
    return { first, restart: performance.now() - t1 };
  } finally {
    await podman(['rm', '-f', '-t', '2', name]).catch(() => undefined);
    await podman(['volume', 'rm', '-f', volume]).catch(() => undefined);
  }
}

async function checkoutStartMs(work, n) {
  const dir = path.join(work, `checkout-${n}`);
  mkdirSync(dir, { recursive: true });
  const [api] = await freePorts(1);
  const t0 = performance.now();
  const child = spawn(process.execPath, [SERVER_CLI, ...serveArgs(dir, ['--api-listen', `127.0.0.1:${api}`])], { stdio: 'ignore' });
  try {
    await untilReady(`http://127.0.0.1:${api}/readyz`);
    return performance.now() - t0;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run({ mode, work, overrides = {} }) {
  const cfg = { ...CONFIG[mode], ...overrides };
  try {
    await podman(['--version']);
  } catch {
    return { config: cfg, skipped: 'podman missing', rows: [{ suite: SUITE, metric: 'server image', value: 'skipped (no podman)' }] };
  }
  progress(SUITE, 'npm run image (workspace already built)');
  const t0 = performance.now();
  const { stdout } = await execFileP(process.execPath, [path.join(ROOT, 'scripts/image/build.mjs'), '--no-build'], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
  const buildMs = performance.now() - t0;
  const image = JSON.parse(stdout.trim().split('\n').at(-1));
  // vfs copies the image for every container: its cold starts are podman's copy, not the server.
  const driver = (await podman(['info', '--format', '{{.Store.GraphDriverName}}'])).stdout.trim();
  progress(SUITE, `${image.tag}: ${fmtBytes(image.sizeBytes)}, built in ${(buildMs / 1000).toFixed(1)} s, podman storage driver ${driver}`);

  const container = [];
  const checkout = [];
  // Alternated, so a noisy moment of the machine lands on both.
  for (let i = 0; i < cfg.starts; i++) {
    container.push(await containerStartMs(image.tag, i));
    checkout.push(await checkoutStartMs(work, i));
    progress(
      SUITE,
      `start ${i + 1}/${cfg.starts}: container ${container.at(-1).first.toFixed(0)} ms (restart ${container.at(-1).restart.toFixed(0)} ms), checkout ${checkout.at(-1).toFixed(0)} ms`,
    );
  }
  const start = summarize(container.map((c) => c.first));
  const restart = summarize(container.map((c) => c.restart));
  const base = summarize(checkout);
  const perRun = summarize(container.map((c, i) => ratio(c.first, checkout[i])));
  return {
    config: { ...cfg, storageDriver: driver },
    image,
    rows: [
      { suite: SUITE, metric: 'server image size', unit: 'bytes', value: summarize([image.sizeBytes]), target: '≤ 250 MB', met: image.sizeBytes <= SIZE_TARGET },
      {
        suite: SUITE,
        metric: 'cold start to /readyz (new volume)',
        unit: 'ms',
        value: start,
        baseline: base,
        baselineName: 'checkout serve',
        ratio: perRun,
        target: '≤ 2 s',
        met: start.median !== null ? start.median <= START_TARGET_MS : null,
      },
      {
        suite: SUITE,
        metric: 'restart to /readyz (existing volume)',
        unit: 'ms',
        value: restart,
        target: '≤ 2 s',
        met: restart.median !== null ? restart.median <= START_TARGET_MS : null,
      },
      { suite: SUITE, metric: 'image rebuild after a code change', unit: 'ms', value: summarize([buildMs]) },
    ],
  };
}
