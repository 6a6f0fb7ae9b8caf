// Migration 10: what a rollout step needs to settle "nothing to do" without counting every
// device (rollouts/engine.ts, glanceSettles). During a wave a step runs about once a second per
// replica; counting the rollout's devices each time was 258 ms of PostgreSQL per step at
// 36,000 devices on two replicas (docs/benchmarks.md), most of the database's time.
//   - rollouts.targeted: the rollout's device count, fixed when it is created (rollout_devices
//     rows are never deleted). Backfilled here; NULL for rows written by hand, or by a replica
//     still on the previous version during a rolling upgrade: the glance then counts.
//   - two partial indexes on the rollouts' assignments: the live unfinished ones (a wave is
//     complete when none of its devices has one) and the failed ones (the halt rule). "Is any
//     device still unfinished" stops at the first live entry, and "how many failed" reads only
//     the failures, whatever the rollout's size.
// The states are spelled out, not built from the contract: a migration that has shipped never
// changes. The glance's statement uses the same predicates (exported below: SQLite uses a
// partial index only when the query's WHERE contains the index's terms as written); the plan
// test (server/tests/rollout-glance.test.ts) fails if the glance stops using them, and the
// glance turns itself off if the contract's terminal states ever differ from these
// (MIGRATION_10_TERMINAL_STATES).

/** The terminal states as this migration wrote them into its index predicates. */
export const MIGRATION_10_TERMINAL_STATES: readonly string[] = ['HEALTHY', 'FAILED', 'ROLLED_BACK'];
const TERMINAL_LIST = MIGRATION_10_TERMINAL_STATES.map((s) => `'${s}'`).join(', ');

/** An assignment of a rollout, still counting for its device and not finished. */
export const unfinishedRolloutAssignment = (t = ''): string => `${t}rollout_id IS NOT NULL AND ${t}active = 1 AND ${t}state NOT IN (${TERMINAL_LIST})`;
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
