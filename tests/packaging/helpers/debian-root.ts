// A throwaway Debian system for installing the .deb: a minimal bookworm root file system made
// by mmdebstrap from Debian's own packages, plus systemd (installed, not running: as on a device
// image being built; systemd-analyze verify runs in it) (no image registry is reachable here), imported
// into podman and run as a container on the host's network (the agent reaches the server on
// 127.0.0.1). Neither node nor npm exists in it. Why podman and not chroot: the container
// gives the root its own /proc, /dev and PID namespace without mounting anything on the host,
// and `podman rm` takes everything away again.
// podman runs with our own configuration (runc + cgroupfs: crun fails on these machines; our
// own image store under .cache/packaging/podman), nothing under /etc changes.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Child } from '../../../scripts/lib/processes.mjs';
import { CACHE } from './tools.js';

const run = promisify(execFile);
const PODMAN_DIR = path.join(CACHE, 'podman');
const BASE_TAR = path.join(CACHE, 'bookworm-minbase-systemd.tar');
const IMAGE = 'localhost/meshanics-pkg-bookworm:minbase-systemd';

export function podmanEnv(): NodeJS.ProcessEnv {
  mkdirSync(path.join(PODMAN_DIR, 'tmp'), { recursive: true });
  const conf = path.join(PODMAN_DIR, 'containers.conf');
  writeFileSync(
    conf,
    `[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\ntmp_dir = "${PODMAN_DIR}/tmp"\n`,
  );
  const storage = path.join(PODMAN_DIR, 'storage.conf');
  writeFileSync(storage, `[storage]\ndriver = "overlay"\ngraphroot = "${PODMAN_DIR}/storage"\nrunroot = "${PODMAN_DIR}/run"\n`);
  return { ...process.env, CONTAINERS_CONF: conf, CONTAINERS_STORAGE_CONF: storage };
}

export async function podman(args: string[], opts: { timeout?: number } = {}) {
  return run('podman', args, { env: podmanEnv(), maxBuffer: 64 * 1024 * 1024, timeout: opts.timeout ?? 300_000 });
}

/** The base image, built once and cached (the tar under .cache/packaging, the image in our store). */
export async function ensureBaseImage(): Promise<string> {
  if (!existsSync(BASE_TAR)) {
    const tmp = `${BASE_TAR}.${process.pid}.tmp.tar`;
    await run('mmdebstrap', ['--variant=minbase', '--include=systemd', '--format=tar', 'bookworm', tmp], { timeout: 600_000, maxBuffer: 64 * 1024 * 1024 });
    renameSync(tmp, BASE_TAR);
  }
  const exists = await podman(['image', 'exists', IMAGE]).then(
    () => true,
    () => false,
  );
  if (!exists) await podman(['import', BASE_TAR, IMAGE]);
  return IMAGE;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** One running container of the base image; `sh` runs a command line in it as root. */
export class DebianRoot {
  protected constructor(readonly name: string) {}

  /** MOUNTS: host paths visible at the same path inside (the test's work dir, dist-packages). */
  static async start(name: string, mounts: string[]): Promise<DebianRoot> {
    const image = await ensureBaseImage();
    await podman(['rm', '-f', name]).catch(() => undefined);
    await podman(['run', '-d', '--name', name, '--network', 'host', ...mounts.flatMap((m) => ['-v', `${m}:${m}`]), image, 'sleep', 'infinity']);
    return new DebianRoot(name);
  }

  async sh(script: string): Promise<ExecResult> {
    return podman(['exec', this.name, 'sh', '-c', script]).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
    );
  }

  /** A long-running command; its pid is kept in PIDFILE inside so `stopSpawned` can signal it. */
  spawn(name: string, script: string, pidFile: string): Child & { stopInside: () => Promise<unknown> } {
    const proc = spawn('podman', ['exec', this.name, 'sh', '-c', `echo $$ > ${pidFile}; exec ${script}`], { env: podmanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const child = new Child(name, proc) as Child & { stopInside: () => Promise<unknown> };
    child.stopInside = async () => {
      await this.sh(`kill -TERM "$(cat ${pidFile})" 2>/dev/null || true`);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const exit = await child.exit;
      clearTimeout(timer);
      return exit;
    };
    return child;
  }

  async remove(): Promise<void> {
    await podman(['rm', '-f', '-t', '0', this.name]).catch(() => undefined);
  }
}
