// 6. TUF metadata at catalog size N (issue 23): the bytes one device downloads per refresh and
// the server's time to sign one publish, at N artifacts spread over 10 fleets. The catalog is
// filled through TufRepository.addTargets in batches (what publishing N artifacts signs, minus
// the artifact bytes, which no refresh downloads); each target carries what a publish signs:
// kind, a small spec, the manifest's sha256 and length, the fleet.
// - cold refresh: a new device (pinned root only) runs tuf-js's Updater with the device
//   configuration and looks up one target; every metadata byte it fetches is counted.
// - warm refresh: the same device after one more publish, looking up its target again.
// - baseline: every target in one role, what each refresh downloaded before the hash bins
//   (without the manifests, which made it ~1 MB per artifact more).
// - one publish: wall time of addTarget (sign bin + snapshot + timestamp, the verification
//   gate, the writes with their fsyncs) and its CPU time (the signing and verifying alone).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { openDataDir } from '@meshanics/server';
import { DEVICE_UPDATER_CONFIG } from '@meshanics/core/tuf-verify';
import { BaseFetcher, Updater } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { initServerDataDir } from '../lib/fixtures.mjs';
import { progress } from '../lib/log.mjs';
import { summarize } from '../lib/stats.mjs';

const SUITE = 'tuf';
const FLEETS = 10;
const REFRESH_TARGET = 64 * 1024;
const PUBLISH_TARGET_MS = 100;

export const CONFIG = {
  full: { sizes: [10, 1000, 10000], publishes: 10, batch: 1000 },
  smoke: { sizes: [10, 300], publishes: 3, batch: 150 },
};

/** Serves the repository's metadata dir, counting bytes; 404 for what is not there. */
class CountingFetcher extends BaseFetcher {
  constructor(dir) {
    super();
    this.dir = dir;
    this.bytes = 0;
    this.files = [];
  }

  async fetch(url) {
    const name = decodeURIComponent(url.slice(url.lastIndexOf('/') + 1));
    let bytes;
    try {
      bytes = readFileSync(path.join(this.dir, name));
    } catch {
      throw new DownloadHTTPError(`${name}: 404`, 404);
    }
    this.bytes += bytes.length;
    this.files.push(name);
    return new Blob([bytes]).stream();
  }
}

function target(i) {
  const name = `app-${i}`;
  const manifest = createHash('sha256').update(`manifest ${i}`).digest('hex');
  return {
    path: `${name}/1.0.${i % 100}/${name}`,
    sha256: createHash('sha256').update(name).digest('hex'),
    length: 1_000_000 + i,
    custom: { meshanics: { kind: 'model', spec: { fileName: `${name}.onnx` }, manifest: { sha256: manifest, length: 2048 } } },
    fleet: `fleet-${i % FLEETS}`,
  };
}

async function deviceLookup(metadataDir, deviceDir, targetPath) {
  const fetcher = new CountingFetcher(metadataDir);
  const updater = new Updater({ metadataDir: deviceDir, metadataBaseUrl: 'http://bench/metadata/', fetcher, config: DEVICE_UPDATER_CONFIG });
  await updater.refresh();
  const info = await updater.getTargetInfo(targetPath);
  if (!info) throw new Error(`the device does not find ${targetPath}`);
  return fetcher;
}

/** Bytes of the whole catalog in one role: publisher's targets plus every bin's. */
function oneRoleBytes(ctx) {
  const state = ctx.tuf.readState();
  const meta = state.snapshot.metadata.signed.meta;
  let all = {};
  for (const [file, m] of Object.entries(meta)) {
    if (!file.startsWith('publisher')) continue;
    all = { ...all, ...JSON.parse(readFileSync(path.join(ctx.layout.tufMetadataDir, `${m.version}.${file}`), 'utf8')).signed.targets };
  }
  return Buffer.byteLength(JSON.stringify({ signatures: [{ keyid: 'x'.repeat(64), sig: 'x'.repeat(128) }], signed: { targets: all } }));
}

async function measureSize(work, n, cfg) {
  const dataDir = path.join(work, `n${n}`);
  await initServerDataDir(dataDir);
  const ctx = await openDataDir({ dataDir });
  try {
    const metadataDir = ctx.layout.tufMetadataDir;
    for (let i = 0; i < n; i += cfg.batch) {
      await ctx.tuf.addTargets(Array.from({ length: Math.min(cfg.batch, n - i) }, (_, j) => target(i + j)));
    }
    progress(SUITE, `${n} artifacts signed`);
    const deviceDir = path.join(work, `device-${n}`);
    mkdirSync(deviceDir, { recursive: true });
    writeFileSync(path.join(deviceDir, 'root.json'), ctx.tuf.latestRootBytes());
    const mine = target(Math.floor(n / 2)).path;
    const cold = await deviceLookup(metadataDir, deviceDir, mine);
    const wall = [];
    const cpu = [];
    for (let k = 0; k < cfg.publishes; k += 1) {
      const t = target(n + k);
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await ctx.tuf.addTarget(t);
      wall.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) / 1000);
    }
    const warm = await deviceLookup(metadataDir, deviceDir, mine);
    return { n, cold, warm, wall: summarize(wall), cpu: summarize(cpu), oneRole: oneRoleBytes(ctx) };
  } finally {
    await ctx.close();
  }
}

export async function run({ mode, work, overrides = {} }) {
  const cfg = { ...CONFIG[mode], ...overrides };
  const rows = [];
  const details = [];
  for (const n of cfg.sizes) {
    const m = await measureSize(work, n, cfg);
    progress(
      SUITE,
      `${n}: cold refresh ${m.cold.bytes} B (${m.cold.files.join(', ')}), warm ${m.warm.bytes} B, publish ${m.wall.median?.toFixed(1)} ms wall / ${m.cpu.median?.toFixed(1)} ms CPU`,
    );
    details.push({
      n,
      coldFiles: m.cold.files,
      warmFiles: m.warm.files,
      coldBytes: m.cold.bytes,
      warmBytes: m.warm.bytes,
      oneRoleBytes: m.oneRole,
      publishWallMs: m.wall,
      publishCpuMs: m.cpu,
    });
    const last = n === cfg.sizes.at(-1);
    rows.push(
      {
        suite: SUITE,
        metric: `${n} artifacts / ${FLEETS} fleets: bytes per device refresh (cold, one lookup)`,
        unit: 'bytes',
        value: m.cold.bytes,
        baseline: m.oneRole,
        baselineName: 'one role',
        ratio: { median: m.cold.bytes / m.oneRole, n: 1 },
        ...(last ? { target: '≤ 64 KB', met: m.cold.bytes <= REFRESH_TARGET } : {}),
      },
      { suite: SUITE, metric: `${n} artifacts: bytes per device refresh after one publish (warm)`, unit: 'bytes', value: m.warm.bytes },
      {
        suite: SUITE,
        metric: `${n} artifacts: sign one publish (wall, incl. gate and fsync)`,
        unit: 'ms',
        value: m.wall,
        ...(last ? { target: `< ${PUBLISH_TARGET_MS} ms`, met: m.wall.median < PUBLISH_TARGET_MS } : {}),
      },
      { suite: SUITE, metric: `${n} artifacts: sign one publish (CPU)`, unit: 'ms', value: m.cpu },
    );
  }
  return { config: cfg, details, rows };
}
