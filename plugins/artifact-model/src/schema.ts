// Side-effect-free: the server imports this to validate model specs exactly as devices do.
import type { JsonSchema } from '@meshanics/core/contract';

export const ARTIFACT_KIND = 'model';

export interface ModelSpec {
  /** Name of the live file inside the model's directory; defaults to "model". */
  fileName?: string;
}

export const MODEL_SPEC_SCHEMA: JsonSchema = Object.freeze({
  $id: 'https://meshanics.dev/schemas/artifact-model/spec.json',
  type: 'object',
  additionalProperties: false,
  properties: {
    fileName: {
      type: 'string',
      // A plain file name: no separators, no leading dot (so never "." or ".."), no control characters.
      pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$',
    },
  },
});
