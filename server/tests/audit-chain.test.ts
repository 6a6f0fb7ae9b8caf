// The hash-chained audit trail: every append links to the one before; verification (the
// function, the export and the `audit verify` CLI process) finds a row changed in the
// database behind the server's back; migration 3 chains the events written before it.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { auditEventHash, canonicalJson, GENESIS_HASH } from '../src/audit/chain.js';
import { exportAudit, verifyAudit } from '../src/audit/trail.js';
import { initDataDir } from '../src/config/data-dir.js';
import { provisionDevice } from '../src/fleet/devices.js';
import { createGroup } from '../src/fleet/groups.js';
import { MIGRATIONS, openStore } from '../src/store/index.js';
import { tempDir } from './helpers.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const execFileP = promisify(execFile);

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [CLI, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of iterable) lines.push(line);
  return lines;
}

describe('audit hash chain', () => {
  it('links every event to the one before, with fractions in the details, and exports NDJSON that verifies', async () => {
    const store = await openStore(path.join(tempDir(), 'a.db'));
    try {
      const first = await store.appendAudit({ actor: 'a', action: 'x.one', subject: 's', details: { tolerance: 0.05, nested: { b: 1, a: [1, 'two'] } } });
      const second = await store.appendAudit({ actor: 'a', action: 'x.two', subject: 's', details: { dropped: undefined, kept: null } });
      expect(first).toMatchObject({ seq: 1, prevHash: GENESIS_HASH });
      expect(second).toMatchObject({ seq: 2, prevHash: first.hash, details: { kept: null } });
      expect(first.hash).toBe(auditEventHash(GENESIS_HASH, first));
      expect(canonicalJson({ b: 1, a: [0.5, 'x'] })).toBe('{"a":[0.5,"x"],"b":1}');
      expect(await store.listAudit()).toEqual([first, second]);
      expect(await store.listAudit({ order: 'desc', limit: 1 })).toEqual([second]);
      expect(await store.countAudit({ action: 'x.one' })).toBe(1);

      const lines = await collect(exportAudit({ store }));
      expect(lines.every((l) => l.endsWith('\n'))).toBe(true);
      const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(parsed.slice(0, 2).map((e) => e.seq)).toEqual([1, 2]);
      expect(parsed[0]).toEqual({ seq: 1, at: first.at, actor: 'a', action: 'x.one', subject: 's', details: first.details, prevHash: GENESIS_HASH, hash: first.hash });
      expect(parsed.at(-1)).toEqual({ chain: { count: 2, verified: true, headHash: second.hash } });
      expect(await verifyAudit({ store })).toEqual({ count: 2, verified: true, headHash: second.hash });
    } finally {
      await store.close();
    }
  });

  it('`audit verify` (a CLI process) fails after an audit row is changed with direct SQL, naming the broken seq', async () => {
    expect(fs.existsSync(CLI), 'run `npx tsc -b` first').toBe(true);
    const dataDir = tempDir();
    const ctx = await initDataDir({ dataDir });
    try {
      await provisionDevice(ctx, { fleet: 'lab', name: 'edge-1' });
      await createGroup(ctx, { fleet: 'lab', name: 'canary', devices: ['edge-1', 'edge-2'], actor: 'operator:test' });
      await ctx.store.appendAudit({ actor: 'operator:test', action: 'test.third', subject: 'x' });
    } finally {
      await ctx.close();
    }
    const ok = await cli(['audit', 'verify', '--data-dir', dataDir]);
    expect(ok.code).toBe(0);
    const good = JSON.parse(ok.stdout) as { count: number; verified: boolean; headHash: string };
    expect(good).toMatchObject({ count: 3, verified: true });

    // An attacker with the database file: the trigger refuses the UPDATE, so they drop it first.
    const db = new Database(path.join(dataDir, 'meshanics.db'));
    try {
      expect(() => db.prepare("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2").run()).toThrow(/append-only/);
      db.exec('DROP TRIGGER audit_events_no_update');
      db.prepare(`UPDATE audit_events SET details = '{"devices":["edge-1"],"unresolved":[]}' WHERE seq = 2`).run();
    } finally {
      db.close();
    }
    const broken = await cli(['audit', 'verify', '--data-dir', dataDir]);
    expect(broken.code).toBe(1);
    expect(JSON.parse(broken.stdout)).toMatchObject({
      count: 3,
      verified: false,
      firstBrokenSeq: 2,
      problem: 'its contents do not match its hash (the event was changed)',
    });

    // The export says the same on its last line, and exits 1 too.
    const out = path.join(tempDir(), 'audit.ndjson');
    const exported = await cli(['audit', 'export', '--out', out, '--data-dir', dataDir]);
    expect(exported.code).toBe(1);
    const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ chain: { count: 3, verified: false, firstBrokenSeq: 2 } });
    expect(JSON.parse(exported.stdout)).toMatchObject({ out, chain: { verified: false, firstBrokenSeq: 2 } });
  });

  it('finds a removed event (its successor does not follow) once the delete trigger is dropped', async () => {
    const file = path.join(tempDir(), 'r.db');
    const store = await openStore(file);
    for (const n of [1, 2, 3]) await store.appendAudit({ actor: 'a', action: `x.${n}`, subject: 's' });
    await store.close();
    const db = new Database(file);
    db.exec('DROP TRIGGER audit_events_no_delete');
    db.prepare('DELETE FROM audit_events WHERE seq = 2').run();
    db.close();
    const reopened = await openStore(file);
    try {
      expect(await verifyAudit({ store: reopened })).toMatchObject({ count: 2, verified: false, firstBrokenSeq: 3 });
    } finally {
      await reopened.close();
    }
  });

  it('migration 3 chains the events written before it, in order, and keeps the trail append-only', async () => {
    const file = path.join(tempDir(), 'm.db');
    await (await openStore(file, { migrations: MIGRATIONS.slice(0, 2) })).close();
    const db = new Database(file);
    const insert = db.prepare('INSERT INTO audit_events (at, actor, action, subject, details) VALUES (?, ?, ?, ?, ?)');
    insert.run('2024-01-01T00:00:00.000Z', 'operator:cli', 'artifact.published', 'artifact:m@1', '{"sha256":"ab","length":3}');
    insert.run('2024-01-02T00:00:00.000Z', 'device:x', 'device.registered', 'device:x', '{}');
    insert.run('2024-01-03T00:00:00.000Z', 'operator:cli', 'device.decommissioned', 'device:x', '{"rate":0.25}');
    db.close();

    const store = await openStore(file);
    try {
      expect(await store.schemaVersion()).toBeGreaterThanOrEqual(3);
      const events = await store.listAudit();
      expect(events.map((e) => [e.seq, e.action])).toEqual([
        [1, 'artifact.published'],
        [2, 'device.registered'],
        [3, 'device.decommissioned'],
      ]);
      expect(events[0]!.prevHash).toBe(GENESIS_HASH);
      expect(events[1]!.prevHash).toBe(events[0]!.hash);
      expect(events[2]!.hash).toBe(auditEventHash(events[1]!.hash, events[2]!));
      const next = await store.appendAudit({ actor: 'a', action: 'after.migration', subject: 's' });
      expect(next).toMatchObject({ seq: 4, prevHash: events[2]!.hash });
      expect(await verifyAudit({ store })).toMatchObject({ count: 4, verified: true, headHash: next.hash });
    } finally {
      await store.close();
    }
    // The triggers are back, and a row without its place in the chain is refused.
    const raw = new Database(file);
    try {
      expect(() => raw.prepare("UPDATE audit_events SET actor = 'x' WHERE seq = 1").run()).toThrow(/append-only/);
      expect(() => raw.prepare('DELETE FROM audit_events WHERE seq = 1').run()).toThrow(/append-only/);
      expect(() => insert_(raw)).toThrow(/seq, prev_hash and hash/);
    } finally {
      raw.close();
    }
  });
});

function insert_(db: Database.Database): void {
  db.prepare("INSERT INTO audit_events (at, actor, action, subject, details) VALUES ('t', 'a', 'b', 'c', '{}')").run();
}
