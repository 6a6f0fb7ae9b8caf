// Device side of log delivery: the body of the UploadLogs call. The bundle streams to a private
// temp file next to its final place and is renamed into `<id>.gz` only once complete, gzip and
// within its cap, so the operator never downloads half an upload or something nobody asked for.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { PRIVATE_FILE_MODE, ensurePrivateDirSync, renameDurableSync, tempSibling } from '@meshanics/core/kit';
import { Refusal } from '../device-api/refusal.js';
import type { Logger } from '../observability/log.js';
import type { DeviceRecord, LogRequestRecord, Store } from '../store/index.js';
import { logBundlePath, logUploadLimit } from './requests.js';

/** UploadLogsChunk as decoded by the device contract's loader options. */
export interface UploadLogsChunk {
  logRequestId: string;
  data: Buffer;
}

export interface LogUploadDeps {
  store: Store;
  logsDir: string;
  logger: Logger;
}

/** Every gzip member starts with ID1 ID2 CM=8 (deflate), RFC 1952 2.3.1. */
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b, 0x08]);
const MAX_ID_LENGTH = 64;

async function requestFor(store: Store, device: DeviceRecord, id: string): Promise<LogRequestRecord> {
  if (id === '') throw new Refusal(grpc.status.INVALID_ARGUMENT, 'the first chunk must carry log_request_id');
  if (id.length > MAX_ID_LENGTH) throw new Refusal(grpc.status.INVALID_ARGUMENT, 'log_request_id is too long');
  const request = await store.logRequests.get(id);
  // Same answer whether the id does not exist or was issued to another device: no probing.
  if (!request || request.deviceId !== device.id) throw new Refusal(grpc.status.NOT_FOUND, 'no such log request for this device');
  if (request.fulfilledAt !== null) throw new Refusal(grpc.status.FAILED_PRECONDITION, 'log request already fulfilled');
  return request;
}

/**
 * Consumes an UploadLogs stream for `device` and stores the bundle. Throws a Refusal for
 * anything it rejects; nothing is left on disk then. `chunks` ends early (and the temp file is
 * removed) when the client cancels.
 */
export async function receiveLogUpload(chunks: AsyncIterable<UploadLogsChunk>, device: DeviceRecord, deps: LogUploadDeps): Promise<{ bytesReceived: number }> {
  const { store, logsDir, logger } = deps;
  let request: LogRequestRecord | undefined;
  let limit = 0;
  let received = 0;
  let head = Buffer.alloc(0);
  let tmp: string | undefined;
  let file: fs.promises.FileHandle | undefined;
  let renamed = false;
  const hash = crypto.createHash('sha256');
  try {
    for await (const chunk of chunks) {
      if (!request) {
        request = await requestFor(store, device, chunk.logRequestId ?? '');
        limit = logUploadLimit(request.maxBytes);
        ensurePrivateDirSync(logsDir);
        tmp = tempSibling(path.join(logsDir, `${request.id}.gz`));
        file = await fs.promises.open(tmp, 'wx', PRIVATE_FILE_MODE);
      } else if (chunk.logRequestId && chunk.logRequestId !== request.id) {
        throw new Refusal(grpc.status.INVALID_ARGUMENT, 'all chunks of one upload must belong to the same log request');
      }
      const data = chunk.data ?? Buffer.alloc(0);
      received += data.length;
      if (received > limit) {
        throw new Refusal(grpc.status.RESOURCE_EXHAUSTED, `log bundle exceeds ${limit} bytes (the request's maxBytes plus gzip overhead)`);
      }
      if (head.length < GZIP_MAGIC.length) {
        head = Buffer.concat([head, data.subarray(0, GZIP_MAGIC.length - head.length)]);
        if (!GZIP_MAGIC.subarray(0, head.length).equals(head)) throw new Refusal(grpc.status.INVALID_ARGUMENT, 'log bundle is not gzip');
      }
      hash.update(data);
      await file!.write(data);
    }
    if (!request) throw new Refusal(grpc.status.INVALID_ARGUMENT, 'empty upload: the first chunk must carry log_request_id');
    if (head.length < GZIP_MAGIC.length) throw new Refusal(grpc.status.INVALID_ARGUMENT, 'log bundle is not gzip (too short)');
    await file!.sync();
    await file!.close();
    file = undefined;

    const sha256 = hash.digest('hex');
    const { id } = request;
    await store.withWriteLock(async () => {
      // Rename under the lock: of two concurrent uploads for one request, the loser must not
      // replace the winner's file after the winner marked the request fulfilled.
      if ((await store.logRequests.get(id))?.fulfilledAt !== null) throw new Refusal(grpc.status.FAILED_PRECONDITION, 'log request already fulfilled');
      renameDurableSync(tmp!, logBundlePath(logsDir, id));
      renamed = true;
      const now = new Date().toISOString();
      await store.logRequests.fulfill(id, { sizeBytes: received, sha256, now });
      await store.appendAudit({
        at: now,
        actor: `device:${device.spiffeId}`,
        action: 'logs.uploaded',
        subject: `device:${device.spiffeId}`,
        details: { logRequestId: id, sizeBytes: received, sha256 },
      });
    });
    logger.info({ device: device.spiffeId, logRequestId: id, sizeBytes: received }, 'device logs uploaded');
    return { bytesReceived: received };
  } catch (err) {
    if (err instanceof Refusal) {
      await store.appendAudit({
        actor: `device:${device.spiffeId}`,
        action: 'logs.upload_refused',
        subject: `device:${device.spiffeId}`,
        details: { logRequestId: request?.id ?? null, code: grpc.status[err.code], reason: err.message, bytesReceived: received },
      });
    }
    throw err;
  } finally {
    await file?.close().catch(() => undefined);
    if (tmp && !renamed) await fs.promises.rm(tmp, { force: true });
  }
}

/** Far beyond the upload idle timeout: a temp file this old belongs to no live upload. */
const STALE_UPLOAD_MS = 5 * 60 * 1000;

/**
 * Removes partial uploads a crash left behind (temp files are `.<id>.gz.tmp-<hex>`, the kit's
 * tempSibling; before it, `.<id>.gz.<pid>.<random>.tmp`).
 * Called by `serve` at start. Only old files go: another `serve` on the same data dir may be
 * receiving one right now, and a live upload writes at least once per idle timeout.
 */
export function removeStaleLogUploads(logsDir: string, now = Date.now()): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(logsDir);
  } catch {
    return [];
  }
  const stale = names.filter((n) => {
    if (!n.startsWith('.') || !/\.tmp(-[0-9a-f]+)?$/.test(n)) return false;
    const stat = fs.statSync(path.join(logsDir, n), { throwIfNoEntry: false });
    return stat !== undefined && now - stat.mtimeMs > STALE_UPLOAD_MS;
  });
  for (const n of stale) fs.rmSync(path.join(logsDir, n), { force: true });
  return stale;
}
