// whoami, stream tickets, the OpenAPI document, and the health endpoints.
import type { FastifyInstance } from 'fastify';
import { MeshError } from '../../errors.js';
import { callerOf } from '../auth.js';
import { AUTH_ERRORS, bool, errors, int, objectOf, openObject, str } from '../schemas.js';
import type { ApiRouteOptions } from './options.js';

export async function metaRoutes(app: FastifyInstance, { tickets }: ApiRouteOptions): Promise<void> {
  app.get(
    '/openapi.json',
    {
      config: { access: 'public' },
      schema: { tags: ['meta'], summary: 'This OpenAPI 3.1 document', security: [], response: { 200: openObject } },
    },
    async () => app.swagger(),
  );

  app.get(
    '/whoami',
    {
      config: { access: 'authenticated' },
      schema: {
        tags: ['meta'],
        summary: 'The calling key: name, fleet (or *), permissions and the approve right',
        response: {
          200: objectOf({ id: str, name: str, fleet: str, permissions: { type: 'array', items: str }, approve: bool }),
          ...errors(401),
        },
      },
    },
    async (request) => {
      const key = callerOf(request);
      return { id: key.id, name: key.name, fleet: key.fleet, permissions: key.permissions, approve: key.approve };
    },
  );

  app.post(
    '/stream-tickets',
    {
      config: { access: 'authenticated' },
      schema: {
        tags: ['meta'],
        summary: 'Mint a stream ticket: opens one event stream (`?ticket=`) within 60 s, once, with the rights of the calling key',
        description:
          'For EventSource, which cannot send an Authorization header: the API key never goes in a URL. The ticket is good for event streams only; ' +
          'a stream it opened still ends when the key is revoked.',
        response: { 201: objectOf({ ticket: str, expiresAt: { type: 'string', format: 'date-time' } }), ...errors(...AUTH_ERRORS) },
      },
    },
    async (request, reply) => reply.code(201).send(tickets.mint(callerOf(request).id)),
  );
}

export async function healthRoutes(app: FastifyInstance, { ctx, metrics, isAccepting }: ApiRouteOptions): Promise<void> {
  if (metrics) {
    app.get(
      '/metrics',
      {
        config: { access: 'public' },
        schema: {
          tags: ['meta'],
          summary:
            'Prometheus metrics: heartbeats, status reports by state, rollouts by status, database latency, gRPC errors by code, device TLS handshakes, rollout event streams (docs/operations.md)',
          security: [],
          response: { 200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } } },
        },
      },
      async (_request, reply) => {
        const { contentType, body } = await metrics.text();
        return reply.type(contentType).send(body);
      },
    );
  }

  app.get(
    '/healthz',
    {
      config: { access: 'public' },
      schema: { tags: ['meta'], summary: 'Liveness: the process answers', security: [], response: { 200: objectOf({ status: str }) } },
    },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      config: { access: 'public' },
      schema: {
        tags: ['meta'],
        summary: 'Readiness: not draining, the database answers a query, the device CA loads, and the TUF metadata loads and verifies with the device TUF client',
        security: [],
        response: {
          200: objectOf({ status: str, schemaVersion: int, apiKeys: int, tuf: openObject }),
          ...errors(503),
        },
      },
    },
    async () => {
      if (isAccepting && !isAccepting()) throw new MeshError('MESH_ERR_API_NOT_READY', 'not ready: the server is shutting down');
      try {
        const schemaVersion = await ctx.store.schemaVersion();
        const apiKeys = await ctx.store.apiKeys.countLive();
        await ctx.deviceCa();
        const tuf = ctx.tuf.versions();
        // Not ready while devices could not verify the repository (issue 23): they would install nothing.
        await ctx.tuf.checkVerifiableByDevices();
        // Online signing (snapshot and timestamp refresh, publishing) needs these keys here.
        const missing = (['snapshot', 'timestamp', 'publisher'] as const).filter((r) => !ctx.tuf.keyCustody().online.includes(r));
        if (missing.length > 0) throw new Error(`the online TUF keys ${missing.join(', ')} are missing from ${ctx.layout.tufKeysDir}`);
        return { status: 'ready', schemaVersion, apiKeys, tuf };
      } catch (err) {
        throw new MeshError('MESH_ERR_API_NOT_READY', `not ready: ${(err as Error).message}`, { cause: err });
      }
    },
  );
}
