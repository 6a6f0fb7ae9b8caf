// Enrollment token management as the CLI and the REST API call it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir, type InitializedDataDir } from '../src/config/data-dir.js';
import { parseDurationSeconds } from '../src/config/durations.js';
import { isMeshError } from '../src/errors.js';
import { createEnrollmentToken, listEnrollmentTokens, revokeEnrollmentToken } from '../src/enrollment/tokens.js';
import { tempDir } from './helpers.js';

let ctx: InitializedDataDir;

beforeAll(async () => {
  ctx = await initDataDir({ dataDir: tempDir() });
});
afterAll(() => ctx.close());

async function codeOf(fn: () => unknown): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (err) {
    return isMeshError(err) ? err.code : String(err);
  }
}

describe('enrollment tokens', () => {
  it('creates a 256-bit base64url token shown once, valid one day for one use by default, and audits it', async () => {
    const now = new Date('2030-06-01T12:00:00Z');
    const created = await createEnrollmentToken(ctx, { fleet: 'lab', actor: 'operator:test', now });
    expect(created.token).toMatch(/^mesh_enr_[A-Za-z0-9_-]{43}$/);
    expect(created).toMatchObject({ fleet: 'lab', uses: 1, deviceName: null, expiresAt: '2030-06-02T12:00:00.000Z' });
    expect(await ctx.store.listAudit({ subject: `enrollment-token:${created.id}` })).toMatchObject([
      { action: 'enrollment_token.created', actor: 'operator:test', details: { fleet: 'lab', uses: 1 } },
    ]);
    expect((await createEnrollmentToken(ctx, { fleet: 'lab' })).token).not.toBe(created.token);
  });

  it('lists tokens without their secret, with uses left and status active, expired or revoked', async () => {
    const active = await createEnrollmentToken(ctx, { fleet: 'list', uses: 5 });
    const expired = await createEnrollmentToken(ctx, { fleet: 'list', expiresInSeconds: 1, now: new Date(Date.now() - 10_000) });
    const revoked = await createEnrollmentToken(ctx, { fleet: 'list', deviceName: 'cam-9' });
    const view = await revokeEnrollmentToken(ctx, revoked.id, 'operator:test');
    expect(view).toMatchObject({ status: 'revoked', revokedBy: 'operator:test' });
    // Revoking again changes nothing and audits nothing.
    expect((await revokeEnrollmentToken(ctx, revoked.id)).revokedAt).toBe(view.revokedAt);
    expect((await ctx.store.listAudit({ subject: `enrollment-token:${revoked.id}` })).map((e) => e.action)).toEqual(['enrollment_token.created', 'enrollment_token.revoked']);

    const listed = await listEnrollmentTokens(ctx, { fleet: 'list' });
    // Oldest first: the expired token was created (back-dated) before the others.
    expect(listed.map((t) => [t.id, t.status, t.usesLeft])).toEqual([
      [expired.id, 'expired', 1],
      [active.id, 'active', 5],
      [revoked.id, 'revoked', 1],
    ]);
    expect(listed.find((t) => t.id === revoked.id)!.deviceName).toBe('cam-9');
    for (const t of listed) expect(Object.keys(t)).not.toEqual(expect.arrayContaining(['token', 'tokenSha256']));
    expect(await listEnrollmentTokens(ctx, { fleet: 'nobody' })).toEqual([]);
  });

  it('refuses invalid options and unknown ids with stable codes', async () => {
    const invalid = 'MESH_ERR_ENROLL_TOKEN_INVALID_OPTIONS';
    expect(await codeOf(() => createEnrollmentToken(ctx, { fleet: 'Lab' }))).toBe(invalid);
    expect(await codeOf(() => createEnrollmentToken(ctx, { fleet: 'lab', deviceName: 'a_b' }))).toBe(invalid);
    expect(await codeOf(() => createEnrollmentToken(ctx, { fleet: 'lab', uses: 0 }))).toBe(invalid);
    expect(await codeOf(() => createEnrollmentToken(ctx, { fleet: 'lab', expiresInSeconds: 0 }))).toBe(invalid);
    expect(await codeOf(() => createEnrollmentToken(ctx, { fleet: 'lab', expiresInSeconds: 400 * 86400 }))).toBe(invalid);
    expect(await codeOf(() => createEnrollmentToken(ctx, { fleet: 'lab', deviceName: 'cam-1', uses: 2 }))).toBe(invalid);
    expect(await codeOf(() => revokeEnrollmentToken(ctx, 'no-such-id'))).toBe('MESH_ERR_ENROLL_TOKEN_NOT_FOUND');
  });

  it('parses CLI durations in seconds, minutes, hours and days', () => {
    expect([parseDurationSeconds('90s'), parseDurationSeconds('30m'), parseDurationSeconds('24h'), parseDurationSeconds('7d'), parseDurationSeconds('3600')]).toEqual([
      90, 1800, 86400, 604800, 3600,
    ]);
    for (const bad of ['', '0s', '-5m', '1w', '1.5h', 'h']) expect(parseDurationSeconds(bad), bad).toBeUndefined();
  });
});
