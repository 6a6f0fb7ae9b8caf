import path from 'node:path';
import { promises as fs } from 'node:fs';
import { startAgent } from '../../scripts/lib/processes.mjs';
import { issueCert } from '../lib/artifacts.mjs';
import { initServerDataDir, startMeshServer } from '../lib/fixtures.mjs';
import { stopAll, track } from '../lib/workers.mjs';
import { memory } from '../lib/proc.mjs';
import { sleep } from '../lib/log.mjs';
const work = '/tmp/bt/idle'; await fs.rm(work, { recursive: true, force: true }); await fs.mkdir(work, { recursive: true });
const dataDir = path.join(work, 'server');
await initServerDataDir(dataDir);
const server = await startMeshServer(dataDir, { heartbeatSeconds: 30 });
try {
  const variants = { default: [], 'container-runtime none': ['--container-runtime', 'none'], 'model+file only': ['--plugins', '@meshanics/artifact-model,@meshanics/probe-file'] };
  let i = 0;
  for (const [name, extra] of Object.entries(variants)) {
    const c = path.join(work, 'c' + i);
    await issueCert(dataDir, 'x', 'd' + i, c);
    const a = track(startAgent(server, c, path.join(work, 'a' + i), { extraArgs: extra }));
    await a.waitForLine((l) => l && l.msg === 'registered', 30000);
    await sleep(5000);
    console.log(name.padEnd(26), (memory(a.proc.pid).rss / 1048576).toFixed(1), 'MiB');
    await a.stop(); i++;
  }
} finally { await stopAll(); }
