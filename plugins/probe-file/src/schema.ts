// Side-effect-free: the server imports this to validate file probe specs exactly as devices do.
import type { JsonSchema } from '@meshanics/core/contract';

export const PROBE_TYPE = 'file';

export interface FileProbeSpec {
  /** Absolute path of the readiness file; healthy when it is a non-empty regular file. */
  path: string;
}

export const FILE_PROBE_SPEC_SCHEMA: JsonSchema = Object.freeze({
  $id: 'https://meshanics.dev/schemas/probe-file/spec.json',
  type: 'object',
  additionalProperties: false,
  required: ['path'],
  properties: {
    path: { type: 'string', minLength: 2, maxLength: 4096, pattern: '^/(?!.*(^|/)\\.\\.(/|$))[^\\u0000]*$' },
  },
});
