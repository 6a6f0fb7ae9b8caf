// Static groups and rollouts: the REST face of groups.ts and rollouts/ (the engine owns every
// decision; these routes check the caller's rights and fleet, validate, and translate).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { PROBE_COMMON_SCHEMA, type JsonSchema } from '@meshanics/core/contract';
import { PROBE_DEFAULTS } from '../../config/defaults.js';
import { MeshError } from '../../errors.js';
import { createGroup, getGroup, GROUP_NAME, listGroups, MAX_GROUP_DEVICES, setGroupDevices } from '../../fleet/groups.js';
import { knownProbeTypes, probeSpecSchema } from '../../catalog/plugin-schemas.js';
import {
  abortRollout,
  ABORT_POLICIES,
  approveRollout,
  createRollout,
  getRollout,
  getRolloutDevices,
  getRolloutSummary,
  listRollouts,
  parseStrategy,
  resumeRollout,
  ROLLOUT_STATUSES,
  STRATEGY_SCHEMA,
  type AbortPolicy,
  type RolloutDetail,
  type RolloutSummary,
  type RolloutView,
} from '../../rollouts/index.js';
import type { AssignmentState, RolloutStatusValue } from '../../store/index.js';
import { RolloutSnapshots, type SnapshotView } from '../rollout-snapshots.js';
import { actorOf, assertFleet, listingFleet } from '../auth.js';
import { visibleArtifact } from '../artifact-access.js';
import {
  AUTH_ERRORS,
  DNS_LABEL_PATTERN,
  errors,
  groupSchema,
  objectOf,
  pageOf,
  pageQuery,
  paginate,
  rolloutAnswerSchema,
  rolloutDetailSchema,
  rolloutDevicesPageSchema,
  rolloutDevicesQuery,
  rolloutSummarySchema,
  str,
  type PageQuery,
} from '../schemas.js';
import { embeddable, validationError } from '../validation.js';
import type { ApiRouteOptions } from './options.js';

const KEEPALIVE_MS = 15_000;

interface ProbeBody {
  type: string;
  spec: Record<string, unknown>;
  timeoutSeconds?: number;
  attempts?: number;
  initialDelaySeconds?: number;
}

interface CreateRolloutBody {
  fleet: string;
  artifact: { name: string; version: string };
  group: string;
  probe: ProbeBody;
  strategy?: unknown;
}

/**
 * The probe as the route accepts it: the common probe contract devices enforce (its bounds,
 * e.g. timeoutSeconds <= 300), with the spec checked by the probe type's own plugin schema.
 */
function probeSchema(): JsonSchema {
  const common = (PROBE_COMMON_SCHEMA.properties ?? {}) as Record<string, JsonSchema>;
  const types = knownProbeTypes();
  return {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'spec'],
    properties: {
      // No enum fixed at start: a custom type added with `plugin-schema add` while this server
      // runs is accepted; validateProbe checks the type and its spec against the live table.
      type: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,62}$', description: `${types.join(', ')}, or a custom type added with plugin-schema add` },
      spec: { type: 'object', description: "the probe type's spec, validated by its plugin's own schema" },
      timeoutSeconds: { ...common.timeoutSeconds, description: `default ${PROBE_DEFAULTS.timeoutSeconds}` },
      attempts: { ...common.attempts, description: `default ${PROBE_DEFAULTS.attempts}` },
      initialDelaySeconds: { ...common.initialDelaySeconds, description: `default ${PROBE_DEFAULTS.initialDelaySeconds}` },
    },
    allOf: types.map((t) => ({
      if: { properties: { type: { const: t } }, required: ['type'] },
      then: { properties: { spec: embeddable(probeSpecSchema(t)!) } },
    })),
  };
}

const groupParams = objectOf({ fleet: { type: 'string', pattern: DNS_LABEL_PATTERN }, name: { type: 'string', pattern: GROUP_NAME.source } });
const idParams = objectOf({ id: { type: 'string', minLength: 1, maxLength: 64 } });
const deviceNames = { type: 'array', maxItems: MAX_GROUP_DEVICES, items: { type: 'string', minLength: 1, maxLength: 253 } };

function noFleet(fleet: string): MeshError {
  return new MeshError('MESH_ERR_API_NOT_FOUND', `no fleet ${fleet}`);
}

/** `?view=`: the whole detail, or the summary (the detail without its per-device list). */
const viewQuery = { type: 'string', enum: ['detail', 'summary'], default: 'detail', description: 'summary: the detail without its per-device list' } as const;

function noRollout(id: string): MeshError {
  return new MeshError('MESH_ERR_ROLLOUT_NOT_FOUND', `no rollout ${id}`);
}

export async function rolloutRoutes(app: FastifyInstance, options: ApiRouteOptions): Promise<void> {
  const { ctx, rolloutEventsIntervalMs, streams } = options;
  const snapshots = new RolloutSnapshots((id, view) => (view === 'summary' ? getRolloutSummary(ctx, id) : getRollout(ctx, id)), rolloutEventsIntervalMs);
  options.metrics?.attachRolloutStreams?.(() => snapshots.stats());

  /** 404 unless the rollout exists inside the caller's fleet. */
  async function visibleRollout(request: FastifyRequest, id: string): Promise<void> {
    const rollout = await ctx.store.rollouts.get(id);
    if (!rollout) throw noRollout(id);
    assertFleet(request, rollout.fleet, () => noRollout(id));
  }

  // --- groups

  app.post<{ Body: { fleet: string; name: string; devices: string[] } }>(
    '/groups',
    {
      config: { access: 'devices.write' },
      schema: {
        tags: ['groups'],
        summary: 'Create a static group from device names; names that match no device come back in `unresolved`',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['fleet', 'name', 'devices'],
          properties: { fleet: { type: 'string', pattern: DNS_LABEL_PATTERN }, name: { type: 'string', pattern: GROUP_NAME.source }, devices: deviceNames },
        },
        response: { 201: groupSchema, ...errors(...AUTH_ERRORS, 404, 409) },
      },
    },
    async (request, reply) => {
      const { fleet, name, devices } = request.body;
      assertFleet(request, fleet, () => noFleet(fleet));
      return reply.code(201).send(await createGroup(ctx, { fleet, name, devices, actor: actorOf(request) }));
    },
  );

  app.get<{ Querystring: PageQuery & { fleet?: string } }>(
    '/groups',
    {
      config: { access: 'devices.read' },
      schema: {
        tags: ['groups'],
        summary: 'Static groups, each with its resolved and unresolved device names',
        querystring: { type: 'object', properties: { fleet: str, ...pageQuery } },
        response: { 200: pageOf(groupSchema), ...errors(...AUTH_ERRORS) },
      },
    },
    async (request) => {
      const { limit, offset } = request.query;
      const fleet = listingFleet(request, request.query.fleet);
      if (fleet === null) return paginate([], { limit, offset });
      return paginate(await listGroups(ctx, fleet !== undefined ? { fleet } : {}), { limit, offset });
    },
  );

  app.get<{ Params: { fleet: string; name: string } }>(
    '/groups/:fleet/:name',
    {
      config: { access: 'devices.read' },
      schema: { tags: ['groups'], summary: 'One static group', params: groupParams, response: { 200: groupSchema, ...errors(...AUTH_ERRORS, 404) } },
    },
    async (request) => {
      const { fleet, name } = request.params;
      assertFleet(request, fleet, () => new MeshError('MESH_ERR_GROUP_NOT_FOUND', `no group "${name}" in fleet ${fleet}`));
      return getGroup(ctx, fleet, name);
    },
  );

  app.put<{ Params: { fleet: string; name: string }; Body: { devices: string[] } }>(
    '/groups/:fleet/:name',
    {
      config: { access: 'devices.write' },
      schema: {
        tags: ['groups'],
        summary: "Replace a group's device names (rollouts already created keep their own split)",
        params: groupParams,
        body: { type: 'object', additionalProperties: false, required: ['devices'], properties: { devices: deviceNames } },
        response: { 200: groupSchema, ...errors(...AUTH_ERRORS, 404) },
      },
    },
    async (request) => {
      const { fleet, name } = request.params;
      assertFleet(request, fleet, () => new MeshError('MESH_ERR_GROUP_NOT_FOUND', `no group "${name}" in fleet ${fleet}`));
      return setGroupDevices(ctx, fleet, name, request.body.devices, actorOf(request));
    },
  );

  // --- rollouts

  app.post<{ Body: CreateRolloutBody }>(
    '/rollouts',
    {
      config: { access: 'rollouts.write' },
      schema: {
        tags: ['rollouts'],
        summary: 'Start a rollout of an artifact version to a group, in waves, guarded by a probe',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['fleet', 'artifact', 'group', 'probe'],
          properties: {
            fleet: { type: 'string', pattern: DNS_LABEL_PATTERN },
            artifact: objectOf({ name: { type: 'string', minLength: 1, maxLength: 128 }, version: { type: 'string', minLength: 1, maxLength: 64 } }),
            group: { type: 'string', pattern: GROUP_NAME.source },
            probe: probeSchema(),
            strategy: {
              ...embeddable(STRATEGY_SCHEMA),
              description: 'cumulative, strictly increasing percentages, the last 100; no strategy = one wave of 100; max_failure_rate in [0, 1), default 0',
            },
          },
        },
        response: { 201: rolloutDetailSchema, ...errors(...AUTH_ERRORS, 404, 409) },
      },
    },
    async (request, reply) => {
      const body = request.body;
      assertFleet(request, body.fleet, () => noFleet(body.fleet));
      // What the shape schema cannot say (cumulative, last is 100), with the same path style.
      const strategy = parseStrategy(body.strategy);
      if (!strategy.ok) throw validationError(strategy.errors.map((e) => `body/${e}`));
      // The live table of probe types (a custom one may have been added since start), in the
      // schema errors' path-and-rule form.
      const types = knownProbeTypes();
      if (!types.includes(body.probe.type)) {
        throw validationError([`body/probe/type must be one of ${types.map((t) => JSON.stringify(t)).join(', ')} (or a custom type added with plugin-schema add)`]);
      }
      // Another fleet's artifact is not found for a bound key (createRollout refuses it for a * key, naming both fleets).
      await visibleArtifact(ctx, request, body.artifact.name, body.artifact.version);
      const detail = await createRollout(ctx, { ...body, actor: actorOf(request) });
      return reply.code(201).send(detail);
    },
  );

  app.get<{ Querystring: PageQuery & { fleet?: string; status?: RolloutStatusValue } }>(
    '/rollouts',
    {
      config: { access: 'rollouts.read' },
      schema: {
        tags: ['rollouts'],
        summary: 'Rollouts, newest first (summaries: everything but the per-device list)',
        querystring: { type: 'object', properties: { fleet: str, status: { type: 'string', enum: [...ROLLOUT_STATUSES] }, ...pageQuery } },
        response: { 200: pageOf(rolloutSummarySchema), ...errors(...AUTH_ERRORS) },
      },
    },
    async (request) => {
      const { limit, offset, status } = request.query;
      const fleet = listingFleet(request, request.query.fleet);
      if (fleet === null) return paginate([], { limit, offset });
      const page = await listRollouts(ctx, { ...(fleet !== undefined ? { fleet } : {}), ...(status !== undefined ? { status } : {}), limit, offset });
      return { items: page.items, total: page.total, limit, offset };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/rollouts/:id',
    {
      config: { access: 'rollouts.read' },
      schema: {
        tags: ['rollouts'],
        summary: 'Rollout detail: per device its wave, state, timestamps and reason; counts per state and per wave',
        params: idParams,
        response: { 200: rolloutDetailSchema, ...errors(...AUTH_ERRORS, 404) },
      },
    },
    async (request) => {
      await visibleRollout(request, request.params.id);
      return getRollout(ctx, request.params.id);
    },
  );

  app.get<{ Params: { id: string } }>(
    '/rollouts/:id/summary',
    {
      config: { access: 'rollouts.read' },
      schema: {
        tags: ['rollouts'],
        summary: 'Rollout summary: the detail without its per-device list, counted in SQL (for rollouts of many devices)',
        params: idParams,
        response: { 200: rolloutSummarySchema, ...errors(...AUTH_ERRORS, 404) },
      },
    },
    async (request) => {
      await visibleRollout(request, request.params.id);
      return getRolloutSummary(ctx, request.params.id);
    },
  );

  app.get<{ Params: { id: string }; Querystring: { limit: number; after?: number; wave?: number; state?: AssignmentState } }>(
    '/rollouts/:id/devices',
    {
      config: { access: 'rollouts.read' },
      schema: {
        tags: ['rollouts'],
        summary: "One page of the rollout's devices in plan order, optionally of one wave or showing one state; `next` is the `after` of the page that follows",
        params: idParams,
        querystring: { type: 'object', properties: rolloutDevicesQuery },
        response: { 200: rolloutDevicesPageSchema, ...errors(...AUTH_ERRORS, 404) },
      },
    },
    async (request) => {
      await visibleRollout(request, request.params.id);
      const { limit, after, wave, state } = request.query;
      return getRolloutDevices(ctx, request.params.id, {
        limit,
        ...(after !== undefined ? { afterPosition: after } : {}),
        ...(wave !== undefined ? { wave } : {}),
        ...(state !== undefined ? { state } : {}),
      });
    },
  );

  app.get<{ Params: { id: string }; Querystring: { ticket?: string; view: SnapshotView } }>(
    '/rollouts/:id/events',
    {
      config: { access: 'rollouts.read', streamTicket: true },
      schema: {
        tags: ['rollouts'],
        summary: 'Server-sent events: a `rollout` event with the full detail (or, with ?view=summary, the summary) now and whenever it changes',
        description:
          'Authenticated by the Authorization header, or (EventSource cannot set headers) by a stream ticket as ?ticket= ' +
          '(POST /api/v1/stream-tickets). A key holds a limited number of open streams (429 past it); a stream ends after its ' +
          'maximum lifetime with a `reconnect` event, and at once with a `revoked` event when its key is revoked. The streams of ' +
          'one rollout and view share one snapshot, taken again no sooner than ten times what the last one cost: on a rollout ' +
          'of tens of thousands of devices the full detail comes every few seconds; watch the summary and page the devices instead.',
        params: idParams,
        querystring: {
          type: 'object',
          properties: {
            ticket: { type: 'string', maxLength: 512, description: 'a stream ticket, for EventSource' },
            view: viewQuery,
          },
        },
        response: {
          200: { description: 'text/event-stream of `rollout` events', content: { 'text/event-stream': { schema: { type: 'string' } } } },
          ...errors(...AUTH_ERRORS, 404),
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const { view } = request.query;
      await visibleRollout(request, id);
      let last = '';
      // Polls the database (not an in-process event bus), so a change made by any replica
      // reaches every stream.
      const snapshot = async (): Promise<string | undefined> => {
        const json = await snapshots.get(id, view);
        if (json === last) return undefined;
        last = json;
        return json;
      };
      // Counted as a stream of the rollout before its first snapshot, and released on every
      // way out, so no snapshot is held for a stream that never opened.
      snapshots.open(id);
      let res: ReturnType<typeof streams.open>;
      try {
        const first = (await snapshot())!;
        if (reply.raw.destroyed) {
          // The client left during the first snapshot: there is nobody to stream to.
          snapshots.close(id);
          return await reply.send();
        }
        res = streams.open(request.apiKey!.id, reply);
        res.write(`event: rollout\ndata: ${first}\n\n`);
      } catch (err) {
        snapshots.close(id);
        throw err;
      }
      let polling = false;
      const poll = setInterval(() => {
        if (polling) return;
        polling = true;
        snapshot()
          .then((json) => {
            if (json !== undefined && !res.writableEnded) res.write(`event: rollout\ndata: ${json}\n\n`);
          })
          .catch((err: unknown) => {
            request.log.warn({ err, rolloutId: id }, 'rollout event stream ended');
            if (!res.writableEnded) res.end(`event: error\ndata: ${JSON.stringify({ error: (err as Error).message })}\n\n`);
          })
          .finally(() => {
            polling = false;
          });
      }, rolloutEventsIntervalMs);
      const keepalive = setInterval(() => !res.writableEnded && res.write(': keepalive\n\n'), KEEPALIVE_MS);
      res.on('close', () => {
        clearInterval(poll);
        clearInterval(keepalive);
        snapshots.close(id);
      });
    },
  );

  const action = (
    path: string,
    access: 'approve' | 'rollouts.manage',
    summary: string,
    run: (id: string, request: FastifyRequest, view: RolloutView) => Promise<RolloutDetail | RolloutSummary>,
  ) =>
    app.post<{ Params: { id: string }; Querystring: { view: RolloutView } }>(
      `/rollouts/:id/${path}`,
      {
        config: { access },
        schema: {
          tags: ['rollouts'],
          summary,
          params: idParams,
          querystring: {
            type: 'object',
            properties: { view: viewQuery },
          },
          ...(path === 'abort'
            ? {
                body: {
                  type: 'object',
                  additionalProperties: false,
                  properties: { policy: { type: 'string', enum: [...ABORT_POLICIES], description: 'default keep' } },
                },
              }
            : {}),
          response: { 200: rolloutAnswerSchema, ...errors(...AUTH_ERRORS, 404, 409) },
        },
      },
      async (request) => {
        await visibleRollout(request, request.params.id);
        try {
          return await run(request.params.id, request, request.query.view);
        } finally {
          snapshots.forget(request.params.id);
        }
      },
    );

  action('approve', 'approve', 'Start the wave waiting for approval (needs the approve right)', (id, request, view) => approveRollout(ctx, id, actorOf(request), view));
  action('resume', 'approve', 'Resume a halted rollout, acknowledging the failures seen so far (needs the approve right)', (id, request, view) =>
    resumeRollout(ctx, id, actorOf(request), view),
  );
  action('abort', 'rollouts.manage', 'Abort a running or halted rollout: policy keep (default) or revert (devices go back to their previous version)', (id, request, view) => {
    const policy = (request.body as { policy?: AbortPolicy } | undefined)?.policy;
    return abortRollout(ctx, id, policy !== undefined ? { policy } : {}, actorOf(request), view);
  });
}
