import path from 'node:path';
import https from 'node:https';
import readline from 'node:readline';
import { spawn } from 'node:child_process';
import { readFileSync, promises as fs } from 'node:fs';
import { openDataDir } from '@meshanics/server';
import { generateFile, issueCert, publishModel } from '../lib/artifacts.mjs';
import { initServerDataDir } from '../lib/fixtures.mjs';
const work = '/tmp/bt/sp'; await fs.rm(work, { recursive: true, force: true }); await fs.mkdir(work, { recursive: true });
const dataDir = path.join(work, 'server');
await initServerDataDir(dataDir);
const ctx = openDataDir({ dataDir });
await generateFile(path.join(work, 'src'), 512 * 1048576);
const pub = await publishModel(ctx, dataDir, path.join(work, 'src'), 'm');
await issueCert(dataDir, 'bench', 'd1', path.join(work, 'c'));
ctx.close();
const proc = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', work, path.resolve('server/dist/cli.js'), 'serve', '--data-dir', dataDir, '--grpc-listen', '127.0.0.1:0', '--artifact-listen', '127.0.0.1:0', '--enroll-listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
const url0 = await new Promise((res) => readline.createInterface({ input: proc.stdout }).on('line', (l) => { try { const j = JSON.parse(l); if (j.msg === 'server listening') res(j.artifacts); } catch {} }));
const c = path.join(work, 'c');
const agent = new https.Agent({ ca: readFileSync(c + '/ca.crt'), cert: readFileSync(c + '/device.crt'), key: readFileSync(c + '/device.key') });
const url = `${url0}/tuf/targets/${path.relative(path.join(dataDir, 'tuf/repo/targets'), pub.targetFile)}`;
for (let i = 0; i < 2; i++) {
  const t0 = performance.now();
  const res = await new Promise((r, j) => https.get(url, { agent }, r).on('error', j));
  let n = 0; for await (const ch of res) n += ch.length;
  console.log('MiB/s', (n / 1048576 / ((performance.now() - t0) / 1000)).toFixed(0));
}
proc.kill('SIGINT');
await new Promise((r) => proc.on('exit', r));
