// Migration 7: migration 6 announced every write to a device's assignments and rollout_devices
// rows, but a heartbeat's answer reads few of their columns. During a wave every status report
// (downloading, verifying, installing...) rewrote its assignment's state and so dropped the
// device's kept answer, and the next heartbeat read it again unchanged: under a wave of 10,000
// devices most heartbeats went to the database (docs/benchmarks.md, results of 2026-12-04).
// Now an update is announced only when a column the answer is made of changes: an assignment's
// progress is not (leaving PENDING counts only while its rollout is halted), nor is a rollout's
// bookkeeping on rollout_devices (membership, waves, previous versions; a revert still is).
//
// On PostgreSQL the trigger function also records, for the transaction, which devices it
// announced ('*': every device). The server reads that before COMMIT and waits for its own
// fence (state-feed-postgres.ts) only for those devices, and sends no fence at all when the
// transaction announced nothing: heartbeats of other devices keep their kept answers while a
// report batch commits.
import { DEVICE_STATE_CHANNEL } from './migration-6.js';

/**
 * Assignment columns a heartbeat's answer does not read. `state` is read only as "PENDING or
 * not" (a pending assignment of a halted rollout is not served), so that is all that is watched
 * of it. Every other column is watched (server/tests/device-state-feed.test.ts fails when a new
 * column is neither).
 */
export const ASSIGNMENT_COLUMNS_NOT_WATCHED = ['state', 'reason', 'updated_at'] as const;
export const ASSIGNMENT_COLUMNS_WATCHED = ['id', 'device_id', 'artifact_id', 'artifact_name', 'rollout_id', 'probe', 'active', 'created_at'] as const;

/** rollout_devices columns a heartbeat's answer does not read: it reads only whether a revert points at an assignment. */
export const ROLLOUT_DEVICE_COLUMNS_NOT_WATCHED = [
  'active',
  'wave',
  'position',
  'assignment_id',
  'assigned_at',
  'previous_version',
  'previous_artifact_id',
  'revert_note',
  'reverted_at',
] as const;
export const ROLLOUT_DEVICE_COLUMNS_WATCHED = ['rollout_id', 'device_id', 'artifact_name', 'revert_assignment_id'] as const;

/** The transaction-local setting the PostgreSQL triggers record announced devices in. */
export const DEVICE_STATE_CHANGED_SETTING = 'meshanics.device_state_changed';
/** Past this many characters of device ids a transaction is taken to concern every device. */
const CHANGED_MAX_LENGTH = 8192;

function sqliteUpdateTrigger(table: string, watched: readonly string[], extra = ''): string {
  const changed = [...watched.map((c) => `NEW.${c} IS NOT OLD.${c}`), ...(extra ? [extra] : [])].join(' OR ');
  return `
DROP TRIGGER device_state_${table}_update;
CREATE TRIGGER device_state_${table}_update AFTER UPDATE ON ${table}
WHEN ${changed}
BEGIN
  INSERT INTO device_state_changes (device_id) VALUES (OLD.device_id);
  INSERT INTO device_state_changes (device_id) SELECT NEW.device_id WHERE NEW.device_id IS NOT OLD.device_id;
END;
`;
}

/**
 * Whether an assignment is still pending matters only while its rollout is halted or aborted
 * (such a rollout serves no pending assignment). A halt or an abort is itself announced as a
 * change of every device, and writers take turns, so the rollout's status read here is the one
 * the write commits against. (SQL typed by hand without the server's write lock could race a
 * halt; the cache's 10-minute re-read bounds what that could leave stale.)
 */
const PENDING_CHANGED_IN_HALTED_ROLLOUT = `((NEW.state = 'PENDING') IS NOT (OLD.state = 'PENDING')
  AND EXISTS (SELECT 1 FROM rollouts r WHERE r.id = NEW.rollout_id AND r.status IN ('halted', 'aborted')))`;

/** A rollout_devices row matters to an answer only once a revert points at an assignment. */
export const MIGRATION_7_SQL = `${sqliteUpdateTrigger('assignments', ASSIGNMENT_COLUMNS_WATCHED, PENDING_CHANGED_IN_HALTED_ROLLOUT)}${sqliteUpdateTrigger('rollout_devices', ROLLOUT_DEVICE_COLUMNS_WATCHED)}
DROP TRIGGER device_state_rollout_devices_insert;
CREATE TRIGGER device_state_rollout_devices_insert AFTER INSERT ON rollout_devices
WHEN NEW.revert_assignment_id IS NOT NULL
BEGIN INSERT INTO device_state_changes (device_id) VALUES (NEW.device_id); END;
`;

/** The row as JSON less the columns nobody reads: a column added later is watched. */
const watchedJson = (row: 'OLD' | 'NEW', notWatched: readonly string[]) => `(to_jsonb(${row}) ${notWatched.map((c) => `- '${c}'`).join(' ')})`;
const watchedChanged = (notWatched: readonly string[]) => `${watchedJson('OLD', notWatched)} IS DISTINCT FROM ${watchedJson('NEW', notWatched)}`;

export const POSTGRES_MIGRATION_7_SQL = `
CREATE OR REPLACE FUNCTION device_state_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ids text[] := '{}';
  id text;
  changed text := coalesce(current_setting('${DEVICE_STATE_CHANGED_SETTING}', true), '');
BEGIN
  IF TG_NARGS = 0 THEN
    PERFORM pg_notify('${DEVICE_STATE_CHANNEL}', '*');
    PERFORM set_config('${DEVICE_STATE_CHANGED_SETTING}', '*', true);
    RETURN NULL;
  END IF;
  -- An assignment leaving or re-entering PENDING: only while its rollout is halted or aborted
  -- (a trigger's WHEN cannot read another table).
  -- Nested: one expression's fields are all read up front, and other tables have no rollout_id.
  IF TG_NARGS > 1 AND TG_ARGV[1] = 'if-rollout-halted' THEN
    IF NOT EXISTS (SELECT 1 FROM rollouts r WHERE r.id = NEW.rollout_id AND r.status IN ('halted', 'aborted')) THEN
      RETURN NULL;
    END IF;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    ids := ids || (to_jsonb(OLD) ->> TG_ARGV[0]);
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    ids := ids || (to_jsonb(NEW) ->> TG_ARGV[0]);
  END IF;
  FOREACH id IN ARRAY ids LOOP
    PERFORM pg_notify('${DEVICE_STATE_CHANNEL}', id);
    -- ',a,b': a device once however often it changes; too many and it is every device.
    IF changed <> '*' AND strpos(changed || ',', ',' || id || ',') = 0 THEN
      changed := CASE WHEN length(changed) > ${CHANGED_MAX_LENGTH} THEN '*' ELSE changed || ',' || id END;
    END IF;
  END LOOP;
  PERFORM set_config('${DEVICE_STATE_CHANGED_SETTING}', changed, true);
  RETURN NULL;
END $$;

DROP TRIGGER device_state_assignments ON assignments;
CREATE TRIGGER device_state_assignments AFTER INSERT OR DELETE ON assignments
  FOR EACH ROW EXECUTE FUNCTION device_state_notify('device_id');
CREATE TRIGGER device_state_assignments_update AFTER UPDATE ON assignments FOR EACH ROW
  WHEN (${watchedChanged(ASSIGNMENT_COLUMNS_NOT_WATCHED)})
  EXECUTE FUNCTION device_state_notify('device_id');
CREATE TRIGGER device_state_assignments_pending AFTER UPDATE ON assignments FOR EACH ROW
  WHEN ((OLD.state = 'PENDING') IS DISTINCT FROM (NEW.state = 'PENDING') AND NEW.rollout_id IS NOT NULL
    AND NOT (${watchedChanged(ASSIGNMENT_COLUMNS_NOT_WATCHED)}))
  EXECUTE FUNCTION device_state_notify('device_id', 'if-rollout-halted');

DROP TRIGGER device_state_rollout_devices ON rollout_devices;
CREATE TRIGGER device_state_rollout_devices_insert AFTER INSERT ON rollout_devices FOR EACH ROW
  WHEN (NEW.revert_assignment_id IS NOT NULL)
  EXECUTE FUNCTION device_state_notify('device_id');
CREATE TRIGGER device_state_rollout_devices_delete AFTER DELETE ON rollout_devices
  FOR EACH ROW EXECUTE FUNCTION device_state_notify('device_id');
CREATE TRIGGER device_state_rollout_devices_update AFTER UPDATE ON rollout_devices FOR EACH ROW
  WHEN (${watchedChanged(ROLLOUT_DEVICE_COLUMNS_NOT_WATCHED)})
  EXECUTE FUNCTION device_state_notify('device_id');
`;
