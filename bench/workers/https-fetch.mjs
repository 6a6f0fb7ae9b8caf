// Transport references for the pipeline: the same target from the same artifact server over
// the same mTLS, with the device's certificate, by a bare Node https client.
//   discard   read the body and drop it (the ceiling the server and TLS on this machine allow)
//   onepass   sha256 + write in 1 MiB batches + fsync (a download loop with sized buffers)
// Args: MODE URL CERT_DIR [OUT_FILE]. Prints {bytes, ms, cpuMs, sha256?}.
import { createHash } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';

const [mode, url, certDir, outFile] = process.argv.slice(2);
const agent = new https.Agent({
  ca: readFileSync(path.join(certDir, 'ca.crt')),
  cert: readFileSync(path.join(certDir, 'device.crt')),
  key: readFileSync(path.join(certDir, 'device.key')),
});
const t0 = performance.now();
const cpu0 = process.cpuUsage();
const res = await new Promise((resolve, reject) => https.get(url, { agent }, resolve).on('error', reject));
if (res.statusCode !== 200) throw new Error(`GET ${url}: HTTP ${res.statusCode}`);
let bytes = 0;
let sha256;
if (mode === 'discard') {
  for await (const chunk of res) bytes += chunk.length;
} else if (mode === 'onepass') {
  const hash = createHash('sha256');
  const out = await fs.open(outFile, 'w', 0o600);
  try {
    let batch = [];
    let batched = 0;
    for await (const chunk of res) {
      hash.update(chunk);
      batch.push(chunk);
      batched += chunk.length;
      if (batched >= 1024 * 1024) {
        await out.writev(batch);
        bytes += batched;
        batch = [];
        batched = 0;
      }
    }
    if (batched > 0) await out.writev(batch);
    bytes += batched;
    await out.sync();
  } finally {
    await out.close();
  }
  sha256 = hash.digest('hex');
} else {
  throw new Error(`unknown mode ${mode}`);
}
const cpu = process.cpuUsage(cpu0);
console.log(JSON.stringify({ bytes, ms: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000, sha256 }));
agent.destroy();
