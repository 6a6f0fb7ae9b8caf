// The audit trail: newest events, the NDJSON export that verifies the chain on the way, and
// verification alone. Events span every fleet, so these routes need a key for all fleets.
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { exportAudit, verifyAudit } from '../../audit/trail.js';
import { auditEventSchema, AUTH_ERRORS, chainVerificationSchema, errors, pageOf, pageQuery, type PageQuery } from '../schemas.js';
import type { ApiRouteOptions } from './options.js';

export async function auditRoutes(app: FastifyInstance, { ctx }: ApiRouteOptions): Promise<void> {
  app.get<{ Querystring: PageQuery }>(
    '/audit',
    {
      config: { access: 'audit.read', allFleets: true },
      schema: {
        tags: ['audit'],
        summary: 'Audit events, newest first, each with its seq and hash-chain links',
        querystring: { type: 'object', properties: { ...pageQuery } },
        response: { 200: pageOf(auditEventSchema), ...errors(...AUTH_ERRORS) },
      },
    },
    async (request) => {
      const { limit, offset } = request.query;
      const items = (await ctx.store.listAudit({ order: 'desc', limit, offset })).map((e) => ({
        seq: e.seq,
        at: e.at,
        actor: e.actor,
        action: e.action,
        subject: e.subject,
        details: e.details,
        prevHash: e.prevHash,
        hash: e.hash,
      }));
      return { items, total: await ctx.store.countAudit(), limit, offset };
    },
  );

  app.get(
    '/audit/export',
    {
      config: { access: 'audit.read', allFleets: true },
      schema: {
        tags: ['audit'],
        summary: 'The whole trail as NDJSON, oldest first, verified while exported; the last line is {"chain": {count, verified, headHash, firstBrokenSeq?}}',
        response: {
          200: { description: 'one JSON event per line, then the chain summary', content: { 'application/x-ndjson': { schema: { type: 'string' } } } },
          ...errors(...AUTH_ERRORS),
        },
      },
    },
    async (_request, reply) => reply.type('application/x-ndjson; charset=utf-8').send(Readable.from(exportAudit(ctx))),
  );

  app.get(
    '/audit/verify',
    {
      config: { access: 'audit.read', allFleets: true },
      schema: {
        tags: ['audit'],
        summary: 'Verify the whole chain: count, verified, head hash, and the first broken event if any',
        response: { 200: chainVerificationSchema, ...errors(...AUTH_ERRORS) },
      },
    },
    async () => verifyAudit(ctx),
  );
}
