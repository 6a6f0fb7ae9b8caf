// The real runtime the tests use, as scripts/container-runtime/up.sh left it (runtime.json).
// Locally the tests skip with a message naming what is missing; in CI (CI=true) a missing
// runtime is a failure.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';

export interface TestImage {
  repository: string;
  digest: string;
  ref: string;
  tagRef: string;
}

export interface RuntimeEnv {
  socketPath: string;
  registry: string;
  images: { v1: TestImage; v2: TestImage; bad: TestImage; other: TestImage };
  /** The CONTAINERS_* configuration files up.sh wrote (registries.conf names the insecure local registry). */
  env: { CONTAINERS_CONF?: string; CONTAINERS_STORAGE_CONF?: string; CONTAINERS_REGISTRIES_CONF?: string };
}

export const RUNTIME_DIR = process.env.MESHANICS_CONTAINERS_DIR ?? '/tmp/meshanics-containers';
export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

function packageInstalled(pkg: string): boolean {
  try {
    const out = execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out.includes('install ok installed');
  } catch {
    return false;
  }
}

function answers(options: http.RequestOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ timeout: 2000, ...options }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** The runtime, or why it is not there. */
export async function findRuntime(): Promise<{ env: RuntimeEnv; missing?: undefined } | { env?: undefined; missing: string }> {
  const packages = ['podman', 'runc', 'docker-registry', 'busybox-static'].filter((p) => !packageInstalled(p));
  if (packages.length > 0) {
    return { missing: `Debian package${packages.length > 1 ? 's' : ''} ${packages.join(', ')} not installed (scripts/container-runtime/up.sh installs and starts everything)` };
  }
  const file = path.join(RUNTIME_DIR, 'runtime.json');
  if (!existsSync(file)) return { missing: `${file} not found: run scripts/container-runtime/up.sh` };
  const env = JSON.parse(readFileSync(file, 'utf8')) as RuntimeEnv;
  if (!(await answers({ socketPath: env.socketPath, path: '/_ping' }))) {
    return { missing: `the podman service at ${env.socketPath} does not answer: run scripts/container-runtime/up.sh` };
  }
  const [host, port] = env.registry.split(':');
  if (!(await answers({ host, port: Number(port), path: '/v2/' }))) {
    return { missing: `the registry at ${env.registry} does not answer: run scripts/container-runtime/up.sh` };
  }
  return { env };
}
