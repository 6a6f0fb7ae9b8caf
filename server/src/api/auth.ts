// Authentication and authorization of REST API requests. Each route says what it needs in
// its config (`access`); one onRequest hook enforces it before the body is even read, so a
// caller without the right never gets to stream an upload or learn what a body should hold.
// A wrong key counts against the caller's address (auth-throttle.ts).
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { MeshanicsContext } from '../config/data-dir.js';
import { MeshError } from '../errors.js';
import type { ApiKeyRecord } from '../store/index.js';
import type { AuthFailureThrottle } from './auth-throttle.js';
import { ALL_FLEETS, authenticateApiKey, grants, keyCoversFleet, type Requirement } from './keys.js';
import type { StreamTickets } from './stream-tickets.js';

/** `public`: no key; `authenticated`: any valid key; otherwise the permission or right needed. */
export type Access = 'public' | 'authenticated' | Requirement;

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
    /**
     * An event stream: also accept a stream ticket as `?ticket=` (EventSource cannot set
     * headers; the key itself never goes in a URL).
     */
    streamTicket?: boolean;
    /** The route reads data of every fleet: a key bound to one fleet may not use it. */
    allFleets?: boolean;
  }
  interface FastifyRequest {
    apiKey: ApiKeyRecord | null;
  }
}

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

type Presented = { key: string } | { ticket: string };

function presented(request: FastifyRequest, streamTicket: boolean): Presented | undefined {
  const header = request.headers.authorization;
  if (typeof header === 'string' && header !== '') return { key: BEARER.exec(header)?.[1] ?? '' };
  if (streamTicket) {
    const ticket = (request.query as Record<string, unknown> | undefined)?.ticket;
    if (typeof ticket === 'string' && ticket !== '') return { ticket };
  }
  return undefined;
}

export interface AuthHookOptions {
  throttle: AuthFailureThrottle;
  tickets: StreamTickets;
}

/** The live key a stream ticket was minted for. */
async function ticketKey(ctx: MeshanicsContext, tickets: StreamTickets, ticket: string): Promise<ApiKeyRecord | undefined> {
  const keyId = tickets.redeem(ticket);
  if (keyId === undefined) return undefined;
  const key = await ctx.store.apiKeys.get(keyId);
  return key && key.revokedAt === null ? key : undefined;
}

export function authHook(ctx: MeshanicsContext, { throttle, tickets }: AuthHookOptions) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const config = request.routeOptions.config;
    const access = config?.access ?? 'public';
    if (access === 'public') return;
    const credential = presented(request, config.streamTicket === true);
    if (credential === undefined) {
      throw new MeshError('MESH_ERR_API_UNAUTHENTICATED', 'missing API key (send Authorization: Bearer <key>)');
    }
    const wait = throttle.retryAfterSeconds(request.ip);
    if (wait > 0) {
      void reply.header('retry-after', String(wait));
      throw new MeshError('MESH_ERR_API_AUTH_RATE_LIMITED', `too many failed API key attempts from ${request.ip}; retry in ${wait} s`);
    }
    const key = 'key' in credential ? await authenticateApiKey(ctx, credential.key) : await ticketKey(ctx, tickets, credential.ticket);
    if (!key) {
      throttle.fail(request.ip);
      throw new MeshError(
        'MESH_ERR_API_UNAUTHENTICATED',
        'key' in credential ? 'invalid API key' : 'invalid stream ticket (expired, used already, or its key revoked): mint a new one',
      );
    }
    request.apiKey = key;
    if (access !== 'authenticated' && !grants(key, access)) throw new MeshError('MESH_ERR_API_FORBIDDEN', `missing permission: ${access}`);
    if (config.allFleets === true && key.fleet !== ALL_FLEETS) {
      throw new MeshError('MESH_ERR_API_FORBIDDEN', `missing permission: ${access} on every fleet (this key is bound to fleet "${key.fleet}")`);
    }
  };
}

/** The authenticated key (routes with an access other than `public` always have one). */
export function callerOf(request: FastifyRequest): ApiKeyRecord {
  if (!request.apiKey) throw new MeshError('MESH_ERR_API_UNAUTHENTICATED', 'missing API key (send Authorization: Bearer <key>)');
  return request.apiKey;
}

/** The audit actor of the caller: the key's name. */
export function actorOf(request: FastifyRequest): string {
  return callerOf(request).name;
}

/**
 * Throws `notFound` unless the caller's key covers `fleet`: outside its fleet, a thing answers
 * exactly as if it did not exist.
 */
export function assertFleet(request: FastifyRequest, fleet: string, notFound: () => MeshError): void {
  if (!keyCoversFleet(callerOf(request), fleet)) throw notFound();
}

/**
 * The fleet a listing is restricted to: the one asked for, narrowed to the key's. `null`
 * means the asked fleet is outside the key's: the listing is empty.
 */
export function listingFleet(request: FastifyRequest, asked: string | undefined): string | undefined | null {
  const key = callerOf(request);
  if (key.fleet === ALL_FLEETS) return asked;
  if (asked !== undefined && asked !== key.fleet) return null;
  return key.fleet;
}
