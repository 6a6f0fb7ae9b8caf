// `serve --workers auto` takes the tightest CPU quota of the process's control groups. The
// layouts below are real files in a temporary directory shaped as /proc/self/cgroup and
// /sys/fs/cgroup are on the hosts named (the kernel's own files cannot be written here).
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cpuQuotaCores } from '../src/cluster/cpu-quota.js';

let root: string | undefined;
afterEach(async () => {
  if (root) await rm(root, { recursive: true, force: true });
  root = undefined;
});

/** Writes `files` (paths relative to the fake mount) and the membership file; returns the roots to read. */
async function layout(membership: string, files: Record<string, string>): Promise<{ procSelfCgroup: string; mount: string }> {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-cgroup-'));
  const mount = path.join(root, 'sys/fs/cgroup');
  await mkdir(mount, { recursive: true });
  for (const [file, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(mount, file)), { recursive: true });
    await writeFile(path.join(mount, file), `${text}\n`);
  }
  const procSelfCgroup = path.join(root, 'cgroup');
  await writeFile(procSelfCgroup, `${membership}\n`);
  return { procSelfCgroup, mount };
}

describe('the CPU quota serve --workers auto stays within', () => {
  it("takes a systemd unit's CPUQuota= from the unit's own group (cgroup v2), not the root's", async () => {
    const roots = await layout('0::/system.slice/meshanics.service', {
      'cgroup.controllers': 'cpu io memory',
      'system.slice/cpu.max': 'max 100000',
      'system.slice/meshanics.service/cpu.max': '300000 100000',
    });
    expect(cpuQuotaCores(roots)).toBe(3);
  });

  it('takes the tightest level when a parent slice limits more than the unit (cgroup v2)', async () => {
    const roots = await layout('0::/fleet.slice/meshanics.service', {
      'fleet.slice/cpu.max': '200000 100000',
      'fleet.slice/meshanics.service/cpu.max': '800000 100000',
    });
    expect(cpuQuotaCores(roots)).toBe(2);
  });

  it("reads a container's --cpus=2.5 at its own namespace root as two whole cores", async () => {
    const roots = await layout('0::/', { 'cpu.max': '250000 100000' });
    expect(cpuQuotaCores(roots)).toBe(2);
  });

  it('runs one worker under a quota of less than one core', async () => {
    const roots = await layout('0::/', { 'cpu.max': '50000 100000' });
    expect(cpuQuotaCores(roots)).toBe(1);
  });

  it('has no limit when every level says max', async () => {
    const roots = await layout('0::/a/b', { 'cpu.max': 'max 100000', 'a/cpu.max': 'max 100000', 'a/b/cpu.max': 'max 100000' });
    expect(cpuQuotaCores(roots)).toBe(Infinity);
  });

  it('reads a cgroup v1 cpu controller mounted with cpuacct, walking up from the process group', async () => {
    const roots = await layout('12:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/', {
      'cpu,cpuacct/cpu.cfs_quota_us': '-1',
      'cpu,cpuacct/cpu.cfs_period_us': '100000',
      'cpu,cpuacct/docker/cpu.cfs_quota_us': '400000',
      'cpu,cpuacct/docker/cpu.cfs_period_us': '100000',
      'cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '300000',
      'cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000',
    });
    expect(cpuQuotaCores(roots)).toBe(3);
  });

  it('reads a cgroup v1 cpu controller mounted alone, as on hosts that split cpu and cpuacct', async () => {
    const roots = await layout('2:cpuacct:/\n1:cpu:/batch', {
      'cpu/cpu.cfs_quota_us': '-1',
      'cpu/cpu.cfs_period_us': '100000',
      'cpu/batch/cpu.cfs_quota_us': '100000',
      'cpu/batch/cpu.cfs_period_us': '100000',
    });
    expect(cpuQuotaCores(roots)).toBe(1);
  });

  it("takes the mount point's quota inside a v1 container whose membership names the host's path", async () => {
    // Without a cgroup namespace the container sees its own group mounted at the top, while
    // /proc/self/cgroup still gives the host's path, which does not exist in the container.
    const roots = await layout('4:cpu,cpuacct:/kubepods/burstable/pod1/ctr', {
      'cpu,cpuacct/cpu.cfs_quota_us': '200000',
      'cpu,cpuacct/cpu.cfs_period_us': '100000',
    });
    expect(cpuQuotaCores(roots)).toBe(2);
  });

  it('has no limit when -1 (v1) and where the files cannot be read', async () => {
    const v1 = await layout('1:cpu:/', { 'cpu/cpu.cfs_quota_us': '-1', 'cpu/cpu.cfs_period_us': '100000' });
    expect(cpuQuotaCores(v1)).toBe(Infinity);
    expect(cpuQuotaCores({ procSelfCgroup: path.join(root!, 'absent'), mount: v1.mount })).toBe(Infinity);
  });

  it('reads this machine without failing', () => {
    const cores = cpuQuotaCores();
    expect(cores === Infinity || (Number.isInteger(cores) && cores >= 1)).toBe(true);
  });
});
