// Side-effect-free: the server imports this to validate container specs exactly as devices do.
// No dockerode here (nor anything else that touches a device).
//
// The TUF target of a container version is a small JSON descriptor that follows this schema;
// the assignment's specJson carries the very same descriptor (the device checks both are
// identical). The image's bytes are protected by the digest pin: only `repo@sha256:<hex>`
// references are accepted, never a tag.
import type { JsonSchema } from '@meshanics/core/contract';

export const ARTIFACT_KIND = 'container';

export type PortProtocol = 'tcp' | 'udp';
export type RestartPolicy = 'no' | 'on-failure' | 'always' | 'unless-stopped';

export interface ContainerPort {
  /** Port inside the container. */
  container: number;
  /** Port published on the device. */
  host: number;
  /** Default "tcp". */
  protocol?: PortProtocol;
  /** Host address the port is published on; default 127.0.0.1 (loopback only). */
  hostIp?: string;
}

export interface ContainerMount {
  /** Host path; on the device it must be under `allowlist.bindMountPaths`. */
  source: string;
  /** Path inside the container. */
  target: string;
  /** Default false. */
  readOnly?: boolean;
}

export interface ContainerSpec {
  /** `registry[:port]/repository@sha256:<64 hex>`: fully qualified and pinned by digest. */
  image: string;
  /** Name of the managed container (a DNS label). */
  name: string;
  /** Command and arguments (replaces the image's CMD); default: the image's. */
  cmd?: string[];
  env?: Record<string, string>;
  ports?: ContainerPort[];
  /** Default "no". */
  restartPolicy?: RestartPolicy;
  mounts?: ContainerMount[];
  /** Seconds a stop waits for the process before it is killed; default 10. */
  stopTimeoutSeconds?: number;
}

export const DEFAULT_HOST_IP = '127.0.0.1';
export const DEFAULT_STOP_TIMEOUT_SECONDS = 10;

/** Anything, then `@sha256:` and 64 lowercase hex: a tag (`:1.2`, `:latest`) fails here. */
export const DIGEST_PINNED_PATTERN = '^[^@]+@sha256:[0-9a-f]{64}$';

const label = '[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?';
const pathComponent = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
/**
 * A fully qualified reference: the registry is `localhost`, a dotted host name or any host
 * with a port (so no short name is ever resolved through search registries), then the
 * repository path, then the digest.
 */
export const IMAGE_REFERENCE_PATTERN = `^(?:localhost|${label}(?:\\.${label})+|${label}(?=:))(?::[0-9]{1,5})?` + `(?:/${pathComponent})+@sha256:[0-9a-f]{64}$`;

/** Absolute, no "." or ".." segment, no empty segment, no trailing slash, no NUL. */
const ABSOLUTE_PATH = '^(/(?!\\.\\.?(/|$))[^/\\u0000]+)+$';

const port = { type: 'integer', minimum: 1, maximum: 65535 };

export const CONTAINER_SPEC_SCHEMA: JsonSchema = Object.freeze({
  $id: 'https://meshanics.dev/schemas/artifact-container/spec.json',
  type: 'object',
  additionalProperties: false,
  required: ['image', 'name'],
  properties: {
    image: {
      type: 'string',
      maxLength: 512,
      // The digest rule first, on its own: a tag fails with that rule alone in the message.
      // Only a digest-pinned reference is then held to the full grammar.
      pattern: DIGEST_PINNED_PATTERN,
      if: { type: 'string', pattern: DIGEST_PINNED_PATTERN },
      then: { type: 'string', pattern: IMAGE_REFERENCE_PATTERN },
    },
    name: { type: 'string', pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$' },
    cmd: {
      type: 'array',
      maxItems: 256,
      items: { type: 'string', maxLength: 4096, pattern: '^[^\\u0000]*$' },
    },
    env: {
      type: 'object',
      maxProperties: 256,
      propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]{0,255}$' },
      additionalProperties: { type: 'string', maxLength: 32768, pattern: '^[^\\u0000]*$' },
    },
    ports: {
      type: 'array',
      maxItems: 64,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['container', 'host'],
        properties: {
          container: port,
          host: port,
          protocol: { enum: ['tcp', 'udp'] },
          hostIp: {
            type: 'string',
            maxLength: 45,
            // An IPv4 or IPv6 literal (no host names: the runtime binds an address).
            pattern: '^(?:[0-9]{1,3}(?:\\.[0-9]{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*)$',
          },
        },
      },
    },
    restartPolicy: { enum: ['no', 'on-failure', 'always', 'unless-stopped'] },
    mounts: {
      type: 'array',
      maxItems: 64,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['source', 'target'],
        properties: {
          source: { type: 'string', maxLength: 4096, pattern: ABSOLUTE_PATH },
          target: { type: 'string', maxLength: 4096, pattern: ABSOLUTE_PATH },
          readOnly: { type: 'boolean' },
        },
      },
    },
    // At most 120: every runtime call is bounded (3 min by default), stop included.
    stopTimeoutSeconds: { type: 'integer', minimum: 0, maximum: 120 },
  },
});

/** Splits a validated reference into its repository and digest. */
export function parseImageReference(image: string): { repository: string; digest: string } {
  const at = image.lastIndexOf('@');
  if (at <= 0) throw new Error(`image reference "${image}" has no digest`);
  return { repository: image.slice(0, at), digest: image.slice(at + 1) };
}
