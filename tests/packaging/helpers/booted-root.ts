// A Debian root that boots: systemd as PID 1 in a podman container (`--systemd=always`), so
// the package's unit runs under a real service manager (issues 24 and 28): enable/start from
// the maintainer scripts, Restart=, RestartPreventExitStatus=, KillMode=control-group and the
// ExecStartPre=/ExecStopPost= watchdog hooks. Tried on these machines: systemd 252 (bookworm)
// boots in about 0.6 s under podman 4.3 + runc on the host's cgroup v1 hybrid layout. Built
// once and cached like helpers/debian-root.ts (its own tar and image: systemd-sysv gives
// /sbin/init, dbus lets systemctl talk to PID 1).
// On a hybrid host podman gives the container only the v1 hierarchies and masks the
// name=systemd release_agent, so systemd runs in legacy mode without cgroup-empty
// notifications: a service whose main process exits while it has other processes (the agent's
// hand-over) stays "deactivating (stop-sigterm)" with an empty cgroup until TimeoutStopSec=
// (90 s) runs out. With the host's cgroup2 hierarchy mounted at /sys/fs/cgroup/unified, systemd
// runs in hybrid mode, as on a device with a hybrid kernel setup, and sees the cgroup empty at
// once. (Seen here: km-*.service probes, legacy stuck 90 s, hybrid restarted after RestartSec=.)
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { DebianRoot, podman } from './debian-root.js';
import { CACHE } from './tools.js';

const run = promisify(execFile);
const BOOT_TAR = path.join(CACHE, 'bookworm-minbase-systemd-pid1.tar');
const BOOT_IMAGE = 'localhost/meshanics-pkg-bookworm:systemd-pid1';

export async function ensureBootImage(): Promise<string> {
  if (!existsSync(BOOT_TAR)) {
    const tmp = `${BOOT_TAR}.${process.pid}.tmp.tar`;
    await run('mmdebstrap', ['--variant=minbase', '--include=systemd,systemd-sysv,dbus', '--format=tar', 'bookworm', tmp], { timeout: 600_000, maxBuffer: 64 * 1024 * 1024 });
    renameSync(tmp, BOOT_TAR);
  }
  const exists = await podman(['image', 'exists', BOOT_IMAGE]).then(
    () => true,
    () => false,
  );
  if (!exists) await podman(['import', BOOT_TAR, BOOT_IMAGE]);
  return BOOT_IMAGE;
}

export class BootedRoot extends DebianRoot {
  /** Boots the image (host network, MOUNTS at the same path inside) and waits for systemd to be up. */
  static async boot(name: string, mounts: string[]): Promise<BootedRoot> {
    const image = await ensureBootImage();
    await podman(['rm', '-f', '-t', '0', name]).catch(() => undefined);
    const hybrid = readFileSync('/proc/self/mounts', 'utf8').includes(' /sys/fs/cgroup/unified cgroup2 ');
    const cgroup = hybrid ? ['-v', '/sys/fs/cgroup/unified:/sys/fs/cgroup/unified:rw'] : [];
    await podman(['run', '-d', '--name', name, '--systemd=always', '--network', 'host', ...cgroup, ...mounts.flatMap((m) => ['-v', `${m}:${m}`]), image, '/sbin/init']);
    const root = new BootedRoot(name);
    let state = '';
    for (const until = Date.now() + 60_000; Date.now() < until;) {
      state = (await root.sh('systemctl is-system-running')).stdout.trim();
      // "degraded": a unit of the minimal image failed; the manager itself is up.
      if (state === 'running' || state === 'degraded') return root;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`systemd in ${name} did not come up: is-system-running says "${state}"; ${(await root.sh('systemctl --failed --no-legend')).stdout}`);
  }

  /** `systemctl show -p PROPS` of the agent's unit, in the order asked (systemctl prints its own order). */
  async unit(...props: string[]): Promise<string[]> {
    const r = await this.sh(`systemctl show meshanics-agent.service ${props.map((p) => `-p ${p}`).join(' ')}`);
    const values = new Map(r.stdout.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const));
    return props.map((p) => values.get(p) ?? '');
  }
}
