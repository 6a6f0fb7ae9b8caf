// Side-effect-free: the server loads this module (`meshanics-server plugin-schema add
// dist/schema.js`) to validate rollouts of this kind exactly as devices do.
export const ARTIFACT_KIND = 'directory';

export interface DirectorySpec {
  /** How the TUF target (a tar archive) is compressed. */
  compression?: 'none' | 'gzip';
}

export const SPEC_SCHEMA = Object.freeze({
  $id: 'https://vendor.example/schemas/artifact-directory/spec.json',
  type: 'object',
  additionalProperties: false,
  properties: {
    compression: { enum: ['none', 'gzip'] },
  },
});
