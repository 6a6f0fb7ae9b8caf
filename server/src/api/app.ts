// api/ owns the operator REST API: this Fastify app, authentication and authorization (auth.ts), API keys (keys.ts),
// request validation (validation.ts), shared JSON Schemas (schemas.ts) and one module per resource in routes/.
// May import: catalog/, fleet/, rollouts/, logs/requests.ts, enrollment/tokens.ts, audit/, store/, config/,
// observability/, ../errors.ts, @meshanics/core/contract: a route calls the functions the CLI calls. Never
// device-api/ or server.ts. Imported by server.ts (lazily) and cli/apikey-commands.ts (keys.ts).
//
// The operator REST API (docs/operator-api.md): a Fastify app under /api/v1, built apart from
// any listener so tests can `inject` into it. Every route declares JSON Schemas for what it
// reads and returns; the OpenAPI document is generated from them.
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import Fastify, { LogController, type FastifyBodyParser, type FastifyError, type FastifyInstance } from 'fastify';
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import type { MeshanicsContext } from '../config/data-dir.js';
import { DEFAULT_HEARTBEAT_INTERVAL_SECONDS } from '../config/defaults.js';
import { httpStatusFor, MeshError, type ErrorCode } from '../errors.js';
import type { Logger } from '../observability/log.js';
import { authHook } from './auth.js';
import { AuthFailureThrottle, type AuthThrottleOptions } from './auth-throttle.js';
import { EventStreams, type EventStreamLimits } from './event-streams.js';
import { securityHeadersHook } from './security-headers.js';
import { loadTicketSecret, StreamTickets } from './stream-tickets.js';
import { artifactRoutes, DEFAULT_MAX_ARTIFACT_BYTES } from './routes/artifacts.js';
import { auditRoutes } from './routes/audit.js';
import { deviceRoutes } from './routes/devices.js';
import { enrollmentRoutes } from './routes/enrollment.js';
import { metaRoutes, healthRoutes } from './routes/meta.js';
import type { ApiMetrics, ApiRouteOptions } from './routes/options.js';
import { rolloutRoutes } from './routes/rollouts.js';
import { validatorCompiler } from './validation.js';

export const API_PREFIX = '/api/v1';
/** JSON bodies are small (rollouts, groups of a few thousand names); uploads are multipart. */
const JSON_BODY_LIMIT = 4 * 1024 * 1024;

export interface ApiOptions {
  /** Default: the context's logger. */
  logger?: Logger;
  /** The heartbeat interval of devices without their own (default 30 s, as `serve`). */
  heartbeatIntervalSeconds?: number;
  /** Largest artifact upload in bytes (default 8 GiB). */
  maxArtifactBytes?: number;
  /**
   * Directory of the web console to serve at `/` (index.html for client routes). Default: the
   * repository's `console/dist` when it exists; `null` serves none.
   */
  consoleDir?: string | null;
  /** How often the rollout event stream re-reads its rollout (default 1000 ms). */
  rolloutEventsIntervalMs?: number;
  /** Serves GET /metrics (Prometheus text) when given. */
  metrics?: ApiMetrics;
  /** False while the server drains on shutdown: /readyz answers 503 so the load balancer stops sending. */
  isAccepting?: () => boolean;
  /** Serve HTTPS with this certificate (chain) and key, PEM; default plain HTTP. */
  https?: { cert: string; key: string };
  /** Per-key cap, maximum lifetime and revocation check of event streams. */
  eventStreams?: Partial<EventStreamLimits>;
  /** Failed API-key attempts allowed per source address. */
  authThrottle?: Partial<AuthThrottleOptions>;
  /** How long a stream ticket is good for (default 60 s). */
  streamTicketTtlMs?: number;
}

/** `<repo>/console/dist`, from server/dist/api/app.js (or server/src/api/app.ts under tests). */
export function defaultConsoleDir(): string | undefined {
  const dir = fileURLToPath(new URL('../../../console/dist/', import.meta.url));
  return fs.existsSync(`${dir}index.html`) ? dir : undefined;
}

/**
 * One place turns every failure a route or hook throws into `{ error, code }`: the status its
 * kind maps to, its message, and the stable code of the error table (errors.ts) for clients to
 * branch on instead of matching messages. An error's `details` stay in the server log: some
 * carry lists of up to a group's 100,000 device names.
 */
function errorReply(err: FastifyError | MeshError | Error, logger: Logger): { status: number; error: string; code: ErrorCode } {
  if (err instanceof MeshError) {
    const status = httpStatusFor(err.kind);
    if (status >= 500) {
      logger.error({ err, code: err.code }, 'API request failed');
      return status === 503 ? { status, error: err.message, code: err.code } : { status, error: 'internal server error (see the server log)', code: 'MESH_ERR_INTERNAL' };
    }
    return { status, error: err.message, code: err.code };
  }
  const status = (err as FastifyError).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // Fastify's and plugins' own refusals: unparseable JSON, wrong media type, body too large.
    const code: ErrorCode = status === 413 ? 'MESH_ERR_API_TOO_LARGE' : status === 404 ? 'MESH_ERR_API_NOT_FOUND' : 'MESH_ERR_API_REFUSED';
    return { status, error: err.message, code };
  }
  logger.error({ err }, 'API request failed');
  return { status: 500, error: 'internal server error (see the server log)', code: 'MESH_ERR_INTERNAL' };
}

export function buildApi(ctx: MeshanicsContext, options: ApiOptions = {}): FastifyInstance {
  const logger = (options.logger ?? ctx.logger).child({ component: 'api' });
  const app = Fastify({
    loggerInstance: logger,
    // Request lines are logged by the onResponse hook below (route pattern, never the raw URL,
    // which may carry a stream ticket).
    logController: new LogController({ disableRequestLogging: true }),
    ...(options.https ? { https: { cert: options.https.cert, key: options.https.key } } : {}),
    bodyLimit: JSON_BODY_LIMIT,
    routerOptions: { ignoreTrailingSlash: true },
    return503OnClosing: true,
  }) as unknown as FastifyInstance;

  const streams = new EventStreams(ctx.store.apiKeys, logger, options.eventStreams);
  const tickets = new StreamTickets(loadTicketSecret(ctx.layout.pkiDir), options.streamTicketTtlMs);
  const routeOptions: ApiRouteOptions = {
    ctx,
    streams,
    tickets,
    heartbeatIntervalSeconds: options.heartbeatIntervalSeconds ?? DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
    maxArtifactBytes: options.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES,
    rolloutEventsIntervalMs: options.rolloutEventsIntervalMs ?? 1000,
    ...(options.metrics ? { metrics: options.metrics } : {}),
    ...(options.isAccepting ? { isAccepting: options.isAccepting } : {}),
  };

  app.setValidatorCompiler(validatorCompiler);
  // An empty JSON body reads as no body (clients that always send Content-Type: application/json
  // can POST .../approve without inventing one); anything else gets Fastify's own safe parser.
  // The default parser is the callback form (fastify/lib/content-type-parser.js: it calls done
  // and returns nothing); its declared type is the union of the callback and promise forms.
  const parseJson = app.getDefaultJsonParser('error', 'error') as Exclude<FastifyBodyParser<string>, (request: never, body: string) => Promise<unknown>>;
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if ((body as string).trim() === '') return done(null, undefined);
    parseJson(request, body as string, done);
  });
  app.decorateRequest('apiKey', null);
  app.addHook('onRequest', securityHeadersHook({ https: options.https !== undefined }));
  app.addHook('onRequest', authHook(ctx, { throttle: new AuthFailureThrottle(options.authThrottle), tickets }));
  // An event stream never ends by itself and would hold the listener open.
  app.addHook('preClose', async () => streams.closeAll());
  app.addHook('onResponse', async (request, reply) => {
    logger.debug(
      { method: request.method, route: request.routeOptions.url ?? null, status: reply.statusCode, ms: Math.round(reply.elapsedTime), key: request.apiKey?.name },
      'API request',
    );
  });
  app.setErrorHandler((err: FastifyError | MeshError, _request, reply) => {
    const { status, error, code } = errorReply(err, logger);
    return reply.code(status).type('application/json').send({ error, code });
  });

  const consoleDir = options.consoleDir === undefined ? defaultConsoleDir() : (options.consoleDir ?? undefined);
  // Synchronous on purpose: returning the reply from an async handler makes Fastify await it
  // (Reply is a thenable), which piles a listener on the response per await.
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const clientRoute = consoleDir !== undefined && (request.method === 'GET' || request.method === 'HEAD') && !path.startsWith('/api/');
    if (clientRoute) {
      void reply.type('text/html').sendFile('index.html');
      return;
    }
    throw new MeshError('MESH_ERR_API_NOT_FOUND', `no route ${request.method} ${path}`);
  });

  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Meshanics operator API',
        version: '1',
        description: 'Errors are `{ "error": "...", "code": "MESH_ERR_..." }`. Lists take `limit` (default 50, at most 200) and `offset`. See docs/operator-api.md.',
      },
      components: {
        securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key, `mesh_key_...` (`meshanics-server apikey create`)' } },
      },
      security: [{ bearerAuth: [] }],
    },
  });
  void app.register(multipart, { limits: { fileSize: routeOptions.maxArtifactBytes } });
  if (consoleDir !== undefined) {
    // Registered as a plugin of its own so its wildcard route stays out of the document.
    void app.register(fastifyStatic, { root: consoleDir, prefix: '/', wildcard: true, schemaHide: true });
  }
  void app.register(healthRoutes, routeOptions);
  void app.register(
    async (api) => {
      await api.register(metaRoutes, routeOptions);
      await api.register(deviceRoutes, routeOptions);
      await api.register(enrollmentRoutes, routeOptions);
      await api.register(artifactRoutes, routeOptions);
      await api.register(rolloutRoutes, routeOptions);
      await api.register(auditRoutes, routeOptions);
    },
    { prefix: API_PREFIX },
  );
  return app;
}
