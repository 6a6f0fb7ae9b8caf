// The package version, from git: the root package.json's version when HEAD is tagged
// v<version> and the tree is clean; otherwise it says what it is built from, as semver build
// metadata (valid in a Debian version too): 0.1.0+g<sha> untagged, 0.1.0+g<sha>.dirty with
// uncommitted changes (issue 24, "Bad input").
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const git = (root, args) => execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();

export function packageVersion(root) {
  const base = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version;
  let sha;
  try {
    sha = git(root, ['rev-parse', '--short=7', 'HEAD']);
  } catch {
    return `${base}+unknown`; // not a git checkout (a source tarball): say so, never pretend
  }
  // Untracked files count: a stray file under a package's dist/ changes what ships.
  const dirty = git(root, ['status', '--porcelain']) !== '';
  let tagged = false;
  try {
    tagged = git(root, ['tag', '--points-at', 'HEAD']).split('\n').includes(`v${base}`);
  } catch {
    // no tags (a shallow clone): untagged, the version says so
  }
  if (tagged && !dirty) return base;
  return `${base}+g${sha}${dirty ? '.dirty' : ''}`;
}
