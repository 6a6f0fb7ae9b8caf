// The JSON Schema of your kind's spec. Keep this module free of side effects and of device
// code: the server loads it (`meshanics-server plugin-schema add`) to validate rollouts.
export const ARTIFACT_KIND = 'example';

export interface ExampleSpec {
  /** Name of the live file under <data-dir>/artifacts/example/<artifact name>/. */
  fileName: string;
}

export const SPEC_SCHEMA = Object.freeze({
  type: 'object',
  additionalProperties: false,
  required: ['fileName'],
  properties: { fileName: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' } },
});
