// The pipeline's reference: one pass over the file, read -> sha256 -> write, 1 MiB chunks,
// then fsync. What a streaming download that hashes in the same pass can at best do on this
// disk without the network. Args: SRC DST [CHUNK_BYTES]. Prints {bytes, ms, cpuMs, sha256}.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';

const [src, dst, chunkArg] = process.argv.slice(2);
const chunk = Number(chunkArg ?? 1024 * 1024);
const buffer = Buffer.allocUnsafe(chunk);
const t0 = performance.now();
const cpu0 = process.cpuUsage();
const input = await fs.open(src, 'r');
const output = await fs.open(dst, 'w', 0o600);
const hash = createHash('sha256');
let bytes = 0;
try {
  for (;;) {
    const { bytesRead } = await input.read(buffer, 0, chunk, null);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    await output.write(buffer, 0, bytesRead);
    bytes += bytesRead;
  }
  await output.sync();
} finally {
  await input.close();
  await output.close();
}
const cpu = process.cpuUsage(cpu0);
console.log(JSON.stringify({ bytes, ms: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000, sha256: hash.digest('hex'), chunk }));
