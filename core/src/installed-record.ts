import type { Assignment } from './assignment.js';
import type { InstalledArtifactRecord } from './plugin.js';

/** What the agent records as installed when an assignment ends HEALTHY (the one before it kept as `previous`). */
export function installedRecordOf(assignment: Assignment, pluginState: Record<string, unknown>, previous: InstalledArtifactRecord | undefined): InstalledArtifactRecord {
  const record: InstalledArtifactRecord = {
    name: assignment.name,
    kind: assignment.kind,
    version: assignment.version,
    sha256: assignment.expectedSha256,
    assignmentId: assignment.assignmentId,
    specJson: assignment.specJson,
    installedAt: new Date().toISOString(),
    pluginState,
  };
  if (previous) {
    const { previous: _older, ...prev } = previous;
    record.previous = prev;
  }
  return record;
}
