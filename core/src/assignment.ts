import type { AssignmentMessage } from './contract/messages.js';

/** An assignment as the agent handles it, after its JSON fields have been parsed and validated. */
export interface Assignment {
  assignmentId: string;
  rolloutId: string;
  kind: string;
  name: string;
  version: string;
  targetPath: string;
  expectedSha256: string;
  expectedLength: number;
  /** The raw JSON texts, kept exactly as received so they can be persisted and re-validated. */
  specJson: string;
  probe: {
    type: string;
    specJson: string;
    timeoutSeconds: number;
    attempts: number;
    initialDelaySeconds: number;
  };
}

export function assignmentFromMessage(message: AssignmentMessage): Assignment {
  return {
    assignmentId: message.assignmentId,
    rolloutId: message.rolloutId,
    kind: message.kind,
    name: message.name,
    version: message.version,
    targetPath: message.targetPath,
    expectedSha256: message.expectedSha256.toLowerCase(),
    expectedLength: Number(message.expectedLength),
    specJson: message.specJson,
    probe: {
      type: message.probe?.type ?? '',
      specJson: message.probe?.specJson ?? '',
      timeoutSeconds: message.probe?.timeoutSeconds ?? 0,
      attempts: message.probe?.attempts ?? 0,
      initialDelaySeconds: message.probe?.initialDelaySeconds ?? 0,
    },
  };
}
