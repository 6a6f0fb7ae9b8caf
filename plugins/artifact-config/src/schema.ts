// Side-effect-free: the server imports this to validate config specs exactly as devices do.
import { ABSOLUTE_ARGV_SCHEMA, type JsonSchema } from '@meshanics/core/contract';

export const ARTIFACT_KIND = 'config';

export type ConfigReload = 'none' | { systemdUnit: string } | { exec: string[] };

export interface ConfigSpec {
  /** Clean absolute path under an allowlisted write prefix (checked again on the device). */
  destination: string;
  /** Octal file mode, e.g. "0644". */
  mode: string;
  reload?: ConfigReload;
}

export const CONFIG_SPEC_SCHEMA: JsonSchema = Object.freeze({
  $id: 'https://meshanics.dev/schemas/artifact-config/spec.json',
  type: 'object',
  additionalProperties: false,
  required: ['destination', 'mode'],
  properties: {
    destination: {
      type: 'string',
      maxLength: 4096,
      // Absolute; no "." or ".." segment, no empty segment, no trailing slash, no NUL.
      pattern: '^(/(?!\\.\\.?(/|$))[^/\\u0000]+)+$',
    },
    mode: { type: 'string', pattern: '^0?[0-7]{3}$' },
    reload: {
      oneOf: [
        { const: 'none' },
        {
          type: 'object',
          additionalProperties: false,
          required: ['systemdUnit'],
          properties: {
            systemdUnit: { type: 'string', pattern: '^[A-Za-z0-9:_.@-]{1,200}\\.(service|socket|target|timer|path)$' },
          },
        },
        {
          type: 'object',
          additionalProperties: false,
          required: ['exec'],
          properties: {
            exec: ABSOLUTE_ARGV_SCHEMA,
          },
        },
      ],
    },
  },
});
