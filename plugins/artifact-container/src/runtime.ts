// Which Docker-API socket the plugin talks to. The agent maps `--container-runtime` /
// MESHANICS_CONTAINER_RUNTIME onto the plugin's `runtime` option ("none" means the agent does
// not load the plugin at all, so it never reaches this file).
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { MeshError } from '@meshanics/core';

export type ContainerRuntimeOption = 'auto' | 'podman' | 'docker' | (string & {});

export const DOCKER_SOCKET = '/var/run/docker.sock';
export const PODMAN_ROOTFUL_SOCKET = '/run/podman/podman.sock';

export interface ResolveRuntimeOptions {
  env?: NodeJS.ProcessEnv;
  /** Whether a socket exists (tests inject it); default: a unix socket is at that path. */
  exists?: (socketPath: string) => boolean;
}

function isSocket(p: string): boolean {
  try {
    return existsSync(p) && statSync(p).isSocket();
  } catch {
    return false;
  }
}

/** Accepts `/path/to.sock` and `unix:///path/to.sock`; anything else is not a socket path. */
function socketPathOf(runtime: string): string | undefined {
  const p = runtime.startsWith('unix://') ? runtime.slice('unix://'.length) : runtime;
  return path.isAbsolute(p) && !p.includes('\0') ? path.normalize(p) : undefined;
}

/**
 * The sockets a runtime option stands for, in the order they are tried: podman's (the
 * user's `$XDG_RUNTIME_DIR/podman/podman.sock`, then the rootful one), then docker's.
 */
export function runtimeSocketCandidates(runtime: ContainerRuntimeOption = 'auto', env: NodeJS.ProcessEnv = process.env): string[] {
  const podman = [...(env.XDG_RUNTIME_DIR && path.isAbsolute(env.XDG_RUNTIME_DIR) ? [path.join(env.XDG_RUNTIME_DIR, 'podman', 'podman.sock')] : []), PODMAN_ROOTFUL_SOCKET];
  switch (runtime) {
    case 'auto':
      return [...podman, DOCKER_SOCKET];
    case 'podman':
      return podman;
    case 'docker':
      return [DOCKER_SOCKET];
    default: {
      const p = socketPathOf(runtime);
      if (!p) {
        throw new MeshError('MESH_ERR_CONFIG_INVALID', `container runtime "${runtime}" must be auto, podman, docker or the absolute path of a Docker-API socket`);
      }
      return [p];
    }
  }
}

/**
 * The socket to use: the first candidate that exists. An explicit socket path is returned
 * as given even when missing (the error then names it). Undefined when no candidate of
 * auto/podman/docker exists.
 */
export function resolveRuntimeSocket(runtime: ContainerRuntimeOption = 'auto', options: ResolveRuntimeOptions = {}): string | undefined {
  const candidates = runtimeSocketCandidates(runtime, options.env ?? process.env);
  if (runtime !== 'auto' && runtime !== 'podman' && runtime !== 'docker') return candidates[0];
  const exists = options.exists ?? isSocket;
  return candidates.find((c) => exists(c));
}
