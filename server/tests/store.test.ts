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
});
