// Migration 11: a rollout's devices in plan order, a page at a time (GET /rollouts/:id/devices).
// Without it a page sorts every device of the rollout by position first: at 36,000 devices the
// whole detail was 0.8 s of the server's CPU and 9 MB of JSON (docs/benchmarks.md, "Rollout
// detail"). Positions are unique within a rollout (rollouts/wave-plan.ts), so the index says so.
const SQL = `CREATE UNIQUE INDEX rollout_devices_by_position ON rollout_devices (rollout_id, position);`;

export const MIGRATION_11_SQL = SQL;
export const POSTGRES_MIGRATION_11_SQL = SQL;
