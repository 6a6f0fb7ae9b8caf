// The locks PostgreSQL write transactions take instead of one global lock, and their order.
// A transaction takes them in this order only (never an earlier kind after a later one), so
// two transactions can never wait for each other in a cycle:
//   1. the global write advisory lock (WRITE_LOCK_KEY), 'global' transactions only, first;
//   2. rollout rows: FOR UPDATE by a decision (rollout step, approve, resume, abort), FOR SHARE
//      by a status report batch for the rollouts its assignments belong to; several in id order;
//   3. device rows (FOR NO KEY UPDATE), several at once in id order, before the rows below;
//   4. other rows the statements write (assignments, installed, rollout_devices, ...), each
//      reached through a rollout or device locked above;
//   5. the audit chain's head (AUDIT_LOCK_KEY), taken just before COMMIT (sql-audit.ts through
//      Db.beforeCommit): its holder waits for nothing but its own INSERT and COMMIT.
// What needs which lock, and why, is tabled in docs/architecture.md ("Write locks on
// PostgreSQL"). SQLite has one writer (BEGIN IMMEDIATE): nothing here runs there.
import type { Db } from './db.js';

/**
 * Share-locks the rollouts of the assignments (id order), then locks the devices' rows (id
 * order), in one statement (PostgreSQL; nothing on SQLite): a status report batch's locks.
 */
export async function lockForReports(db: Db, reports: ReadonlyArray<{ deviceId: string; assignmentId: string }>): Promise<void> {
  if (db.dialect !== 'postgres' || reports.length === 0) return;
  const devices = [...new Set(reports.map((r) => r.deviceId))].sort();
  const assignments = [...new Set(reports.map((r) => r.assignmentId))];
  // One round trip for both, in order: the count of locked rollouts is an InitPlan, run before
  // the first device row is read, and every device row is read (into the sort) before the
  // first one is locked (LockRows sits above the Sort).
  await db.all(
    `WITH r AS MATERIALIZED (SELECT id FROM rollouts WHERE id IN (SELECT rollout_id FROM assignments WHERE id = ANY(CAST(? AS TEXT[]))) ORDER BY id FOR SHARE)
     SELECT id FROM devices WHERE id = ANY(CAST(? AS TEXT[])) AND (SELECT COUNT(*) FROM r) >= 0 ORDER BY id FOR NO KEY UPDATE`,
    [assignments, devices],
  );
}

/** Locks the devices' rows in id order (PostgreSQL; nothing on SQLite), for the rest of the transaction. */
export async function lockDevices(db: Db, deviceIds: Iterable<string>): Promise<void> {
  if (db.dialect !== 'postgres') return;
  const ids = [...new Set(deviceIds)].sort();
  if (ids.length === 0) return;
  // ORDER BY below FOR ...: rows are locked as the sort hands them out, so in id order.
  await db.all('SELECT id FROM devices WHERE id = ANY(CAST(? AS TEXT[])) ORDER BY id FOR NO KEY UPDATE', [ids]);
}
