// Side-effect-free: the server imports this to validate exec probe specs exactly as devices do.
import { ABSOLUTE_ARGV_SCHEMA, type JsonSchema } from '@meshanics/core/contract';

export const PROBE_TYPE = 'exec';

export interface ExecProbeSpec {
  /** argv[0] is the absolute path of an allowlisted binary; the rest are fixed arguments. */
  argv: string[];
}

export const EXEC_PROBE_SPEC_SCHEMA: JsonSchema = Object.freeze({
  $id: 'https://meshanics.dev/schemas/probe-exec/spec.json',
  type: 'object',
  additionalProperties: false,
  required: ['argv'],
  properties: {
    argv: ABSOLUTE_ARGV_SCHEMA,
  },
});
