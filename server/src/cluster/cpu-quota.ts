// The cores a control group's CPU quota allows this process, for `serve --workers auto`. Node's
// os.availableParallelism() sees the CPU affinity, and the quota only on Node 22+ (libuv >=
// 1.49), where it takes the quota of the last level it reads rather than the tightest and
// misses a cgroup v1 `cpu` controller mounted alone ("4:cpu:/..."). A container's --cpus or a
// unit's CPUQuota= sets a quota, not an affinity, so without this a container limited to two
// cores on a 64-core host would start 64 workers. Rounded down, as libuv does, so the two agree
// and the smaller of them is the quota's.
//
// The kernel enforces every level of the hierarchy (cgroup-v2.rst, "cpu.max"; for v1,
// sched-bwc.rst, "Hierarchical considerations"), so the tightest quota from the process's own
// group up to the mount point is the one that holds. A level that is not there is skipped: in
// a container without its own cgroup namespace, /proc/self/cgroup names the host's path while
// the mount shows only the container's group, which is then the mount point itself.
import { readFileSync } from 'node:fs';
import path from 'node:path';

export interface CgroupRoots {
  /** Where /proc/self/cgroup is read from. */
  procSelfCgroup: string;
  /** Where the cgroup file systems are mounted. */
  mount: string;
}

const SYSTEM: CgroupRoots = { procSelfCgroup: '/proc/self/cgroup', mount: '/sys/fs/cgroup' };

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The tightest of `quotaAt(dir)` from `leaf` up to `top`, as cores; Infinity where no level sets one. */
function tightest(top: string, leaf: string, quotaAt: (dir: string) => number | undefined): number {
  let cores = Infinity;
  for (let dir = leaf; ; dir = path.dirname(dir)) {
    const quota = quotaAt(dir);
    if (quota !== undefined && quota > 0) cores = Math.min(cores, quota);
    if (dir === top || !dir.startsWith(`${top}/`)) return cores;
  }
}

/** cgroup v2: `cpu.max` is "max PERIOD" (no limit) or "QUOTA PERIOD", both in microseconds. */
function v2QuotaAt(dir: string): number | undefined {
  const [quota, period] = (read(path.join(dir, 'cpu.max')) ?? '').split(/\s+/);
  const cores = Number(quota) / Number(period);
  return Number.isFinite(cores) ? cores : undefined;
}

/** cgroup v1: cpu.cfs_quota_us is -1 without a limit. */
function v1QuotaAt(dir: string): number | undefined {
  const cores = Number(read(path.join(dir, 'cpu.cfs_quota_us'))) / Number(read(path.join(dir, 'cpu.cfs_period_us')));
  return Number.isFinite(cores) ? cores : undefined;
}

/**
 * The whole cores this process's CPU quota allows (a worker for half a core would only take
 * turns with the others; under one core still runs one); Infinity without a quota, or where
 * the control groups cannot be read (another OS, /proc not mounted).
 */
export function cpuQuotaCores(roots: CgroupRoots = SYSTEM): number {
  const membership = read(roots.procSelfCgroup);
  if (membership === undefined) return Infinity;
  let cores = Infinity;
  for (const line of membership.split('\n')) {
    // "hierarchy-ID:controller-list:cgroup-path" (cgroups(7)); the path may itself hold colons.
    const [id, controllers, ...rest] = line.split(':');
    const groupPath = rest.join(':');
    if (!groupPath.startsWith('/')) continue;
    if (id === '0' && controllers === '') {
      // v2. On a hybrid system this line is the unified hierarchy, mounted elsewhere
      // (/sys/fs/cgroup/unified) and never holding the cpu controller: nothing is read for it.
      cores = Math.min(cores, tightest(roots.mount, path.join(roots.mount, groupPath), v2QuotaAt));
    } else if (controllers?.split(',').includes('cpu')) {
      // v1: the controller's mount is named after the controllers mounted together there.
      for (const name of new Set([controllers, 'cpu', 'cpu,cpuacct', 'cpuacct,cpu'])) {
        const mount = path.join(roots.mount, name);
        cores = Math.min(cores, tightest(mount, path.join(mount, groupPath), v1QuotaAt));
      }
    }
  }
  return Number.isFinite(cores) ? Math.max(1, Math.floor(cores)) : Infinity;
}
