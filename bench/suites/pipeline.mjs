// 3. Agent pipeline: a large model through download, verify and apply, from the real server
// to the real agent process over mTLS (file probe already satisfied), next to sha256sum, cp
// and a one-pass Node read -> sha256 -> write + fsync (1 MiB chunks) of the same file in the
// same run. Throughput ratio, and the agent's peak RSS (VmHWM) at several artifact sizes.
import { execFile } from 'node:child_process';
import { promises as fs, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { createAssignment, openDataDir } from '@meshanics/server';
import { generateFile, issueCert, publishModel, stateTimes, syncFs, waitForState } from '../lib/artifacts.mjs';
import { initServerDataDir, startMeshAgent, startMeshServer, workerPath } from '../lib/fixtures.mjs';
import { fmtBytes, progress } from '../lib/log.mjs';
import { cpuMs, freeBytes, memory, memoryPoller } from '../lib/proc.mjs';
import { ratio, summarize } from '../lib/stats.mjs';

const SUITE = 'pipeline';
const MiB = 1024 * 1024;
const execFileP = promisify(execFile);

export const CONFIG = {
  // references: also time sha256sum, cp and the one-pass reference on the same file.
  // 4 GiB once: VmHWM is the kernel's own maximum over the run, and one 4 GiB install takes over a minute here.
  full: {
    sizes: [
      { MiB: 1024, runs: 5, references: true },
      { MiB: 64, runs: 5 },
      { MiB: 4096, runs: 1 },
    ],
  },
  smoke: { sizes: [{ MiB: 16, runs: 1, references: true }] },
};

const RSS_TARGET = 120 * 1000 * 1000;

async function timed(fn) {
  const t0 = performance.now();
  const out = await fn();
  return { ms: performance.now() - t0, out };
}

/**
 * The references on the target file (and its URL), in a rotating order. Returns MiB/s per
 * reference, and CPU seconds per GiB for the ones that are Node processes of their own.
 */
async function references({ file, url, certDir }, scratchDir, bytes, expectedSha256, round) {
  const out = path.join(scratchDir, 'reference.out');
  const node = async (args, check) => {
    const { stdout } = await execFileP(process.execPath, args, { maxBuffer: 1 << 20 });
    const r = JSON.parse(stdout);
    if (r.bytes !== bytes || (r.sha256 && r.sha256 !== expectedSha256)) throw new Error(`${check} reference got other bytes than the target`);
    return { ms: r.ms, cpuMs: r.cpuMs };
  };
  const steps = {
    httpsDiscard: () => node([workerPath('https-fetch.mjs'), 'discard', url, certDir, out], 'https discard'),
    httpsOnepass: () => node([workerPath('https-fetch.mjs'), 'onepass', url, certDir, out], 'https one-pass'),
    onepass: () => node([workerPath('onepass.mjs'), file, out, String(MiB)], 'one-pass'),
    sha256sum: async () => timed(() => execFileP('sha256sum', [file])),
    cp: async () =>
      timed(async () => {
        await execFileP('cp', [file, out]);
        await execFileP('sync', [out]);
      }),
  };
  const names = Object.keys(steps);
  const result = { cpuSecondsPerGiB: {} };
  for (let i = 0; i < names.length; i++) {
    const name = names[(i + round) % names.length];
    syncFs(scratchDir);
    const { ms, cpuMs } = await steps[name]();
    result[name] = bytes / MiB / (ms / 1000);
    if (cpuMs !== undefined) result.cpuSecondsPerGiB[name] = cpuMs / 1000 / (bytes / 1024 ** 3);
    await fs.rm(out, { force: true });
  }
  return result;
}

export async function run({ mode, work, overrides = {} }) {
  const cfg = { ...CONFIG[mode], ...overrides };
  const dataDir = path.join(work, 'server');
  await initServerDataDir(dataDir);
  const readyFile = path.join(work, 'ready');
  writeFileSync(readyFile, 'loaded\n');
  const ctx = await openDataDir({ dataDir });
  const server = await startMeshServer(dataDir, { heartbeatSeconds: 1 });
  const results = [];
  const rows = [];
  try {
    for (const size of cfg.sizes) {
      const bytes = size.MiB * MiB;
      // Source, staged copy while publishing, the target, the agent's staging file and a reference output.
      const need = 4 * bytes + 512 * MiB;
      const free = freeBytes(work);
      if (free < need) {
        progress(SUITE, `SKIPPED ${fmtBytes(bytes)}: needs ${fmtBytes(need)} free, ${fmtBytes(free)} available`);
        results.push({ MiB: size.MiB, skipped: `needs ${need} bytes free, ${free} available` });
        continue;
      }
      const name = `model${size.MiB}`;
      const source = path.join(work, `${name}.src`);
      progress(SUITE, `${fmtBytes(bytes)}: generating and publishing the model`);
      await generateFile(source, bytes);
      const published = await publishModel(ctx, dataDir, source, name);
      await fs.rm(source);
      const runs = [];
      for (let i = 0; i < size.runs; i++) {
        const device = `${name}-${i}`;
        const certDir = path.join(work, 'creds', device);
        const agentDir = path.join(work, 'agents', device);
        await issueCert(dataDir, 'bench', device, certDir);
        const agent = startMeshAgent(server, certDir, agentDir);
        await agent.waitForLine((l) => l && l.msg === 'registered', 30_000);
        syncFs(work);
        const poller = memoryPoller(agent.proc.pid, 50);
        const agentCpu0 = cpuMs(agent.proc.pid);
        const serverCpu0 = cpuMs(server.proc.pid);
        const { assignmentId } = await createAssignment(ctx, {
          fleet: 'bench',
          device,
          artifact: name,
          version: '1.0.0',
          probe: { type: 'file', spec: { path: readyFile }, timeoutSeconds: 10, attempts: 1, initialDelaySeconds: 0 },
          actor: 'bench',
        });
        const end = await waitForState(agent, assignmentId, ['HEALTHY', 'FAILED', 'ROLLED_BACK'], 120_000 + (bytes / (10 * MiB)) * 1000);
        const hwm = memory(agent.proc.pid).hwm;
        const polled = poller.stop();
        const agentCpu = cpuMs(agent.proc.pid) - agentCpu0;
        const serverCpu = cpuMs(server.proc.pid) - serverCpu0;
        if (end.state !== 'HEALTHY') throw new Error(`${device}: assignment ended ${end.state}: ${end.reason}`);
        const live = path.join(agentDir, 'artifacts', 'model', name, 'model.bin');
        const liveSize = (await fs.stat(live)).size;
        if (liveSize !== bytes) throw new Error(`${device}: live model has ${liveSize} bytes, expected ${bytes}`);
        const t = stateTimes(agent, assignmentId);
        await agent.stop();
        await fs.rm(agentDir, { recursive: true, force: true });
        const totalMs = t.HEALTHY - t.DOWNLOADING;
        const r = {
          device,
          peakRss: Math.max(hwm ?? 0, polled.hwm),
          maxSampledRss: polled.maxRss,
          pipelineMs: totalMs,
          downloadMs: t.VERIFYING - t.DOWNLOADING,
          applyMs: t.HEALTHY - t.APPLYING,
          mibPerSec: size.MiB / (totalMs / 1000),
          downloadMibPerSec: size.MiB / ((t.VERIFYING - t.DOWNLOADING) / 1000),
          agentCpuMs: agentCpu,
          serverCpuMs: serverCpu,
        };
        if (size.references) {
          const url = `${server.artifacts}/tuf/targets/${path.relative(path.join(dataDir, 'tuf', 'repo', 'targets'), published.targetFile)}`;
          r.references = await references({ file: published.targetFile, url, certDir }, work, bytes, published.sha256, i);
        }
        runs.push(r);
        progress(
          SUITE,
          `${fmtBytes(bytes)} run ${i + 1}/${size.runs}: agent ${r.mibPerSec.toFixed(0)} MiB/s end to end (download+hash ${r.downloadMibPerSec.toFixed(0)} MiB/s), peak RSS ${fmtBytes(r.peakRss)}` +
            (r.references
              ? `; one-pass ${r.references.onepass.toFixed(0)}, sha256sum ${r.references.sha256sum.toFixed(0)}, cp+sync ${r.references.cp.toFixed(0)}, ` +
                `https discard ${r.references.httpsDiscard.toFixed(0)}, https 1 MiB one-pass ${r.references.httpsOnepass.toFixed(0)} MiB/s; ` +
                `CPU ${(r.agentCpuMs / 1000 / (bytes / 1024 ** 3)).toFixed(2)} s/GiB vs https one-pass ${r.references.cpuSecondsPerGiB.httpsOnepass.toFixed(2)} s/GiB`
              : ''),
        );
        await fs.rm(certDir, { recursive: true, force: true });
      }
      await fs.rm(published.targetFile, { force: true });
      const rss = summarize(runs.map((r) => r.peakRss));
      const entry = { MiB: size.MiB, bytes, sha256: published.sha256, runs, peakRss: rss };
      results.push(entry);
      if (size.references) {
        const vs = (key) => summarize(runs.map((r) => ratio(r.mibPerSec, r.references[key])));
        const onepass = vs('onepass');
        entry.throughput = summarize(runs.map((r) => r.mibPerSec));
        entry.ratios = {
          onepass,
          sha256sum: vs('sha256sum'),
          cp: vs('cp'),
          httpsDiscard: vs('httpsDiscard'),
          httpsOnepass: vs('httpsOnepass'),
          cpuPerGiB: summarize(runs.map((r) => ratio(r.agentCpuMs / 1000 / (bytes / 1024 ** 3), r.references.cpuSecondsPerGiB.httpsOnepass))),
        };
        const label = fmtBytes(bytes);
        // Issue 30 sets both targets at 1 GiB: below it the install's fixed work (TUF refresh,
        // state writes, reports, apply, probe) weighs more, so a smaller size is shown, not judged.
        const judged = (target, r, pass) => (size.MiB >= 1024 ? { target, met: r.median !== null ? pass(r.median) : null } : { target: `${target} (judged at 1 GiB)`, met: null });
        rows.push(
          {
            suite: SUITE,
            metric: `${label}: agent download+verify+apply`,
            unit: 'MiB/s',
            value: entry.throughput,
            baseline: summarize(runs.map((r) => r.references.onepass)),
            baselineName: 'one-pass',
            ratio: onepass,
          },
          {
            suite: SUITE,
            metric: `${label}: agent download+hash phase only`,
            unit: 'MiB/s',
            value: summarize(runs.map((r) => r.downloadMibPerSec)),
            baseline: summarize(runs.map((r) => r.references.onepass)),
            baselineName: 'one-pass',
            ratio: summarize(runs.map((r) => ratio(r.downloadMibPerSec, r.references.onepass))),
          },
          {
            suite: SUITE,
            metric: `${label}: agent vs sha256sum`,
            unit: 'MiB/s',
            value: entry.throughput,
            baseline: summarize(runs.map((r) => r.references.sha256sum)),
            baselineName: 'sha256sum',
            ratio: entry.ratios.sha256sum,
          },
          {
            suite: SUITE,
            metric: `${label}: agent vs cp + sync`,
            unit: 'MiB/s',
            value: entry.throughput,
            baseline: summarize(runs.map((r) => r.references.cp)),
            baselineName: 'cp+sync',
            ratio: entry.ratios.cp,
          },
          {
            suite: SUITE,
            metric: `${label}: agent vs https download (discard)`,
            unit: 'MiB/s',
            value: entry.throughput,
            baseline: summarize(runs.map((r) => r.references.httpsDiscard)),
            baselineName: 'https',
            ratio: entry.ratios.httpsDiscard,
          },
          {
            suite: SUITE,
            metric: `${label}: agent vs https + 1 MiB one-pass`,
            unit: 'MiB/s',
            value: entry.throughput,
            baseline: summarize(runs.map((r) => r.references.httpsOnepass)),
            baselineName: 'https 1 MiB',
            ratio: entry.ratios.httpsOnepass,
            // Issue 30: the same-run bare Node https client doing the same one-pass hash + write +
            // fsync is the reference (it replaced ">= 0.8x a local read", which the TLS transport
            // on a 2-core machine cannot reach).
            ...judged('≥ 0.9× https one-pass', entry.ratios.httpsOnepass, (r) => r >= 0.9),
          },
          {
            suite: SUITE,
            metric: `${label}: agent CPU per GiB`,
            unit: 's',
            value: summarize(runs.map((r) => r.agentCpuMs / 1000 / (bytes / 1024 ** 3))),
            baseline: summarize(runs.map((r) => r.references.cpuSecondsPerGiB.httpsOnepass)),
            baselineName: 'https 1 MiB',
            ratio: entry.ratios.cpuPerGiB,
            // Issue 30: CPU time, not wall time, so the ratio holds on a loaded machine too.
            ...judged('≤ 1.1× https one-pass', entry.ratios.cpuPerGiB, (r) => r <= 1.1),
          },
        );
      }
    }
  } finally {
    await ctx.close();
    await server.stop();
  }
  // Peak RSS at every size: flat is the claim, 120 MB the target.
  for (const e of results) {
    if (e.skipped) {
      rows.push({ suite: SUITE, metric: `${fmtBytes(e.MiB * MiB)}: agent peak RSS`, unit: 'bytes', value: `skipped (disk)`, target: '< 120 MB', met: null });
      continue;
    }
    const smallest = results.find((x) => !x.skipped);
    rows.push({
      suite: SUITE,
      metric: `${fmtBytes(e.bytes)}: agent peak RSS (VmHWM)`,
      unit: 'bytes',
      value: e.peakRss,
      baseline: smallest.peakRss,
      baselineName: fmtBytes(smallest.bytes),
      ratio: summarize(e.runs.map((r, i) => ratio(r.peakRss, smallest.runs[i % smallest.runs.length].peakRss))),
      target: '< 120 MB',
      met: e.peakRss.max < RSS_TARGET,
    });
  }
  return { config: cfg, sizes: results, rows };
}
