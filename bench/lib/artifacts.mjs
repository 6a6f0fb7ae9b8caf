// Large model files and the agent runs that install them.
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { hashPrefixedTargetPath } from '@meshanics/core/contract';
import { publishArtifact } from '@meshanics/server';
import { serverCli } from '../../scripts/lib/processes.mjs';
import { progress } from './log.mjs';

const MiB = 1024 * 1024;

/**
 * Writes `bytes` of incompressible data quickly: a random 16 MiB block, each MiB stamped with
 * its index so no two MiB of the file are equal.
 */
export async function generateFile(file, bytes) {
  const block = randomBytes(16 * MiB);
  const handle = await fs.open(file, 'w');
  try {
    for (let off = 0; off < bytes; off += block.length) {
      const n = Math.min(block.length, bytes - off);
      for (let m = 0; m < n; m += MiB) block.writeBigUInt64LE(BigInt(off + m), m);
      await handle.write(block, 0, n);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Publishes `file` as model NAME@1.0.0 and returns the published record and the target file on disk. */
export async function publishModel(ctx, dataDir, file, name) {
  const published = await publishArtifact(ctx, { file, name, version: '1.0.0', kind: 'model', spec: { fileName: 'model.bin' }, actor: 'bench' });
  const targetFile = path.join(dataDir, 'tuf', 'repo', 'targets', hashPrefixedTargetPath(published.targetPath, published.sha256));
  await fs.access(targetFile);
  return { ...published, targetFile };
}

/** `meshanics-server device issue-cert`: the device's key, certificate, CA and pinned TUF root in `outDir`. */
export async function issueCert(dataDir, fleet, name, outDir) {
  await serverCli(dataDir, ['device', 'issue-cert', '--fleet', fleet, '--name', name, '--out', outDir]);
}

/** Flushes dirty pages of the work file system so one measurement never pays for another's writes. */
export function syncFs(dir) {
  try {
    execFileSync('sync', ['-f', dir]);
  } catch {
    execFileSync('sync');
  }
}

/** The agent's "assignment state" log lines for one assignment: state -> first time (epoch ms). */
export function stateTimes(agent, assignmentId) {
  const times = {};
  for (const line of agent.lines) {
    if (!line.includes('"assignment state"') || !line.includes(assignmentId)) continue;
    try {
      const l = JSON.parse(line);
      if (l.assignmentId === assignmentId && times[l.state] === undefined) times[l.state] = l.time;
    } catch {
      // not JSON
    }
  }
  return times;
}

export function waitForState(agent, assignmentId, states, timeoutMs) {
  return agent.waitForLine((l) => l && l.msg === 'assignment state' && l.assignmentId === assignmentId && states.includes(l.state), timeoutMs);
}

export function logEvery(suite, everyMs) {
  let last = 0;
  return (msg) => {
    if (Date.now() - last < everyMs) return;
    last = Date.now();
    progress(suite, msg);
  };
}
