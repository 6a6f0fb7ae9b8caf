// Runs podman with the image build's own store and settings (podman-env.mjs), and finds free
// ports for a container on the host network: shared by the server-image tests
// (tests/image/podman.ts) and the image benchmark (bench/suites/image.mjs), so both drive the
// image `npm run image` made the same way.
import { execFile, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { imageEnv } from './podman-env.mjs';

const execFileP = promisify(execFile);
export const PODMAN_ENV = { ...process.env, ...imageEnv() };

/** Undefined when podman runs; otherwise why not, as a skip reason. */
export function podmanAvailable() {
  const r = spawnSync('podman', ['--version'], { encoding: 'utf8', env: PODMAN_ENV });
  return r.status === 0 ? undefined : 'podman is not installed (apt-get install -y podman runc mmdebstrap)';
}

/** `podman ARGS` to completion; throws with its stderr unless `allowFail`, which returns the exit code instead. */
export async function podman(args, { allowFail = false } = {}) {
  try {
    const { stdout, stderr } = await execFileP('podman', args, { env: PODMAN_ENV, maxBuffer: 64 * 1024 * 1024 });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    if (allowFail) return { stdout: err.stdout ?? '', stderr: err.stderr ?? '', code: typeof err.code === 'number' ? err.code : 1 };
    throw new Error(
      `podman ${args.join(' ')} failed: ${err.stderr ?? String(err)} (store settings ${PODMAN_ENV.CONTAINERS_STORAGE_CONF}; MESHANICS_IMAGE_STORAGE_DRIVER=vfs or overlay picks the driver)`,
    );
  }
}

/**
 * `podman run -d` of the server image as NAME on the host network, its data dir on VOLUME and
 * ENV (the MESHANICS_* listen addresses and settings) as its environment; the image's own
 * health check is off (the callers poll /readyz themselves).
 */
export async function runServerContainer(image, { name, volume, env }) {
  return podman([
    'run',
    '-d',
    '--name',
    name,
    '--network',
    'host',
    '--health-interval',
    'disable',
    '-v',
    `${volume}:/var/lib/meshanics`,
    ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
    image,
  ]);
}

/** Ports the kernel hands out now, for a container on the host network to bind. */
export async function freePorts(n) {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise((resolve) => {
          const s = createServer();
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
