// How the agent recognizes what it created: labels on every container it creates, and the
// names of the staging and backup containers beside the managed one. Nothing without these
// labels is ever touched.

/** Labels on every container the agent creates; nothing without them is ever touched. */
export const LABELS = Object.freeze({
  managed: 'dev.meshanics.managed',
  artifact: 'dev.meshanics.artifact',
  version: 'dev.meshanics.version',
  digest: 'dev.meshanics.digest',
  image: 'dev.meshanics.image',
  assignment: 'dev.meshanics.assignment',
});

/** Container names: the managed name is a DNS label (no dot), so these never collide with one. */
export const STAGING_SUFFIX = '.meshanics-staging';
export const BACKUP_SUFFIX = '.meshanics-previous';

export function isOurs(labels: Record<string, string> | undefined | null, artifact: string): boolean {
  return labels?.[LABELS.managed] === 'true' && labels?.[LABELS.artifact] === artifact;
}
