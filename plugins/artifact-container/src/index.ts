// @meshanics/artifact-container: a container delivered as a TUF-signed JSON descriptor that
// pins its image by digest, run through the device's own Docker-API runtime (podman's
// Docker-compatible service or docker) with dockerode.
//
//   plugin.ts             the plugin class: options, runtime clients, one function per stage
//   descriptor-checks.ts  descriptor == assignment spec; bind mounts inside the allowlist
//   image-pull.ts         pull by digest, verify the digest, pull again once if the image vanished
//   container-swap.ts     apply (staging, stop, renames, start) and rollback
//   image-cleanup.ts      after a terminal state: the backup container, images no version needs
//   labels.ts             labels and names that mark what the agent created
//   plugin-state.ts       what is checkpointed for rollback and cleanup
//   engine.ts             the Docker Engine API calls (dockerode, loaded at first use)
//   runtime.ts            which socket: podman's, docker's or a given path
//   schema.ts             the descriptor's JSON schema (also `/schema`, without dockerode)
//
// Containers and images the agent did not create are never touched.
export * from './schema.js';
export { DOCKER_SOCKET, PODMAN_ROOTFUL_SOCKET, resolveRuntimeSocket, runtimeSocketCandidates, type ContainerRuntimeOption, type ResolveRuntimeOptions } from './runtime.js';
export { BACKUP_SUFFIX, LABELS, STAGING_SUFFIX } from './labels.js';
export type { ContainerPluginState, PreviousContainer } from './plugin-state.js';
export { default, type ContainerPluginOptions } from './plugin.js';
