// Side-effect-free: the server imports this to validate http probe specs exactly as devices do.
import type { JsonSchema } from '@meshanics/core/contract';

export const PROBE_TYPE = 'http';

export interface HttpProbeSpec {
  /** http:// or https:// URL; its host must be on the device's allowlist (loopback by default). */
  url: string;
}

export const HTTP_PROBE_SPEC_SCHEMA: JsonSchema = Object.freeze({
  $id: 'https://meshanics.dev/schemas/probe-http/spec.json',
  type: 'object',
  additionalProperties: false,
  required: ['url'],
  properties: {
    url: { type: 'string', pattern: '^https?://[^/?#@\\s]+(/[^\\s]*)?$', maxLength: 2048 },
  },
});
