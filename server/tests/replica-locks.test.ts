// Two handles on one data dir and one database, as two replicas (or `serve` and a CLI process)
// have them, on both engines: online TUF signing is serialized by the database write lock
// (SQLite: BEGIN IMMEDIATE; PostgreSQL: the global advisory lock), so concurrent publishing
// builds one chain of versions and a due re-sign is done by exactly one of them.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/catalog/publish.js';
import { initDataDir, openDataDir } from '../src/config/data-dir.js';
import { LIFETIME_MS } from '../src/tuf/lifetimes.js';
import { testEngines } from './engines.js';
import { tempDir } from './helpers.js';

const { engines } = await testEngines();

describe.each(engines)('two replicas of one data dir on $name', (engine) => {
  it('serialize publishing and re-signing: one chain of versions, a due re-sign done once', async () => {
    const dataDir = tempDir();
    const database = engine.name === 'postgres' ? { databaseUrl: await engine.fresh() } : {};
    const a = await initDataDir({ dataDir, ...database });
    const b = await openDataDir({ dataDir, ...database });
    try {
      const before = a.tuf.versions();
      const file = () => {
        const f = path.join(tempDir(), 'm.bin');
        fs.writeFileSync(f, crypto.randomBytes(2048));
        return f;
      };
      await Promise.all(Array.from({ length: 6 }, (_, i) => publishArtifact(i % 2 === 0 ? a : b, { file: file(), name: 'race', version: `1.0.${i}`, kind: 'model' })));
      const published = b.tuf.versions();
      expect(published.snapshot).toBe(before.snapshot + 6);
      expect(published.timestamp).toBe(before.timestamp + 6);
      expect(await a.store.countAudit({ action: 'artifact.published' })).toBe(6);

      // Both replicas' re-signers wake when the timestamp is due: one re-signs, the other
      // re-reads the metadata under the lock and finds nothing left to do.
      const later = new Date(Date.now() + LIFETIME_MS.timestamp * 0.6);
      const results = await Promise.all([a.tuf.refreshExpiring(later), b.tuf.refreshExpiring(later)]);
      expect(results.map((r) => r.resigned.length > 0).sort()).toEqual([false, true]);
      expect(a.tuf.versions().timestamp).toBe(published.timestamp + 1);
    } finally {
      await b.close();
      await a.close();
    }
  });
});
