// What `dpkg --purge` leaves behind: a list of every path of the root before the install,
// compared with the list after the purge (tests/packaging/deb-install and packaged-agent-systemd).
import type { DebianRoot } from './debian-root.js';

// Paths that change on any dpkg run and are not the package's: dpkg's own database and log,
// and shadow's backups of the previous passwd/group state (useradd/userdel write them).
export const BOOKKEEPING = /^\/var\/(lib\/dpkg|log|cache\/debconf)\/|^\/etc\/(g?shadow|passwd|group)-\/$/;
const SNAPSHOT = 'find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /tmp -o -path /run \\) -prune -o -print | sort';

export async function snapshot(root: DebianRoot): Promise<string[]> {
  return (await root.sh(SNAPSHOT)).stdout.split('\n');
}

/** Paths that exist now and did not before, and those of them that are not BOOKKEEPING (or IGNORE). */
export async function leftovers(root: DebianRoot, before: string[], ignore?: RegExp): Promise<{ added: string[]; unexplained: string[] }> {
  const had = new Set(before);
  const added = (await snapshot(root)).filter((p) => p && !had.has(p));
  return { added, unexplained: added.filter((p) => !BOOKKEEPING.test(`${p}/`) && !ignore?.test(`${p}/`)) };
}
