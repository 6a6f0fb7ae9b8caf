import path from 'node:path';
import https from 'node:https';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, promises as fs } from 'node:fs';
import { openDataDir } from '@meshanics/server';
import { generateFile, issueCert, publishModel } from '../lib/artifacts.mjs';
import { initServerDataDir, startMeshServer } from '../lib/fixtures.mjs';
import { stopAll } from '../lib/workers.mjs';
import { cpuMs } from '../lib/proc.mjs';
const work = '/tmp/bt/dl'; await fs.rm(work, { recursive: true, force: true }); await fs.mkdir(work, { recursive: true });
const dataDir = path.join(work, 'server');
await initServerDataDir(dataDir);
const ctx = openDataDir({ dataDir });
const server = await startMeshServer(dataDir, { heartbeatSeconds: 30 });
try {
  const size = 512 * 1024 * 1024;
  await generateFile(path.join(work, 'src'), size);
  const pub = await publishModel(ctx, dataDir, path.join(work, 'src'), 'm');
  await fs.rm(path.join(work, 'src'));
  await issueCert(dataDir, 'bench', 'd1', path.join(work, 'c'));
  const c = path.join(work, 'c');
  const agent = new https.Agent({ ca: readFileSync(c + '/ca.crt'), cert: readFileSync(c + '/device.crt'), key: readFileSync(c + '/device.key'), keepAlive: true, maxSockets: 4 });
  const url = `${server.artifacts}/tuf/targets/${path.relative(path.join(dataDir, 'tuf/repo/targets'), pub.targetFile)}`;
  const get = () => new Promise((res, rej) => https.get(url, { agent }, res).on('error', rej));
  async function trial(name, consume) {
    const s0 = cpuMs(server.proc.pid), c0 = cpuMs(process.pid);
    const t0 = performance.now();
    const res = await get();
    if (res.statusCode !== 200) throw new Error('status ' + res.statusCode);
    const sizes = [];
    await consume(res, sizes);
    const ms = performance.now() - t0;
    sizes.sort((a, b) => a - b);
    console.log(name.padEnd(28), (size / 1048576 / (ms / 1000)).toFixed(0).padStart(5), 'MiB/s', 'chunks', sizes.length, 'median chunk', sizes[sizes.length >> 1], 'server cpu s/GiB', ((cpuMs(server.proc.pid) - s0) / 1000 / (size / 2 ** 30)).toFixed(2), 'client cpu s/GiB', ((cpuMs(process.pid) - c0) / 1000 / (size / 2 ** 30)).toFixed(2));
  }
  for (let round = 0; round < 2; round++) {
    await trial('discard', async (res, sizes) => { for await (const ch of res) sizes.push(ch.length); });
    await trial('hash only', async (res, sizes) => { const h = createHash('sha256'); for await (const ch of res) { sizes.push(ch.length); h.update(ch); } h.digest(); });
    await trial('hash + await write/chunk', async (res, sizes) => { const h = createHash('sha256'); const fh = await fs.open(path.join(work, 'out'), 'w'); for await (const ch of res) { sizes.push(ch.length); h.update(ch); await fh.write(ch); } await fh.sync(); await fh.close(); });
    await trial('hash + 1MiB coalesced write', async (res, sizes) => { const h = createHash('sha256'); const fh = await fs.open(path.join(work, 'out'), 'w'); let buf = []; let n = 0; for await (const ch of res) { sizes.push(ch.length); h.update(ch); buf.push(ch); n += ch.length; if (n >= 1 << 20) { await fh.writev(buf); buf = []; n = 0; } } if (n) await fh.writev(buf); await fh.sync(); await fh.close(); });
  }
} finally { ctx.close(); await stopAll(); }
