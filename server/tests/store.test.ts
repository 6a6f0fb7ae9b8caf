import * as path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { isMeshError } from '../src/errors.js';
import { MIGRATIONS, openStore, SqliteStore } from '../src/store/index.js';
import { tempDir } from './helpers.js';

describe('SQLite store', () => {
  it('applies migrations once: reopening the same database is a no-op', () => {
    const file = path.join(tempDir(), 'm.db');
    openStore(file).close();
    const again = openStore(file);
    expect(again.schemaVersion()).toBe(MIGRATIONS.at(-1)!.version);
    again.close();
    const db = new Database(file, { readonly: true });
    const rows = db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all();
    expect(rows).toEqual(MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('refuses a database migrated by a newer server', () => {
    const file = path.join(tempDir(), 'm.db');
    openStore(file).close();
    const db = new Database(file);
    db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')").run();
    db.close();
    let error: unknown;
    try {
      openStore(file);
    } catch (err) {
      error = err;
    }
    expect(isMeshError(error, 'MESH_ERR_STORE_SCHEMA_TOO_NEW')).toBe(true);
  });

  it('keeps the audit trail append-only even against direct SQL', () => {
    const file = path.join(tempDir(), 'm.db');
    const store = openStore(file);
    store.appendAudit({ actor: 'test', action: 'x.done', subject: 's', details: { a: 1 } });
    store.close();
    const db = new Database(file);
    expect(() => db.prepare("UPDATE audit_events SET actor = 'evil'").run()).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit_events').run()).toThrow(/append-only/);
    db.close();
  });

  it('upserts a device by SPIFFE ID and drops status reports whose sequence is not above the last', () => {
    const store = new SqliteStore(path.join(tempDir(), 'm.db'));
    const now = new Date().toISOString();
    const spiffeId = 'spiffe://meshanics.local/fleet/f/device/d';
    const { device, created } = store.ensureDevice({ spiffeId, fleet: 'f', name: 'd', now });
    expect(created).toBe(true);
    expect(store.ensureDevice({ spiffeId, fleet: 'f', name: 'd', now }).created).toBe(false);
    store.insertArtifact({
      id: 'a1', name: 'm', version: '1', kind: 'model', fileName: 'm', targetPath: 'm/1/m',
      sha256: '0'.repeat(64), length: 1, spec: {}, createdAt: now,
    });
    store.insertAssignment({
      id: 'as1', deviceId: device.id, artifactId: 'a1', artifactName: 'm', rolloutId: null,
      probe: { type: 'file', spec: { path: '/r' }, timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
      state: 'PENDING', reason: '', active: true, createdAt: now, updatedAt: now,
    });
    const report = { deviceId: device.id, assignmentId: 'as1', state: 'DOWNLOADING' as const, reason: '', bytesDone: 0, bytesTotal: 1, deviceTime: '', receivedAt: now };
    expect(store.recordStatusReport({ ...report, sequence: 5 })).toBe(true);
    expect(store.recordStatusReport({ ...report, sequence: 5, state: 'FAILED' })).toBe(false);
    expect(store.recordStatusReport({ ...report, sequence: 4, state: 'FAILED' })).toBe(false);
    expect(store.getAssignment('as1')?.state).toBe('DOWNLOADING');
    expect(store.listStatusReports('as1').map((r) => r.sequence)).toEqual([5]);
    store.close();
  });

  it('upgrades a version-1 database in place: existing devices keep their rows and gain the lifecycle columns', () => {
    const file = path.join(tempDir(), 'm.db');
    const v1 = new SqliteStore(file, [MIGRATIONS[0]!]);
    const now = new Date().toISOString();
    const { device } = v1.ensureDevice({ spiffeId: 'spiffe://meshanics.local/fleet/f/device/old', fleet: 'f', name: 'old', now });
    v1.close();
    const v2 = new SqliteStore(file, MIGRATIONS.slice(0, 2));
    expect(v2.schemaVersion()).toBe(2);
    expect(v2.getDeviceById(device.id)).toMatchObject({ name: 'old', decommissionedAt: null, offboardNotifiedAt: null });
    expect(v2.markOffboardNotified(device.id, now)).toBe(false);
    v2.decommissionDevice(device.id, now);
    expect(v2.markOffboardNotified(device.id, now)).toBe(true);
    expect(v2.markOffboardNotified(device.id, now)).toBe(false);
    expect(v2.enrollmentTokens.list()).toEqual([]);
    expect(v2.logRequests.listPending(device.id)).toEqual([]);
    v2.close();
  });

  it('lets only one caller take the last use of an enrollment token, and never a revoked or expired one', () => {
    const store = openStore(path.join(tempDir(), 'm.db'));
    const now = new Date();
    const base = {
      fleet: 'f', deviceName: null, usesTotal: 1, usesLeft: 1, createdAt: now.toISOString(), createdBy: 't',
      expiresAt: new Date(now.getTime() + 60_000).toISOString(), revokedAt: null, revokedBy: null,
    };
    store.enrollmentTokens.insert({ ...base, id: 'live', tokenSha256: 'a' });
    store.enrollmentTokens.insert({ ...base, id: 'old', tokenSha256: 'b', expiresAt: new Date(now.getTime() - 1).toISOString() });
    store.enrollmentTokens.insert({ ...base, id: 'gone', tokenSha256: 'c' });
    expect(store.enrollmentTokens.revoke('gone', now.toISOString(), 't')).toBe(true);
    expect(store.enrollmentTokens.revoke('gone', now.toISOString(), 't')).toBe(false);
    expect(store.enrollmentTokens.consumeUse('live', now.toISOString())).toBe(true);
    expect(store.enrollmentTokens.consumeUse('live', now.toISOString())).toBe(false);
    expect(store.enrollmentTokens.consumeUse('old', now.toISOString())).toBe(false);
    expect(store.enrollmentTokens.consumeUse('gone', now.toISOString())).toBe(false);
    expect(store.enrollmentTokens.get('live')!.usesLeft).toBe(0);
    store.close();
  });
});
