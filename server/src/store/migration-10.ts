// Migration 10: what a rollout step needs to settle "nothing to do" without counting every
// device (rollouts/engine.ts, glanceSettles). During a wave a step runs about once a second per
// replica; counting the rollout's devices each time was 258 ms of PostgreSQL per step at
// 36,000 devices on two replicas (docs/benchmarks.md), most of the database's time.
//   - rollouts.targeted: the rollout's device count, fixed when it is created (rollout_devices
//     rows are never deleted). Backfilled here; NULL only for rows written by hand, which the
//     glance then counts.
//   - two partial indexes on the rollouts' assignments: the live unfinished ones (a wave is
//     complete when none of its devices has one) and the failed ones (the halt rule). Both are
//     a handful of entries in a healthy rollout, so "is any device still unfinished" and "how
//     many failed" are answered from a few index entries, not the whole rollout.
// The states are spelled out, not built from the contract: a migration that has shipped never
// changes. The glance's statement uses the same predicates (exported below: SQLite uses a
// partial index only when the query's WHERE contains the index's terms as written); the plan
// test (server/tests/rollout-glance.test.ts) fails if the glance stops using them.

/** An assignment of a rollout, still counting for its device and not finished. */
export const unfinishedRolloutAssignment = (t = ''): string => `${t}rollout_id IS NOT NULL AND ${t}active = 1 AND ${t}state NOT IN ('HEALTHY', 'FAILED', 'ROLLED_BACK')`;
/** An assignment of a rollout that failed or was rolled back (the halt rule's failures). */
export const failedRolloutAssignment = (t = ''): string => `${t}rollout_id IS NOT NULL AND ${t}state IN ('FAILED', 'ROLLED_BACK')`;

const SQL = `
ALTER TABLE rollouts ADD COLUMN targeted INTEGER;
UPDATE rollouts SET targeted = (SELECT COUNT(*) FROM rollout_devices rd WHERE rd.rollout_id = rollouts.id);
CREATE INDEX assignments_unfinished_by_rollout ON assignments (rollout_id) WHERE ${unfinishedRolloutAssignment()};
CREATE INDEX assignments_failed_by_rollout ON assignments (rollout_id) WHERE ${failedRolloutAssignment()};
`;

export const MIGRATION_10_SQL = SQL;
export const POSTGRES_MIGRATION_10_SQL = SQL;
