export const PODMAN_ENV: NodeJS.ProcessEnv;
/** Undefined when podman runs; otherwise why not, as a skip reason. */
export function podmanAvailable(): string | undefined;
/** `podman ARGS` to completion; throws with its stderr unless `allowFail`, which returns the exit code instead. */
export function podman(args: string[], options?: { allowFail?: boolean }): Promise<{ stdout: string; stderr: string; code: number }>;
/** `podman run -d` of the server image as NAME on the host network, its data dir on VOLUME, ENV as its environment; no health check. */
export function runServerContainer(
  image: string,
  options: { name: string; volume: string; env: Record<string, string> },
): Promise<{ stdout: string; stderr: string; code: number }>;
/** Ports the kernel hands out now, for a container on the host network to bind. */
export function freePorts(n: number): Promise<number[]>;
