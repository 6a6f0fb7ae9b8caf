// The package version says what it was built from (issue 24, "Bad input"): a real git
// repository in a temp dir, committed, tagged and dirtied in turn.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageVersion } from '../../scripts/packaging/version.mjs';

let repo: string;
const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args], { cwd: repo, encoding: 'utf8' }).trim();

beforeAll(async () => {
  repo = await mkdtemp(path.join(os.tmpdir(), 'meshanics-pkg-version-'));
  git('init', '-q');
  await writeFile(path.join(repo, 'package.json'), JSON.stringify({ name: 'x', version: '0.1.0' }));
  git('add', '.');
  git('commit', '-qm', 'one');
});

afterAll(async () => {
  await rm(repo, { recursive: true, force: true });
});

describe('the package version from git', () => {
  it('names the commit of an untagged clean tree', () => {
    expect(packageVersion(repo)).toBe(`0.1.0+g${git('rev-parse', '--short=7', 'HEAD')}`);
  });

  it('is the plain version on a clean tree tagged v<version>', () => {
    git('tag', 'v0.1.0');
    expect(packageVersion(repo)).toBe('0.1.0');
  });

  it('says .dirty when the tree has uncommitted changes, tagged or not (an untracked file counts)', async () => {
    await writeFile(path.join(repo, 'stray.js'), '1');
    expect(packageVersion(repo)).toBe(`0.1.0+g${git('rev-parse', '--short=7', 'HEAD')}.dirty`);
  });
});
