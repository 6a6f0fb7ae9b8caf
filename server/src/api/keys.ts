// Operator API keys: `Authorization: Bearer mesh_key_...`. A key is shown once at creation;
// the database keeps only its sha256, so a copy of the database cannot call the API. Each key
// is bound to one fleet (or `*`) and carries `<area>.<level>` permissions plus the separate
// `approve` right.
import * as crypto from 'node:crypto';
import { isDnsLabel } from '@meshanics/core/contract';
import type { MeshanicsContext } from '../config/data-dir.js';
import { MeshError } from '../errors.js';
import type { ApiKeyRecord } from '../store/index.js';

export const API_KEY_PREFIX = 'mesh_key_';
/** 256 bits of randomness: guessing is hopeless. */
const API_KEY_RANDOM_BYTES = 32;
export const ALL_FLEETS = '*';

export const PERMISSION_AREAS = ['devices', 'artifacts', 'rollouts', 'enrollment', 'audit', 'logs'] as const;
export const PERMISSION_LEVELS = ['read', 'write', 'manage'] as const;
export type PermissionArea = (typeof PERMISSION_AREAS)[number];
export type PermissionLevel = (typeof PERMISSION_LEVELS)[number];
export type Permission = `${PermissionArea}.${PermissionLevel}`;
/** What a route demands: an area permission or the approve right. */
export type Requirement = Permission | 'approve';

const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$/;

export interface CreateApiKeyInput {
  name: string;
  /** A fleet name or `*`. */
  fleet: string;
  /** `<area>.<level>` entries; `approve` in the list is the same as `approve: true`. */
  permissions: readonly string[];
  approve?: boolean;
  actor?: string;
  now?: Date;
}

export interface CreatedApiKey {
  id: string;
  /** The secret itself: shown once, never stored. */
  key: string;
  name: string;
  fleet: string;
  permissions: string[];
  approve: boolean;
  createdAt: string;
}

export interface ApiKeyView extends Omit<ApiKeyRecord, 'keySha256'> {
  status: 'active' | 'revoked';
}

export function hashApiKey(key: string): string {
  return crypto.createHash('sha256').update(key, 'utf8').digest('hex');
}

function invalid(message: string): MeshError {
  return new MeshError('MESH_ERR_APIKEY_INVALID', message);
}

/**
 * Validates and normalizes a permission list: one entry per area, its highest level (a higher
 * level implies the lower ones), in area order.
 */
export function normalizePermissions(entries: readonly string[]): { permissions: Permission[]; approve: boolean } {
  const levels = new Map<PermissionArea, number>();
  let approve = false;
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry === '') continue;
    if (entry === 'approve') {
      approve = true;
      continue;
    }
    const [area, level, ...rest] = entry.split('.');
    const areaIndex = PERMISSION_AREAS.indexOf(area as PermissionArea);
    const levelIndex = PERMISSION_LEVELS.indexOf(level as PermissionLevel);
    if (rest.length > 0 || areaIndex < 0 || levelIndex < 0) {
      throw invalid(`unknown permission "${entry}": expected <area>.<level> with area ${PERMISSION_AREAS.join('|')} and level ${PERMISSION_LEVELS.join('|')}, or approve`);
    }
    levels.set(area as PermissionArea, Math.max(levels.get(area as PermissionArea) ?? -1, levelIndex));
  }
  const permissions = PERMISSION_AREAS.filter((a) => levels.has(a)).map((a) => `${a}.${PERMISSION_LEVELS[levels.get(a)!]}` as Permission);
  return { permissions, approve };
}

/** Does the key grant `requirement` (manage ⊃ write ⊃ read; approve is separate)? */
export function grants(key: Pick<ApiKeyRecord, 'permissions' | 'approve'>, requirement: Requirement): boolean {
  if (requirement === 'approve') return key.approve;
  const [area, level] = requirement.split('.') as [PermissionArea, PermissionLevel];
  const needed = PERMISSION_LEVELS.indexOf(level);
  return key.permissions.some((p) => {
    const [a, l] = p.split('.');
    return a === area && PERMISSION_LEVELS.indexOf(l as PermissionLevel) >= needed;
  });
}

/** Is `fleet` inside what the key may see? */
export function keyCoversFleet(key: Pick<ApiKeyRecord, 'fleet'>, fleet: string): boolean {
  return key.fleet === ALL_FLEETS || key.fleet === fleet;
}

function view(k: ApiKeyRecord): ApiKeyView {
  return {
    id: k.id,
    name: k.name,
    fleet: k.fleet,
    permissions: k.permissions,
    approve: k.approve,
    createdAt: k.createdAt,
    createdBy: k.createdBy,
    revokedAt: k.revokedAt,
    revokedBy: k.revokedBy,
    status: k.revokedAt === null ? 'active' : 'revoked',
  };
}

export async function createApiKey(ctx: MeshanicsContext, input: CreateApiKeyInput): Promise<CreatedApiKey> {
  if (!KEY_NAME.test(input.name)) throw invalid(`name "${input.name}" must match ${KEY_NAME.source}`);
  if (input.fleet !== ALL_FLEETS && !isDnsLabel(input.fleet)) {
    throw invalid(`fleet "${input.fleet}" must be a DNS label (lowercase letters, digits, "-") or * for every fleet`);
  }
  const normalized = normalizePermissions(input.permissions);
  const approve = normalized.approve || input.approve === true;
  if (normalized.permissions.length === 0 && !approve) throw invalid('a key needs at least one permission (or --approve)');

  const now = (input.now ?? new Date()).toISOString();
  const key = API_KEY_PREFIX + crypto.randomBytes(API_KEY_RANDOM_BYTES).toString('base64url');
  const record: ApiKeyRecord = {
    id: crypto.randomUUID(),
    name: input.name,
    keySha256: hashApiKey(key),
    fleet: input.fleet,
    permissions: normalized.permissions,
    approve,
    createdAt: now,
    createdBy: input.actor ?? 'operator',
    revokedAt: null,
    revokedBy: null,
  };
  await ctx.store.withWriteLock(async () => {
    if (!(await ctx.store.apiKeys.insert(record))) {
      throw new MeshError('MESH_ERR_APIKEY_CONFLICT', `a live API key named "${input.name}" already exists (revoke it first or pick another name)`);
    }
    await ctx.store.appendAudit({
      at: now,
      actor: record.createdBy,
      action: 'apikey.created',
      subject: `apikey:${record.id}`,
      details: { name: record.name, fleet: record.fleet, permissions: record.permissions, approve },
    });
  });
  ctx.logger.info({ apiKeyId: record.id, name: record.name, fleet: record.fleet, permissions: record.permissions, approve }, 'API key created');
  return { id: record.id, key, name: record.name, fleet: record.fleet, permissions: record.permissions, approve, createdAt: now };
}

export async function listApiKeys(ctx: MeshanicsContext): Promise<ApiKeyView[]> {
  return (await ctx.store.apiKeys.list()).map(view);
}

/** Idempotent: revoking a revoked key returns it unchanged (and audits nothing new). */
export async function revokeApiKey(ctx: MeshanicsContext, id: string, actor = 'operator'): Promise<ApiKeyView> {
  const now = new Date().toISOString();
  return await ctx.store.withWriteLock(async () => {
    const key = await ctx.store.apiKeys.get(id);
    if (!key) throw new MeshError('MESH_ERR_APIKEY_NOT_FOUND', `no API key ${id}`);
    if (await ctx.store.apiKeys.revoke(id, now, actor)) {
      await ctx.store.appendAudit({ at: now, actor, action: 'apikey.revoked', subject: `apikey:${id}`, details: { name: key.name } });
      ctx.logger.info({ apiKeyId: id, name: key.name }, 'API key revoked');
    }
    return view((await ctx.store.apiKeys.get(id))!);
  });
}

/** The live key `presented` is, or undefined (unknown, malformed or revoked). */
export async function authenticateApiKey(ctx: MeshanicsContext, presented: string): Promise<ApiKeyRecord | undefined> {
  if (!presented.startsWith(API_KEY_PREFIX) || presented.length > 256) return undefined;
  const key = await ctx.store.apiKeys.getByHash(hashApiKey(presented));
  return key && key.revokedAt === null ? key : undefined;
}
