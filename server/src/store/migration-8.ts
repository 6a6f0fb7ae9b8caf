// Migration 8: fleets as tenants of the artifact catalog (issue 23). Each artifact belongs to
// one fleet, or to every fleet (`*`); a key bound to a fleet sees and publishes only its own,
// and a device is assigned only artifacts of its fleet or of every fleet. Artifacts published
// before this migration were visible to every key and assignable to every device: they become
// `*` (every fleet), so nothing that worked stops working. `withdrawn_at` marks a version
// taken out of the signed targets (DELETE /api/v1/artifacts/{name}/{version}): the row stays,
// so assignments, rollouts and reports that name it keep their history, and the version can
// never be published again with other bytes.
const COLUMNS = (text: string): string => `
ALTER TABLE artifacts ADD COLUMN fleet ${text} NOT NULL DEFAULT '*';
ALTER TABLE artifacts ADD COLUMN withdrawn_at ${text};
CREATE INDEX artifacts_by_fleet ON artifacts (fleet, name);
`;

export const MIGRATION_8_SQL = COLUMNS('TEXT');
/** The "C" collation as every text column of the PostgreSQL schema (migrations-postgres.ts). */
export const POSTGRES_MIGRATION_8_SQL = COLUMNS('TEXT COLLATE "C"');
