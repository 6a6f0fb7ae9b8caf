// The device's allowlist checks, shared by every plugin so each rule is enforced the same
// way everywhere. A denial names the rule (`allowlist.writePaths`), so an operator reading
// the report knows which line of the device's config said no.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Allowlist } from '../config/agent-config.js';
import { MeshError } from '../errors.js';

function deny(message: string): never {
  throw new MeshError('MESH_ERR_ALLOWLIST_DENIED', message);
}

/** A clean absolute path: absolute, normalized, no `..`, no NUL, no trailing slash. */
export function isCleanAbsolutePath(p: string): boolean {
  return path.isAbsolute(p) && !p.includes('\0') && path.posix.normalize(p) === p && !p.split('/').includes('..') && (p === '/' || !p.endsWith('/'));
}

function withSlash(dir: string): string {
  return dir.endsWith('/') ? dir : `${dir}/`;
}

async function realpathOfNearestExisting(p: string): Promise<string> {
  let current = p;
  const rest: string[] = [];
  for (;;) {
    try {
      const real = await fs.realpath(current);
      return rest.length ? path.join(real, ...rest.reverse()) : real;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const parent = path.dirname(current);
      if (parent === current) return p;
      rest.push(path.basename(current));
      current = parent;
    }
  }
}

/**
 * Checks a file destination against `allowlist.writePaths`: textually under a prefix, and
 * still under it once every symlink on the way is resolved (no escape through a link).
 */
export async function assertWritableDestination(allowlist: Allowlist, destination: string): Promise<void> {
  if (!isCleanAbsolutePath(destination)) {
    deny(`destination "${destination}" must be a clean absolute path (no "..", no relative path)`);
  }
  const prefixes = allowlist.writePaths.map(withSlash);
  const textual = prefixes.filter((prefix) => destination.startsWith(prefix));
  if (textual.length === 0) {
    deny(`destination "${destination}" is not under an allowlisted write path (allowlist.writePaths: ${prefixes.length ? prefixes.join(', ') : 'empty'})`);
  }
  try {
    const stat = await fs.lstat(destination);
    if (stat.isSymbolicLink()) deny(`destination "${destination}" is a symlink (allowlist.writePaths)`);
    if (!stat.isFile()) deny(`destination "${destination}" exists and is not a regular file`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const resolvedParent = await realpathOfNearestExisting(path.dirname(destination));
  const resolved = path.join(resolvedParent, path.basename(destination));
  for (const prefix of textual) {
    const realPrefix = withSlash(await realpathOfNearestExisting(prefix.slice(0, -1) || '/'));
    if (resolved.startsWith(realPrefix)) return;
  }
  deny(`destination "${destination}" escapes the allowlisted write paths through a symlink (it resolves to ${resolved}) (allowlist.writePaths)`);
}

export function assertExecBinary(allowlist: Allowlist, binary: string): void {
  if (!isCleanAbsolutePath(binary)) deny(`binary "${binary}" must be a clean absolute path`);
  if (!allowlist.execBinaries.includes(binary)) {
    deny(`binary "${binary}" is not on the allowlist (allowlist.execBinaries)`);
  }
}

export function assertSystemdUnit(allowlist: Allowlist, unit: string): void {
  if (!allowlist.systemdUnits.includes(unit)) {
    deny(`systemd unit "${unit}" is not on the allowlist (allowlist.systemdUnits)`);
  }
}

function normalizeHost(host: string): string {
  return host
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '');
}

export function isHttpHostAllowed(allowlist: Allowlist, host: string): boolean {
  const wanted = normalizeHost(host);
  return allowlist.httpHosts.some((h) => normalizeHost(h) === wanted);
}

export function assertHttpHost(allowlist: Allowlist, host: string): void {
  if (!isHttpHostAllowed(allowlist, host)) {
    deny(`host "${host}" is not on the allowlist (allowlist.httpHosts)`);
  }
}

/** For bind mounts: a clean absolute host path under `allowlist.bindMountPaths`. */
export function assertBindMountPath(allowlist: Allowlist, hostPath: string): void {
  if (!isCleanAbsolutePath(hostPath)) deny(`bind mount "${hostPath}" must be a clean absolute path`);
  const ok = allowlist.bindMountPaths.map(withSlash).some((p) => withSlash(hostPath).startsWith(p));
  if (!ok) deny(`bind mount "${hostPath}" is not under an allowlisted path (allowlist.bindMountPaths)`);
}
