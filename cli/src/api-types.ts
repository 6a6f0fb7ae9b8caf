// What the operator REST API answers, named for its two clients: this CLI and the web console,
// which imports it type-only (`@meshanics/cli/api-types`, erased from its JavaScript). The
// shapes themselves are generated from the OpenAPI document the server serves
// (generated/rest-api.ts, scripts/gen-rest-types.mjs): nothing here restates a field, so a
// change to a route's schema reaches both clients' type checks. Nothing exists at run time.
import type { paths } from './generated/rest-api.js';

/** The JSON body of a 200 answer to METHOD PATH. */
export type Ok<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  responses: { 200: { content: { 'application/json': infer Body } } };
}
  ? Body
  : never;

/** One item of a paged list answer. */
type ItemOf<P extends keyof paths> = Ok<P, 'get' & keyof paths[P]> extends { items: Array<infer Item> } ? Item : never;

/** Every list endpoint pages the same way (limit/offset, total). */
export interface Page<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

export type WhoAmI = Ok<'/api/v1/whoami', 'get'>;
export type DeviceSummary = ItemOf<'/api/v1/devices'>;
export type DeviceDetail = Ok<'/api/v1/devices/{fleet}/{name}', 'get'>;
/** An enrollment token as listed: never the token itself. */
export type EnrollmentToken = ItemOf<'/api/v1/enrollment-tokens'>;
export type LogRequest = ItemOf<'/api/v1/log-requests'>;
export type Artifact = Ok<'/api/v1/artifacts/{name}/{version}', 'get'>;
/** What a withdrawal answers (`DELETE /artifacts/{name}/{version}`). */
export type WithdrawnArtifact = Ok<'/api/v1/artifacts/{name}/{version}', 'delete'>;
export type Group = Ok<'/api/v1/groups/{fleet}/{name}', 'get'>;
export type Rollout = Ok<'/api/v1/rollouts/{id}', 'get'>;
export type Wave = Rollout['waves'][number];
export type RolloutDevice = NonNullable<Rollout['devices']>[number];
/** The detail without its device list (`GET /rollouts/{id}/summary`, the `view=summary` event stream). */
export type RolloutSummary = Ok<'/api/v1/rollouts/{id}/summary', 'get'>;
/** One page of a rollout's devices (`GET /rollouts/{id}/devices`). */
export type RolloutDevicesPage = Ok<'/api/v1/rollouts/{id}/devices', 'get'>;
export type AuditEvent = ItemOf<'/api/v1/audit'>;
/** The audit chain check (`GET /audit/verify`, and the last line of an export). */
export type ChainStatus = Ok<'/api/v1/audit/verify', 'get'>;
