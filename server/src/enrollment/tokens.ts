// Enrollment tokens: what an operator hands to a device (or its installer) so it may join a
// fleet once (or N times). The token is shown once at creation; the database keeps only its
// sha256, so a copy of the database cannot enroll anything.
import * as crypto from 'node:crypto';
import { isDnsLabel } from '@meshanics/core/contract';
import type { MeshanicsContext } from '../config/data-dir.js';
import { MeshError } from '../errors.js';
import type { EnrollmentTokenRecord } from '../store/index.js';

import { DEFAULT_ENROLLMENT_TOKEN_TTL_SECONDS } from '../config/defaults.js';

export const ENROLLMENT_TOKEN_PREFIX = 'mesh_enr_';
export const MAX_TOKEN_TTL_SECONDS = 365 * 86_400;
export const MAX_TOKEN_USES = 100_000;
/** 256 bits: guessing is hopeless, so the endpoint needs no lockout to stay safe. */
const TOKEN_RANDOM_BYTES = 32;

export interface CreateEnrollmentTokenInput {
  fleet: string;
  /** Default 1 day. */
  expiresInSeconds?: number;
  /** How many devices may enroll with it; default 1. */
  uses?: number;
  /** Binds the token to one device name. */
  deviceName?: string;
  actor?: string;
  now?: Date;
}

export interface CreatedEnrollmentToken {
  id: string;
  /** The secret itself: shown once, never stored. */
  token: string;
  fleet: string;
  expiresAt: string;
  uses: number;
  deviceName: string | null;
}

export type EnrollmentTokenStatus = 'active' | 'revoked' | 'expired' | 'exhausted';

/** What listings show: everything but the token and its hash. */
export interface EnrollmentTokenView extends Omit<EnrollmentTokenRecord, 'tokenSha256'> {
  status: EnrollmentTokenStatus;
}

export function hashEnrollmentToken(token: string): string {
  return crypto.createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Revoked before expired before exhausted: the same order in which enrollment checks them. */
export function enrollmentTokenStatus(t: EnrollmentTokenRecord, now: Date): EnrollmentTokenStatus {
  if (t.revokedAt !== null) return 'revoked';
  if (Date.parse(t.expiresAt) <= now.getTime()) return 'expired';
  if (t.usesLeft <= 0) return 'exhausted';
  return 'active';
}

function view(t: EnrollmentTokenRecord, now: Date): EnrollmentTokenView {
  return {
    id: t.id,
    fleet: t.fleet,
    deviceName: t.deviceName,
    usesTotal: t.usesTotal,
    usesLeft: t.usesLeft,
    createdAt: t.createdAt,
    createdBy: t.createdBy,
    expiresAt: t.expiresAt,
    revokedAt: t.revokedAt,
    revokedBy: t.revokedBy,
    status: enrollmentTokenStatus(t, now),
  };
}

function invalid(message: string): MeshError {
  return new MeshError('MESH_ERR_ENROLL_TOKEN_INVALID_OPTIONS', message);
}

export async function createEnrollmentToken(ctx: MeshanicsContext, input: CreateEnrollmentTokenInput): Promise<CreatedEnrollmentToken> {
  if (!isDnsLabel(input.fleet)) throw invalid(`fleet "${input.fleet}" must be a DNS label (lowercase letters, digits, "-")`);
  if (input.deviceName !== undefined && !isDnsLabel(input.deviceName)) {
    throw invalid(`device name "${input.deviceName}" must be a DNS label (lowercase letters, digits, "-")`);
  }
  const ttl = input.expiresInSeconds ?? DEFAULT_ENROLLMENT_TOKEN_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) {
    throw invalid(`expiry must be 1-${MAX_TOKEN_TTL_SECONDS} seconds, got ${ttl}`);
  }
  const uses = input.uses ?? 1;
  if (!Number.isInteger(uses) || uses < 1 || uses > MAX_TOKEN_USES) throw invalid(`uses must be 1-${MAX_TOKEN_USES}, got ${uses}`);
  // A token for a fixed name can enroll that name once; more uses could never be spent.
  if (input.deviceName !== undefined && uses !== 1) throw invalid('a token bound to a device name can have only 1 use');

  const now = input.now ?? new Date();
  const token = ENROLLMENT_TOKEN_PREFIX + crypto.randomBytes(TOKEN_RANDOM_BYTES).toString('base64url');
  const record: EnrollmentTokenRecord = {
    id: crypto.randomUUID(),
    tokenSha256: hashEnrollmentToken(token),
    fleet: input.fleet,
    deviceName: input.deviceName ?? null,
    usesTotal: uses,
    usesLeft: uses,
    createdAt: now.toISOString(),
    createdBy: input.actor ?? 'operator',
    expiresAt: new Date(now.getTime() + ttl * 1000).toISOString(),
    revokedAt: null,
    revokedBy: null,
  };
  await ctx.store.withWriteLock(async () => {
    await ctx.store.enrollmentTokens.insert(record);
    await ctx.store.appendAudit({
      at: record.createdAt,
      actor: record.createdBy,
      action: 'enrollment_token.created',
      subject: `enrollment-token:${record.id}`,
      details: { fleet: record.fleet, deviceName: record.deviceName, uses, expiresAt: record.expiresAt },
    });
  });
  ctx.logger.info({ tokenId: record.id, fleet: record.fleet, deviceName: record.deviceName, uses, expiresAt: record.expiresAt }, 'enrollment token created');
  return { id: record.id, token, fleet: record.fleet, expiresAt: record.expiresAt, uses, deviceName: record.deviceName };
}

export async function listEnrollmentTokens(ctx: MeshanicsContext, filter: { fleet?: string; now?: Date } = {}): Promise<EnrollmentTokenView[]> {
  const now = filter.now ?? new Date();
  return (await ctx.store.enrollmentTokens.list(filter.fleet === undefined ? {} : { fleet: filter.fleet })).map((t) => view(t, now));
}

/** Idempotent: revoking a revoked token returns it unchanged (and audits nothing new). */
export async function revokeEnrollmentToken(ctx: MeshanicsContext, id: string, actor = 'operator'): Promise<EnrollmentTokenView> {
  const now = new Date();
  const revoked = await ctx.store.withWriteLock(async () => {
    const token = await ctx.store.enrollmentTokens.get(id);
    if (!token) throw new MeshError('MESH_ERR_ENROLL_TOKEN_NOT_FOUND', `no enrollment token ${id}`);
    if (await ctx.store.enrollmentTokens.revoke(id, now.toISOString(), actor)) {
      await ctx.store.appendAudit({ at: now.toISOString(), actor, action: 'enrollment_token.revoked', subject: `enrollment-token:${id}`, details: { fleet: token.fleet } });
      ctx.logger.info({ tokenId: id, fleet: token.fleet }, 'enrollment token revoked');
    }
    return (await ctx.store.enrollmentTokens.get(id))!;
  });
  return view(revoked, now);
}
