// Side-effect-free: the server stores this schema (`meshanics-server plugin-schema add
// dist/schema.js`) and validates every publish and rollout of the kind with it.
export const ARTIFACT_KIND = 'firmware-ab';

export interface FirmwareSpec {
  /** The image must start with these bytes (hex), e.g. the vendor's header magic. */
  magic: string;
}

export const SPEC_SCHEMA = Object.freeze({
  $id: 'https://vendor.example/schemas/firmware-ab/spec.json',
  type: 'object',
  additionalProperties: false,
  required: ['magic'],
  properties: { magic: { type: 'string', pattern: '^([0-9a-f]{2}){1,16}$' } },
});
