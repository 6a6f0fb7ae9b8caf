// Devices: list and filter, detail with installed artifacts and history, decommission; and the
// operator side of device logs (request, list, download).
import * as fs from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { decommissionDevice } from '../../fleet/devices.js';
import { MeshError } from '../../errors.js';
import { getLogBundle, listLogRequests, MAX_LOG_BYTES, requestDeviceLogs, type LogRequestView } from '../../logs/requests.js';
import type { DeviceRecord } from '../../store/index.js';
import { actorOf, assertFleet, listingFleet } from '../auth.js';
import {
  AUTH_ERRORS,
  deviceDetailSchema,
  deviceSummarySchema,
  DNS_LABEL_PATTERN,
  errors,
  logRequestViewSchema,
  objectOf,
  pageOf,
  pageQuery,
  paginate,
  str,
  type PageQuery,
} from '../schemas.js';
import type { ApiRouteOptions } from './options.js';

/** Status reports a device detail shows (newest first). */
export const DEVICE_HISTORY_LIMIT = 100;

const deviceParams = objectOf({ fleet: { type: 'string', pattern: DNS_LABEL_PATTERN }, name: { type: 'string', pattern: DNS_LABEL_PATTERN } });

function noDevice(fleet: string, name: string): MeshError {
  return new MeshError('MESH_ERR_DEVICE_NOT_FOUND', `no device ${fleet}/${name}`);
}

function summary(device: DeviceRecord, online: boolean, defaultInterval: number) {
  return {
    fleet: device.fleet,
    name: device.name,
    spiffeId: device.spiffeId,
    agentVersion: device.agentVersion,
    tags: device.tags,
    online,
    heartbeatIntervalSeconds: device.heartbeatIntervalSeconds ?? defaultInterval,
    createdAt: device.createdAt,
    registeredAt: device.registeredAt,
    lastSeenAt: device.lastSeenAt,
    decommissionedAt: device.decommissionedAt,
  };
}

function logRequestOut(v: LogRequestView) {
  const { logRequestId, ...rest } = v;
  return { id: logRequestId, ...rest };
}

export async function deviceRoutes(app: FastifyInstance, options: ApiRouteOptions): Promise<void> {
  const { ctx, heartbeatIntervalSeconds } = options;

  app.get<{ Querystring: PageQuery & { fleet?: string; tag?: string[]; online?: boolean } }>(
    '/devices',
    {
      config: { access: 'devices.read' },
      schema: {
        tags: ['devices'],
        summary: 'List devices; filter by fleet, tags (k=v, repeatable, all must match) and online',
        querystring: {
          type: 'object',
          properties: {
            fleet: str,
            tag: { type: 'array', items: { type: 'string', pattern: '^[^=]+=.*$' }, description: 'k=v; repeat for several' },
            online: { type: 'boolean', description: 'last heartbeat within three of its intervals' },
            ...pageQuery,
          },
        },
        response: { 200: pageOf(deviceSummarySchema), ...errors(...AUTH_ERRORS) },
      },
    },
    async (request) => {
      const { limit, offset, tag, online } = request.query;
      const fleet = listingFleet(request, request.query.fleet);
      if (fleet === null) return paginate([], { limit, offset });
      const tags = (tag ?? []).map((t): [string, string] => {
        const at = t.indexOf('=');
        return [t.slice(0, at), t.slice(at + 1)];
      });
      const { rows, total } = await ctx.store.operatorViews.listDevices(
        {
          ...(fleet !== undefined ? { fleet } : {}),
          tags,
          ...(online !== undefined ? { online } : {}),
          defaultHeartbeatIntervalSeconds: heartbeatIntervalSeconds,
          now: new Date().toISOString(),
        },
        { limit, offset },
      );
      return { items: rows.map((r) => summary(r.device, r.online, heartbeatIntervalSeconds)), total, limit, offset };
    },
  );

  app.get<{ Params: { fleet: string; name: string } }>(
    '/devices/:fleet/:name',
    {
      config: { access: 'devices.read' },
      schema: {
        tags: ['devices'],
        summary: 'One device: hardware profile, agent version, tags, capabilities, online, installed artifacts, history',
        params: deviceParams,
        response: { 200: deviceDetailSchema, ...errors(...AUTH_ERRORS, 404) },
      },
    },
    async (request) => {
      const { fleet, name } = request.params;
      assertFleet(request, fleet, () => noDevice(fleet, name));
      const device = await ctx.store.getDeviceByName(fleet, name);
      if (!device) throw noDevice(fleet, name);
      const online = await ctx.store.operatorViews.isOnline(device.id, heartbeatIntervalSeconds, new Date().toISOString());
      return {
        ...summary(device, online, heartbeatIntervalSeconds),
        hardware: device.hardware,
        capabilities: device.capabilities,
        installed: await ctx.store.listInstalled(device.id),
        history: (await ctx.store.operatorViews.listDeviceHistory(device.id, DEVICE_HISTORY_LIMIT)).map(({ artifactName, artifactVersion, ...r }) => ({
          ...r,
          artifact: { name: artifactName, version: artifactVersion },
        })),
      };
    },
  );

  app.post<{ Params: { fleet: string; name: string } }>(
    '/devices/:fleet/:name/decommission',
    {
      config: { access: 'devices.manage' },
      schema: {
        tags: ['devices'],
        summary: 'Decommission a device: its next heartbeat offboards it, then its identity is refused; record and history stay',
        params: deviceParams,
        response: { 200: objectOf({ fleet: str, name: str, decommissionedAt: str }), ...errors(...AUTH_ERRORS, 404) },
      },
    },
    async (request) => {
      const { fleet, name } = request.params;
      assertFleet(request, fleet, () => noDevice(fleet, name));
      await decommissionDevice(ctx, { fleet, name, actor: actorOf(request) });
      const device = (await ctx.store.getDeviceByName(fleet, name))!;
      return { fleet, name, decommissionedAt: device.decommissionedAt! };
    },
  );

  app.post<{ Params: { fleet: string; name: string }; Body: { since?: string; until?: string; maxBytes?: number } }>(
    '/devices/:fleet/:name/log-requests',
    {
      config: { access: 'logs.write' },
      schema: {
        tags: ['logs'],
        summary: 'Ask a device for its logs; it learns of the request at its next heartbeat and uploads a gzip bundle',
        params: deviceParams,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            since: { type: 'string', minLength: 1, maxLength: 64, description: 'RFC 3339; omitted = unbounded' },
            until: { type: 'string', minLength: 1, maxLength: 64 },
            maxBytes: { type: 'integer', minimum: 1, maximum: MAX_LOG_BYTES },
          },
        },
        response: { 202: objectOf({ id: str }), ...errors(...AUTH_ERRORS, 404) },
      },
    },
    async (request, reply) => {
      const { fleet, name } = request.params;
      assertFleet(request, fleet, () => noDevice(fleet, name));
      const { logRequestId } = await requestDeviceLogs(ctx, { fleet, device: name, ...request.body, actor: actorOf(request) });
      return reply.code(202).send({ id: logRequestId });
    },
  );

  app.get<{ Querystring: PageQuery & { fleet?: string; device?: string } }>(
    '/log-requests',
    {
      config: { access: 'logs.read' },
      schema: {
        tags: ['logs'],
        summary: 'Log requests with their status (pending or fulfilled) and size',
        querystring: { type: 'object', properties: { fleet: str, device: str, ...pageQuery } },
        response: { 200: pageOf(logRequestViewSchema), ...errors(...AUTH_ERRORS) },
      },
    },
    async (request) => {
      const { limit, offset, device } = request.query;
      const fleet = listingFleet(request, request.query.fleet);
      if (fleet === null) return paginate([], { limit, offset });
      const all = await listLogRequests(ctx, { ...(fleet !== undefined ? { fleet } : {}), ...(device !== undefined ? { device } : {}) });
      // Newest first, like every other history.
      return paginate(all.reverse().map(logRequestOut), { limit, offset });
    },
  );

  app.get<{ Params: { id: string } }>(
    '/log-requests/:id/bundle',
    {
      config: { access: 'logs.read' },
      schema: {
        tags: ['logs'],
        summary: 'The gzip log bundle the device uploaded (409 while it has not)',
        params: objectOf({ id: { type: 'string', minLength: 1, maxLength: 64 } }),
        response: {
          200: { description: 'the gzip bundle exactly as the device uploaded it', content: { 'application/gzip': { schema: { type: 'string', format: 'binary' } } } },
          ...errors(...AUTH_ERRORS, 404, 409),
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const notFound = () => new MeshError('MESH_ERR_LOGS_REQUEST_NOT_FOUND', `no log request ${id}`);
      const request_ = await ctx.store.logRequests.get(id);
      const device = request_ && (await ctx.store.getDeviceById(request_.deviceId));
      if (!device) throw notFound();
      assertFleet(request, device.fleet, notFound);
      const bundle = await getLogBundle(ctx, id);
      const stream = fs.createReadStream(bundle.path);
      await ctx.store.appendAudit({
        actor: actorOf(request),
        action: 'logs.downloaded',
        subject: `device:${device.spiffeId}`,
        details: { logRequestId: id, sizeBytes: bundle.sizeBytes, sha256: bundle.sha256 },
      });
      return reply
        .type('application/gzip')
        .header('content-length', bundle.sizeBytes)
        .header('content-disposition', `attachment; filename="${bundle.fleet}-${bundle.device}-${id}.gz"`)
        .header('x-content-sha256', bundle.sha256)
        .send(stream);
    },
  );
}
