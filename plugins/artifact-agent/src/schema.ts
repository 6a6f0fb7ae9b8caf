// Side-effect-free: the server imports this to validate agent specs exactly as devices do.
import type { JsonSchema } from '@meshanics/core/contract';

export const ARTIFACT_KIND = 'agent';

/** Architectures an agent package is built for (Node's `process.arch` names, as devices report them). */
export const AGENT_ARCHITECTURES = ['x64', 'arm64'] as const;
export type AgentArchitecture = (typeof AGENT_ARCHITECTURES)[number];

/** Seconds the new agent has to register and heartbeat when the spec does not say. */
export const DEFAULT_HEALTH_DEADLINE_SECONDS = 60;

export interface AgentSpec {
  /** The package's architecture; must be the device's (checked by the server and the device). */
  architecture: AgentArchitecture;
  /** Seconds from the hand-over until the new agent must have registered and heartbeated. */
  healthDeadlineSeconds?: number;
  /** An older version than the running one is refused unless this says so. */
  allowDowngrade?: boolean;
}

export const AGENT_SPEC_SCHEMA: JsonSchema = Object.freeze({
  $id: 'https://meshanics.dev/schemas/artifact-agent/spec.json',
  type: 'object',
  additionalProperties: false,
  required: ['architecture'],
  properties: {
    architecture: { enum: [...AGENT_ARCHITECTURES] },
    healthDeadlineSeconds: { type: 'integer', minimum: 1, maximum: 3600, default: DEFAULT_HEALTH_DEADLINE_SECONDS },
    allowDowngrade: { type: 'boolean' },
  },
});
