// Enrollment tokens: create (the token is shown once), list (never the secret), revoke.
import type { FastifyInstance } from 'fastify';
import { createEnrollmentToken, listEnrollmentTokens, MAX_TOKEN_TTL_SECONDS, MAX_TOKEN_USES, revokeEnrollmentToken } from '../../enrollment/tokens.js';
import { MeshError } from '../../errors.js';
import { actorOf, assertFleet, listingFleet } from '../auth.js';
import { AUTH_ERRORS, DNS_LABEL_PATTERN, enrollmentTokenViewSchema, errors, int, nullableStr, objectOf, pageOf, pageQuery, paginate, str, type PageQuery } from '../schemas.js';
import type { ApiRouteOptions } from './options.js';

interface CreateBody {
  fleet: string;
  expiresInSeconds?: number;
  uses?: number;
  deviceName?: string;
}

function noFleet(fleet: string): MeshError {
  return new MeshError('MESH_ERR_API_NOT_FOUND', `no fleet ${fleet}`);
}

export async function enrollmentRoutes(app: FastifyInstance, { ctx }: ApiRouteOptions): Promise<void> {
  app.post<{ Body: CreateBody }>(
    '/enrollment-tokens',
    {
      config: { access: 'enrollment.write' },
      schema: {
        tags: ['enrollment'],
        summary: 'Mint an enrollment token (shown once; only its hash is stored)',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['fleet'],
          properties: {
            fleet: { type: 'string', pattern: DNS_LABEL_PATTERN },
            expiresInSeconds: { type: 'integer', minimum: 1, maximum: MAX_TOKEN_TTL_SECONDS, description: 'default 1 day' },
            uses: { type: 'integer', minimum: 1, maximum: MAX_TOKEN_USES, description: 'default 1' },
            deviceName: { type: 'string', pattern: DNS_LABEL_PATTERN, description: 'only a device of this name may enroll (then uses must be 1)' },
          },
        },
        response: {
          201: objectOf({ id: str, token: str, fleet: str, expiresAt: str, uses: int, deviceName: nullableStr }),
          ...errors(...AUTH_ERRORS, 404),
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      assertFleet(request, body.fleet, () => noFleet(body.fleet));
      return reply.code(201).send(await createEnrollmentToken(ctx, { ...body, actor: actorOf(request) }));
    },
  );

  app.get<{ Querystring: PageQuery & { fleet?: string } }>(
    '/enrollment-tokens',
    {
      config: { access: 'enrollment.read' },
      schema: {
        tags: ['enrollment'],
        summary: 'Enrollment tokens with their uses left and status (never the tokens themselves)',
        querystring: { type: 'object', properties: { fleet: str, ...pageQuery } },
        response: { 200: pageOf(enrollmentTokenViewSchema), ...errors(...AUTH_ERRORS) },
      },
    },
    async (request) => {
      const { limit, offset } = request.query;
      const fleet = listingFleet(request, request.query.fleet);
      if (fleet === null) return paginate([], { limit, offset });
      return paginate((await listEnrollmentTokens(ctx, fleet !== undefined ? { fleet } : {})).reverse(), { limit, offset });
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/enrollment-tokens/:id',
    {
      config: { access: 'enrollment.manage' },
      schema: {
        tags: ['enrollment'],
        summary: 'Revoke an enrollment token (idempotent); devices it enrolled stay',
        params: objectOf({ id: { type: 'string', minLength: 1, maxLength: 64 } }),
        response: { 200: enrollmentTokenViewSchema, ...errors(...AUTH_ERRORS, 404) },
      },
    },
    async (request) => {
      const { id } = request.params;
      const notFound = () => new MeshError('MESH_ERR_ENROLL_TOKEN_NOT_FOUND', `no enrollment token ${id}`);
      const token = await ctx.store.enrollmentTokens.get(id);
      if (!token) throw notFound();
      assertFleet(request, token.fleet, notFound);
      return revokeEnrollmentToken(ctx, id, actorOf(request));
    },
  );
}
