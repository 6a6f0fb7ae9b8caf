// Authentication and authorization of REST API requests. Each route says what it needs in
// its config (`access`); one onRequest hook enforces it before the body is even read, so a
// caller without the right never gets to stream an upload or learn what a body should hold.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { MeshanicsContext } from '../config/data-dir.js';
import { MeshError } from '../errors.js';
import type { ApiKeyRecord } from '../store/index.js';
import { ALL_FLEETS, authenticateApiKey, grants, keyCoversFleet, type Requirement } from './keys.js';

/** `public`: no key; `authenticated`: any valid key; otherwise the permission or right needed. */
export type Access = 'public' | 'authenticated' | Requirement;

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
    /** Also accept the key as `?access_token=` (EventSource cannot set headers). */
    queryToken?: boolean;
    /** The route reads data of every fleet: a key bound to one fleet may not use it. */
    allFleets?: boolean;
  }
  interface FastifyRequest {
    apiKey: ApiKeyRecord | null;
  }
}

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

function presentedKey(request: FastifyRequest, queryToken: boolean): string | undefined {
  const header = request.headers.authorization;
  if (typeof header === 'string' && header !== '') return BEARER.exec(header)?.[1] ?? '';
  if (queryToken) {
    const token = (request.query as Record<string, unknown> | undefined)?.access_token;
    if (typeof token === 'string' && token !== '') return token;
  }
  return undefined;
}

export function authHook(ctx: MeshanicsContext) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const config = request.routeOptions.config;
    const access = config?.access ?? 'public';
    if (access === 'public') return;
    const presented = presentedKey(request, config.queryToken === true);
    if (presented === undefined) {
      throw new MeshError('MESH_ERR_API_UNAUTHENTICATED', 'missing API key (send Authorization: Bearer <key>)');
    }
    const key = await authenticateApiKey(ctx, presented);
    if (!key) throw new MeshError('MESH_ERR_API_UNAUTHENTICATED', 'invalid API key');
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
