// Drives podman for the server-image tests with the image build's own store and settings
// (scripts/image/podman-env.mjs), so the tests run exactly the image `npm run image` made.
import { execFile, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { imageEnv } from '../../scripts/image/podman-env.mjs';

const execFileP = promisify(execFile);
export const PODMAN_ENV = { ...process.env, ...imageEnv() };

export function podmanAvailable(): string | undefined {
  const r = spawnSync('podman', ['--version'], { encoding: 'utf8', env: PODMAN_ENV });
  return r.status === 0 ? undefined : 'podman is not installed (apt-get install -y podman runc mmdebstrap)';
}

export async function podman(args: string[], { allowFail = false } = {}): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await execFileP('podman', args, { env: PODMAN_ENV, maxBuffer: 64 * 1024 * 1024 });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number };
    if (allowFail) return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: typeof e.code === 'number' ? e.code : 1 };
    throw new Error(`podman ${args.join(' ')} failed: ${e.stderr ?? String(err)}`);
  }
}

/** `meshanics-server ARGS` inside the running container, as its own (non-root) user; parsed JSON output. */
export async function serverCliIn(container: string, args: string[]): Promise<any> {
  const { stdout } = await podman(['exec', container, 'meshanics-server', ...args]);
  const text = stdout.trim();
  return text ? JSON.parse(text) : undefined;
}

/** Ports the kernel hands out now, for a container on the host network to bind. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<import('node:net').Server>((resolve) => {
          const s = createServer();
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as import('node:net').AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
