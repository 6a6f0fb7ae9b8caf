// logs/ owns device logs: the operator's requests and delivered bundles (this file) and the body of the device's
// UploadLogs call (upload.ts).
// May import: store/ (types), config/, observability/, ../errors.ts, @grpc/grpc-js, and device-api/refusal.ts (an
// upload is refused like every device call). device-api/ imports upload.ts back: the one cycle between folders.
//
// Operator side of device logs: ask a device for its logs, see what was asked and delivered,
// fetch a delivered bundle. The device learns of a request from its next heartbeat and answers
// with UploadLogs (logs/upload.ts).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { MeshanicsContext } from '../config/data-dir.js';
import { MeshError } from '../errors.js';
import type { LogRequestWithDevice } from '../store/index.js';

import { DEFAULT_LOG_MAX_BYTES, MAX_LOG_BYTES } from '../config/defaults.js';

export { DEFAULT_LOG_MAX_BYTES, MAX_LOG_BYTES };
/**
 * Slack on top of a request's maxBytes: an agent that caps the *uncompressed* bundle still fits
 * when gzip cannot compress (deflate's worst case adds ~5 bytes per 64 KiB, plus the header).
 */
export const LOG_UPLOAD_OVERHEAD_BYTES = 64 * 1024;

/** The most bytes an upload for a request of `maxBytes` may carry. */
export function logUploadLimit(maxBytes: number): number {
  return Math.min(maxBytes, MAX_LOG_BYTES) + LOG_UPLOAD_OVERHEAD_BYTES;
}

/** Log request ids are server-made UUIDs, so they are safe as file names. */
export function logBundlePath(logsDir: string, logRequestId: string): string {
  return path.join(logsDir, `${logRequestId}.gz`);
}

export interface RequestDeviceLogsInput {
  fleet: string;
  device: string;
  /** RFC 3339 / ISO 8601; omitted means unbounded. */
  since?: string;
  until?: string;
  /** Default 1 MiB, at most 16 MiB. */
  maxBytes?: number;
  actor?: string;
}

export type LogRequestStatus = 'pending' | 'fulfilled';

export interface LogRequestView {
  logRequestId: string;
  fleet: string;
  device: string;
  since: string | null;
  until: string | null;
  maxBytes: number;
  requestedAt: string;
  requestedBy: string;
  status: LogRequestStatus;
  fulfilledAt: string | null;
  sizeBytes: number | null;
  sha256: string | null;
}

export interface LogBundle {
  logRequestId: string;
  fleet: string;
  device: string;
  /** The gzip exactly as the device uploaded it. */
  path: string;
  sizeBytes: number;
  sha256: string;
  fulfilledAt: string;
}

function instant(value: string | undefined, field: string): string | null {
  if (value === undefined || value === '') return null;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new MeshError('MESH_ERR_LOGS_INVALID_REQUEST', `${field} must be an ISO 8601 / RFC 3339 time, got "${value}"`);
  return new Date(ms).toISOString();
}

export async function requestDeviceLogs(ctx: MeshanicsContext, input: RequestDeviceLogsInput): Promise<{ logRequestId: string }> {
  const since = instant(input.since, 'since');
  const until = instant(input.until, 'until');
  if (since !== null && until !== null && since > until) {
    throw new MeshError('MESH_ERR_LOGS_INVALID_REQUEST', `since (${since}) is after until (${until})`);
  }
  const maxBytes = input.maxBytes ?? DEFAULT_LOG_MAX_BYTES;
  if (!Number.isInteger(maxBytes) || maxBytes < 1 || maxBytes > MAX_LOG_BYTES) {
    throw new MeshError('MESH_ERR_LOGS_INVALID_REQUEST', `maxBytes must be 1-${MAX_LOG_BYTES}, got ${maxBytes}`);
  }
  const actor = input.actor ?? 'operator';
  const logRequestId = crypto.randomUUID();
  await ctx.store.withWriteLock(async () => {
    const device = await ctx.store.getDeviceByName(input.fleet, input.device);
    if (!device) throw new MeshError('MESH_ERR_DEVICE_NOT_FOUND', `no device ${input.fleet}/${input.device}`);
    if (device.decommissionedAt) throw new MeshError('MESH_ERR_DEVICE_DECOMMISSIONED', `device ${input.fleet}/${input.device} is decommissioned`);
    const now = new Date().toISOString();
    await ctx.store.logRequests.insert({
      id: logRequestId,
      deviceId: device.id,
      since,
      until,
      maxBytes,
      requestedAt: now,
      requestedBy: actor,
      fulfilledAt: null,
      sizeBytes: null,
      sha256: null,
    });
    await ctx.store.appendAudit({ at: now, actor, action: 'logs.requested', subject: `device:${device.spiffeId}`, details: { logRequestId, since, until, maxBytes } });
  });
  ctx.logger.info({ logRequestId, fleet: input.fleet, device: input.device, since, until, maxBytes }, 'device logs requested');
  return { logRequestId };
}

function view(r: LogRequestWithDevice): LogRequestView {
  return {
    logRequestId: r.id,
    fleet: r.fleet,
    device: r.deviceName,
    since: r.since,
    until: r.until,
    maxBytes: r.maxBytes,
    requestedAt: r.requestedAt,
    requestedBy: r.requestedBy,
    status: r.fulfilledAt === null ? 'pending' : 'fulfilled',
    fulfilledAt: r.fulfilledAt,
    sizeBytes: r.sizeBytes,
    sha256: r.sha256,
  };
}

export async function listLogRequests(ctx: MeshanicsContext, filter: { fleet?: string; device?: string } = {}): Promise<LogRequestView[]> {
  return (
    await ctx.store.logRequests.list({
      ...(filter.fleet !== undefined ? { fleet: filter.fleet } : {}),
      ...(filter.device !== undefined ? { deviceName: filter.device } : {}),
    })
  ).map(view);
}

/** Where the delivered bundle of a log request is; refuses one that is unknown or not delivered yet. */
export async function getLogBundle(ctx: MeshanicsContext, logRequestId: string): Promise<LogBundle> {
  const request = await ctx.store.logRequests.get(logRequestId);
  const device = request && (await ctx.store.getDeviceById(request.deviceId));
  if (!request || !device) throw new MeshError('MESH_ERR_LOGS_REQUEST_NOT_FOUND', `no log request ${logRequestId}`);
  if (request.fulfilledAt === null || request.sizeBytes === null || request.sha256 === null) {
    throw new MeshError('MESH_ERR_LOGS_NOT_UPLOADED', `device ${device.fleet}/${device.name} has not uploaded the logs of request ${logRequestId} yet`);
  }
  const file = logBundlePath(ctx.layout.logsDir, request.id);
  if (!fs.existsSync(file)) throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `log bundle ${file} is missing`);
  return {
    logRequestId: request.id,
    fleet: device.fleet,
    device: device.name,
    path: file,
    sizeBytes: request.sizeBytes,
    sha256: request.sha256,
    fulfilledAt: request.fulfilledAt,
  };
}
