// whoami, the OpenAPI document, and the health endpoints.
import type { FastifyInstance } from 'fastify';
import { MeshError } from '../../errors.js';
import { callerOf } from '../auth.js';
import { bool, errors, int, objectOf, openObject, str } from '../schemas.js';
import type { ApiRouteOptions } from './options.js';

export async function metaRoutes(app: FastifyInstance): Promise<void> {
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
}

export async function healthRoutes(app: FastifyInstance, { ctx }: ApiRouteOptions): Promise<void> {
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
        summary: 'Readiness: the database answers a query and the API keys and TUF metadata load',
        security: [],
        response: {
          200: objectOf({ status: str, schemaVersion: int, apiKeys: int, tuf: openObject }),
          ...errors(503),
        },
      },
    },
    async () => {
      try {
        const schemaVersion = ctx.store.schemaVersion();
        const apiKeys = ctx.store.apiKeys.countLive();
        const tuf = ctx.tuf.versions();
        return { status: 'ready', schemaVersion, apiKeys, tuf };
      } catch (err) {
        throw new MeshError('MESH_ERR_API_NOT_READY', `not ready: ${(err as Error).message}`, { cause: err });
      }
    },
  );
}
