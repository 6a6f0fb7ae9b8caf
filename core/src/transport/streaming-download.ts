// Streams a target to disk, hashing in the same pass that writes it: the artifact is never
// held in memory and never copied through another directory. A partial file left by an
// interrupted download is resumed with an HTTP Range request; its bytes are re-hashed from
// disk first, so the final digest still covers every byte.
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { finished } from 'node:stream/promises';
import type { IncomingMessage } from 'node:http';
import type https from 'node:https';
import { MeshError } from '../errors.js';
import type { VerifiedTarget } from '../plugin.js';
import { HttpStatusError, httpsGet } from './https-get.js';
import { collectYoungGarbage } from './young-gc.js';

const CHUNK = 1024 * 1024;
/** Bytes collected before one write: 1 MiB batches reach the one-pass reference's speed. */
const BATCH = 1024 * 1024;
/** Bytes received between two scavenges of the dead records (young-gc.ts): ~12 MiB less peak RSS. */
const GC_EVERY = 4 * 1024 * 1024;

export interface DownloadOptions {
  agent: https.Agent;
  url: string;
  destination: string;
  /** Length and sha256 from TUF-verified metadata: the only facts the bytes are checked against. */
  target: VerifiedTarget;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface DownloadResult {
  /** Bytes already on disk from an earlier, interrupted attempt. */
  resumedFrom: number;
}

async function hashExisting(file: string, limit: number): Promise<{ size: number; hash: ReturnType<typeof createHash> }> {
  const hash = createHash('sha256');
  let size = 0;
  try {
    const stat = await fs.stat(file);
    if (stat.size === 0 || stat.size > limit) {
      await fs.rm(file, { force: true });
      return { size: 0, hash };
    }
    let sinceGc = 0;
    for await (const chunk of createReadStream(file, { highWaterMark: CHUNK })) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
      sinceGc += (chunk as Buffer).length;
      if (sinceGc >= GC_EVERY) {
        sinceGc = 0;
        collectYoungGarbage();
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return { size, hash };
}

export async function downloadVerified(options: DownloadOptions): Promise<DownloadResult> {
  const { agent, url, destination, target, onProgress, signal } = options;
  let { size: offset, hash } = await hashExisting(destination, target.length);
  const resumedFrom = offset;
  const headers: Record<string, string> = {};
  if (offset > 0 && offset < target.length) headers.range = `bytes=${offset}-`;

  let res: IncomingMessage | undefined;
  if (offset < target.length) {
    try {
      res = await httpsGet(agent, url, { headers, signal });
    } catch (err) {
      throw new MeshError('MESH_ERR_DOWNLOAD_FAILED', `download of ${target.targetPath} failed: ${(err as Error).message}`, { cause: err });
    }
    if (res.statusCode === 200 && offset > 0) {
      // The server ignored the range: start over.
      offset = 0;
      hash = createHash('sha256');
      await fs.rm(destination, { force: true });
    } else if (res.statusCode !== 200 && res.statusCode !== 206) {
      res.resume();
      throw new MeshError('MESH_ERR_DOWNLOAD_FAILED', `download of ${target.targetPath} failed`, {
        cause: new HttpStatusError(res.statusCode ?? 0, url),
      });
    }
  }

  let done = offset;
  if (res) {
    const body = res;
    const handle = await fs.open(destination, offset > 0 ? 'a' : 'w', 0o600);
    // Chunks arrive as 16 KiB TLS records (~65,000 per GiB); one awaited write each costs a
    // thread-pool round trip per record (2.2x the CPU of 1 MiB writes, docs/benchmarks.md).
    // They are hashed as they arrive and written in batches of BATCH bytes, one batch in
    // flight while the next fills: at most 2 x BATCH bytes are ever held, whatever the
    // artifact's size. The body is read in flowing mode ('data' events), not with an async
    // iterator: the iterator costs a promise, a read() and a tick per record, which was the
    // agent's CPU beyond the bare https one-pass reference (docs/benchmarks.md, pipeline).
    // When a full batch finds the previous write still in flight the response is paused until
    // it lands, so a slow disk stops reading from the socket (backpressure reaches the server
    // through TCP) and the bytes land in order.
    let batch: Buffer[] = [];
    let batched = 0;
    let writing: Promise<unknown> | undefined;
    let paused = false;
    let lastProgress = 0;
    const write = (): Promise<unknown> => {
      // The clock is read once per batch (1 MiB), not once per record, and here, where every
      // batch passes, so a slow disk (each batch issued when the previous write lands) still
      // reports progress.
      const now = Date.now();
      if (onProgress && now - lastProgress >= 1000) {
        lastProgress = now;
        onProgress(done, target.length);
      }
      const buffers = batch;
      batch = [];
      batched = 0;
      const inFlight = handle.writev(buffers);
      writing = inFlight;
      inFlight.then(
        () => {
          if (writing === inFlight) writing = undefined;
          if (paused) {
            paused = false;
            if (batched >= BATCH) void write();
            body.resume();
          }
        },
        // A failed write ends the download: the error surfaces from finished() below.
        (err: unknown) => body.destroy(err as Error),
      );
      return inFlight;
    };
    // Awaited before the handle closes: what was received is on disk, in order.
    const drain = async () => {
      while (writing) await writing;
      if (batched > 0) await write();
    };
    let sinceGc = 0;
    body.on('data', (chunk: Buffer) => {
      done += chunk.length;
      // TUF spec 5.7.2: never accept more than the trusted length (endless data attack).
      if (done > target.length) {
        body.destroy(new MeshError('MESH_ERR_DIGEST_MISMATCH', `${target.targetPath}: server sent more than the ${target.length} bytes TUF allows`));
        return;
      }
      hash.update(chunk);
      batch.push(chunk);
      batched += chunk.length;
      sinceGc += chunk.length;
      if (sinceGc >= GC_EVERY) {
        sinceGc = 0;
        collectYoungGarbage();
      }
      if (batched < BATCH) return;
      if (writing) {
        if (!paused) {
          paused = true;
          body.pause();
        }
        return;
      }
      void write();
    });
    try {
      try {
        await finished(body);
      } finally {
        body.removeAllListeners('data');
      }
      await drain();
      await handle.sync();
    } catch (err) {
      // Never close under a write still in flight (its error, if any, is reported here).
      await writing?.catch(() => undefined);
      if (err instanceof MeshError) throw err;
      // What arrived before the interruption is kept for the resume (it is re-hashed from
      // disk then, so it is checked like every other byte).
      await drain().catch(() => undefined);
      throw new MeshError('MESH_ERR_DOWNLOAD_FAILED', `download of ${target.targetPath} interrupted: ${(err as Error).message}`, { cause: err });
    } finally {
      await writing?.catch(() => undefined);
      await handle.close();
    }
  }
  onProgress?.(done, target.length);

  const digest = hash.digest('hex');
  if (done !== target.length || digest !== target.sha256) {
    await fs.rm(destination, { force: true });
    throw new MeshError(
      'MESH_ERR_DIGEST_MISMATCH',
      `${target.targetPath}: downloaded ${done} bytes with sha256 ${digest}, TUF metadata says ${target.length} bytes with sha256 ${target.sha256}`,
    );
  }
  return { resumedFrom };
}
