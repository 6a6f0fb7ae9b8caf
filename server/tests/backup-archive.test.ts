// `backup` and `restore` refusals through the real CLI: a restore never places anything from an
// archive that does not match its manifest, never writes into a data dir that is not empty, and
// a PostgreSQL data dir's backup says plainly that the database is not in it.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as tar from 'tar';
import { beforeAll, describe, expect, it } from 'vitest';
import { SERVER_CLI } from '../../scripts/lib/processes.mjs';
import { testEngines } from './engines.js';
import { tempDir } from './helpers.js';

const run = promisify(execFile);
const { engines } = await testEngines();

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [SERVER_CLI, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let dataDir: string;
let archive: string;
beforeAll(async () => {
  dataDir = path.join(tempDir(), 'server');
  archive = path.join(tempDir(), 'backup.tar');
  expect((await cli(['init', '--data-dir', dataDir, '--log-level', 'silent'])).code).toBe(0);
  expect((await cli(['backup', '--data-dir', dataDir, '--out', archive])).code).toBe(0);
});

describe('backup and restore refusals', () => {
  it('refuses an archive whose file differs from its manifest hash, leaving the target absent', async () => {
    const unpacked = tempDir();
    await tar.extract({ file: archive, cwd: unpacked });
    fs.appendFileSync(path.join(unpacked, 'config.json'), ' ');
    const tampered = path.join(tempDir(), 'tampered.tar');
    await tar.create({ file: tampered, cwd: unpacked, portable: true }, fs.readdirSync(unpacked));
    const target = path.join(tempDir(), 'restored');
    const r = await cli(['restore', '--from', tampered, '--data-dir', target]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/MESH_ERR_BACKUP_INVALID: .*config\.json has sha256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}/);
    expect(fs.existsSync(target)).toBe(false);
  });

  it('refuses a data dir that is not empty and changes nothing in it', async () => {
    const target = tempDir();
    fs.writeFileSync(path.join(target, 'keep'), 'x');
    const r = await cli(['restore', '--from', archive, '--data-dir', target]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('MESH_ERR_BACKUP_TARGET_NOT_EMPTY');
    expect(fs.readdirSync(target)).toEqual(['keep']);
  });

  it('restores into an empty dir with the keys private and the audit chain intact', async () => {
    const target = tempDir();
    const r = await cli(['restore', '--from', archive, '--data-dir', target]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ fileCount: expect.any(Number), database: { engine: 'sqlite', included: true } });
    expect(r.stderr).toContain('--bump-tuf-versions');
    expect(fs.statSync(path.join(target, 'pki', 'ca.key')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(target, 'tuf', 'keys')).mode & 0o777).toBe(0o700);
    expect(JSON.parse((await cli(['audit', 'verify', '--data-dir', target])).stdout)).toMatchObject({ verified: true });
  });

  it('refuses to back up a data dir that was never initialized, and creates nothing there', async () => {
    const missing = path.join(tempDir(), 'typo');
    const r = await cli(['backup', '--data-dir', missing, '--out', path.join(tempDir(), 'x.tar')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('MESH_ERR_DATADIR_NOT_INITIALIZED');
    expect(fs.existsSync(missing)).toBe(false);
  });

  it('answers --help for both commands', async () => {
    for (const c of ['backup', 'restore']) {
      const h = await cli([c, '--help']);
      expect(h.code).toBe(0);
      expect(h.stdout).toMatch(new RegExp(`^Usage: meshanics-server ${c} `));
    }
  });
});

describe.each(engines.filter((e) => e.name === 'postgres'))('backup on $name', (engine) => {
  it('backs up the data dir files and warns that the database is not in the archive', async () => {
    const url = await engine.fresh();
    const dir = path.join(tempDir(), 'pg-server');
    expect((await cli(['init', '--data-dir', dir, '--database-url', url, '--log-level', 'silent'])).code).toBe(0);
    const out = path.join(tempDir(), 'pg.tar');
    const r = await cli(['backup', '--data-dir', dir, '--database-url', url, '--out', out]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).manifest.database).toMatchObject({ engine: 'postgres', included: false });
    expect(r.stderr).toContain('NOT in this backup');
    const listed: string[] = [];
    await tar.list({ file: out, onReadEntry: (e) => listed.push(e.path) });
    expect(listed).toContain('pki/ca.key');
    expect(listed).not.toContain('meshanics.db');
  });
});
