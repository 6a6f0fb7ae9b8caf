// 4. Downloads resume: the real agent is killed (SIGKILL) at about half of a large download
// and started again. Checked: the partial file stayed in staging, the restarted agent asked
// for the rest with an HTTP Range request from exactly that offset, the server answered 206
// with only the rest, and the install still verified length and sha256 against the
// TUF-verified target (a corrupted partial is caught). Measured, by an inspecting proxy
// between agent and artifact server: body bytes the server sent, hence the bytes fetched twice.
import { promises as fs, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createAssignment, getAssignment, openDataDir } from '@meshanics/server';
import { generateFile, issueCert, publishModel, stateTimes, waitForState } from '../lib/artifacts.mjs';
import { initServerDataDir, serverPki, startMeshAgent, startMeshServer } from '../lib/fixtures.mjs';
import { startInspectingProxy } from '../lib/inspecting-proxy.mjs';
import { fmtBytes, progress, sleep } from '../lib/log.mjs';
import { fileSize, freeBytes } from '../lib/proc.mjs';
import { summarize } from '../lib/stats.mjs';

const SUITE = 'resume';
const MiB = 1024 * 1024;

export const CONFIG = {
  full: { MiB: 1024, runs: 5, killAt: 0.5, rateMiBps: null, corruptionCheck: true },
  // Throttled by the proxy so a small download can be caught midway.
  smoke: { MiB: 32, runs: 1, killAt: 0.5, rateMiBps: 32, corruptionCheck: true },
};

function readText(file) {
  return fs.readFile(file, 'utf8');
}

export async function run({ mode, work, overrides = {} }) {
  const cfg = { ...CONFIG[mode], ...overrides };
  const bytes = cfg.MiB * MiB;
  const need = 4 * bytes + 512 * MiB;
  if (freeBytes(path.dirname(work)) < need) {
    return { config: cfg, skipped: `needs ${fmtBytes(need)} free`, rows: [{ suite: SUITE, metric: `${fmtBytes(bytes)} resume`, value: 'skipped (disk)' }] };
  }
  const dataDir = path.join(work, 'server');
  await initServerDataDir(dataDir);
  const readyFile = path.join(work, 'ready');
  writeFileSync(readyFile, 'loaded\n');
  const ctx = await openDataDir({ dataDir });
  const server = await startMeshServer(dataDir, { heartbeatSeconds: 1 });
  const serverTls = serverPki(dataDir);
  const runs = [];
  let corruption = null;
  try {
    progress(SUITE, `${fmtBytes(bytes)}: generating and publishing the model`);
    const source = path.join(work, 'model.src');
    await generateFile(source, bytes);
    await publishModel(ctx, dataDir, source, 'resumable');
    await fs.rm(source);

    /** One device: kill its agent at `killAt` of the download, optionally damage the partial, restart. */
    async function killAndResume(device, { corrupt = false } = {}) {
      const certDir = path.join(work, 'creds', device);
      const agentDir = path.join(work, 'agents', device);
      await issueCert(dataDir, 'bench', device, certDir);
      const deviceTls = {
        caPem: await readText(path.join(certDir, 'ca.crt')),
        certPem: await readText(path.join(certDir, 'device.crt')),
        keyPem: await readText(path.join(certDir, 'device.key')),
      };
      const proxy = await startInspectingProxy({
        upstream: server.artifacts,
        serverTls,
        deviceTls,
        rateBytesPerSec: cfg.rateMiBps ? cfg.rateMiBps * MiB : undefined,
      });
      try {
        let agent = startMeshAgent(server, certDir, agentDir, proxy.url);
        await agent.waitForLine((l) => l && l.msg === 'registered', 30_000);
        const { assignmentId } = await createAssignment(ctx, {
          fleet: 'bench',
          device,
          artifact: 'resumable',
          version: '1.0.0',
          probe: { type: 'file', spec: { path: readyFile }, timeoutSeconds: 10, attempts: 1, initialDelaySeconds: 0 },
          actor: 'bench',
        });
        const staging = path.join(agentDir, 'staging', assignmentId.replace(/[^A-Za-z0-9_-]/g, '_'), 'target');
        const t0 = Date.now();
        const deadline = t0 + 120_000 + (bytes / MiB) * 200;
        let last = 0;
        while (fileSize(staging) < bytes * cfg.killAt) {
          if (Date.now() > deadline) throw new Error(`${device}: download never reached ${cfg.killAt * 100}%`);
          if (agent.proc.exitCode !== null) throw new Error(`${device}: agent exited during the download`);
          if (Date.now() - last > 3000) {
            last = Date.now();
            progress(SUITE, `${device}: staging file at ${fmtBytes(fileSize(staging))} of ${fmtBytes(bytes)}`);
          }
          await sleep(5);
        }
        agent.proc.kill('SIGKILL');
        await agent.exit;
        const killedAt = Date.now();
        const stagedAtKill = fileSize(staging);
        // Let the proxy notice the dead connection before reading its counters.
        for (let i = 0; i < 100 && proxy.requests.some((r) => r.url.includes('/tuf/targets/') && !r.done && !r.aborted); i++) await sleep(20);
        const targetRequests = () => proxy.requests.filter((r) => r.url.includes('/tuf/targets/'));
        const sentBeforeKill = targetRequests().reduce((a, r) => a + r.bodyBytes, 0);
        progress(SUITE, `${device}: SIGKILL with ${fmtBytes(stagedAtKill)} in staging (${((stagedAtKill / bytes) * 100).toFixed(1)}%)`);
        if (stagedAtKill === 0) throw new Error(`${device}: no partial file in staging after the kill`);

        if (corrupt) {
          // Flip one byte inside the kept part: only the hash over the whole file can notice.
          const handle = await fs.open(staging, 'r+');
          const at = Math.floor(stagedAtKill / 3);
          const b = Buffer.alloc(1);
          await handle.read(b, 0, 1, at);
          b[0] ^= 0xff;
          await handle.write(b, 0, 1, at);
          await handle.close();
        }

        const restartAt = Date.now();
        agent = startMeshAgent(server, certDir, agentDir, proxy.url);
        const end = await waitForState(agent, assignmentId, ['HEALTHY', 'FAILED', 'ROLLED_BACK'], 120_000 + (bytes / MiB) * 200);
        const endAt = end.time;
        const times = stateTimes(agent, assignmentId);
        await agent.stop();
        const requests = targetRequests();
        const resumed = requests.find((r) => r.at >= restartAt);
        const totalBody = requests.reduce((a, r) => a + r.bodyBytes, 0);
        const view = await getAssignment(ctx, assignmentId);
        const out = {
          device,
          state: end.state,
          reason: end.reason,
          serverState: view.state,
          stagedAtKill,
          killFraction: stagedAtKill / bytes,
          sentBeforeKill,
          lostAtKill: sentBeforeKill - stagedAtKill,
          resumedRequest: resumed ? { range: resumed.range, status: resumed.status, contentRange: resumed.contentRange, bodyBytes: resumed.bodyBytes } : null,
          totalBodyBytes: totalBody,
          fetchedTwice: totalBody - bytes,
          targetRequests: requests.length,
          firstRunMs: killedAt - t0,
          resumeMs: endAt - restartAt,
          resumePipelineMs: times.HEALTHY && times.DOWNLOADING ? times.HEALTHY - times.DOWNLOADING : null,
        };
        await fs.rm(agentDir, { recursive: true, force: true });
        await fs.rm(certDir, { recursive: true, force: true });
        return out;
      } finally {
        await proxy.close();
      }
    }

    for (let i = 0; i < cfg.runs; i++) {
      const r = await killAndResume(`resume-${i}`);
      const expectedRange = `bytes=${r.stagedAtKill}-`;
      const problems = [];
      if (r.state !== 'HEALTHY' || r.serverState !== 'HEALTHY') problems.push(`ended ${r.state} (server: ${r.serverState}): ${r.reason}`);
      if (!r.resumedRequest) problems.push('no target request after the restart');
      else {
        if (r.resumedRequest.range !== expectedRange) problems.push(`restart asked Range ${r.resumedRequest.range}, expected ${expectedRange}`);
        if (r.resumedRequest.status !== 206) problems.push(`server answered ${r.resumedRequest.status} to the Range request`);
        if (r.resumedRequest.bodyBytes !== bytes - r.stagedAtKill) problems.push(`resumed body was ${r.resumedRequest.bodyBytes} bytes, expected ${bytes - r.stagedAtKill}`);
      }
      if (problems.length) throw new Error(`${r.device}: ${problems.join('; ')}`);
      runs.push(r);
      progress(
        SUITE,
        `run ${i + 1}/${cfg.runs}: resumed with ${r.resumedRequest.range} -> ${r.resumedRequest.status} ${r.resumedRequest.contentRange}; ` +
          `server sent ${fmtBytes(r.totalBodyBytes)} for a ${fmtBytes(bytes)} target: ${fmtBytes(r.fetchedTwice)} fetched twice`,
      );
    }
    if (cfg.corruptionCheck) {
      const c = await killAndResume('resume-corrupt', { corrupt: true });
      corruption = { state: c.state, serverState: c.serverState, reason: c.reason, range: c.resumedRequest?.range };
      if (c.state !== 'FAILED' || !/MESH_ERR_DIGEST_MISMATCH/.test(c.reason ?? '')) {
        throw new Error(`a corrupted partial file was not caught: ended ${c.state}: ${c.reason}`);
      }
      progress(SUITE, `corrupted partial: resumed with ${c.resumedRequest?.range}, then ${c.state}: ${c.reason.slice(0, 120)}`);
    }
  } finally {
    await ctx.close();
    await server.stop();
  }
  const twice = summarize(runs.map((r) => r.fetchedTwice));
  const totalRatio = summarize(runs.map((r) => r.totalBodyBytes / bytes));
  const rows = [
    { suite: SUITE, metric: `${fmtBytes(bytes)} killed at ~${cfg.killAt * 100}%: resumed with Range, 206`, value: `${runs.length}/${runs.length} runs` },
    {
      suite: SUITE,
      metric: 'kept in staging at the kill',
      unit: 'bytes',
      value: summarize(runs.map((r) => r.stagedAtKill)),
      baseline: bytes,
      baselineName: 'target',
      ratio: summarize(runs.map((r) => r.stagedAtKill / bytes)),
    },
    {
      suite: SUITE,
      metric: 'bytes fetched twice',
      unit: 'bytes',
      value: twice,
      baseline: bytes,
      baselineName: 'target',
      ratio: summarize(runs.map((r) => r.fetchedTwice / bytes)),
    },
    {
      suite: SUITE,
      metric: 'body bytes sent per install',
      unit: 'bytes',
      value: summarize(runs.map((r) => r.totalBodyBytes)),
      baseline: bytes,
      baselineName: 'target',
      ratio: totalRatio,
    },
    { suite: SUITE, metric: 'byte flipped in the kept part: install ends', value: corruption ? `${corruption.state} (${corruption.reason.split(':')[0]})` : 'not run' },
  ];
  return { config: cfg, bytes, runs, corruption, rows };
}
