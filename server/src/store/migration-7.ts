// Migration 7: migration 6 announced every write to a device's assignments and rollout_devices
// rows, but a heartbeat's answer reads few of their columns. During a wave every status report
// (downloading, verifying, installing...) rewrote its assignment's state and so dropped the
// device's kept answer, and the next heartbeat read it again unchanged: under a wave of 10,000
// devices most heartbeats went to the database (docs/benchmarks.md, results of 2026-12-04).
// Now an update is announced only when a column the answer is made of changes.
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
 * of it. Every other column is watched (tests/device-state-feed.test.ts fails when a new
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

const PENDING_CHANGED_SQLITE = `(NEW.state = 'PENDING') IS NOT (OLD.state = 'PENDING')`;

export const MIGRATION_7_SQL = `${sqliteUpdateTrigger('assignments', ASSIGNMENT_COLUMNS_WATCHED, PENDING_CHANGED_SQLITE)}${sqliteUpdateTrigger('rollout_devices', ROLLOUT_DEVICE_COLUMNS_WATCHED)}`;

/** The row as JSON less the columns nobody reads: a column added later is watched. */
const watchedJson = (row: 'OLD' | 'NEW', notWatched: readonly string[]) => `(to_jsonb(${row}) ${notWatched.map((c) => `- '${c}'`).join(' ')})`;

function postgresTriggers(table: string, notWatched: readonly string[], extra = ''): string {
  const changed = [`${watchedJson('OLD', notWatched)} IS DISTINCT FROM ${watchedJson('NEW', notWatched)}`, ...(extra ? [extra] : [])].join(' OR ');
  return `
DROP TRIGGER device_state_${table} ON ${table};
CREATE TRIGGER device_state_${table} AFTER INSERT OR DELETE ON ${table}
  FOR EACH ROW EXECUTE FUNCTION device_state_notify('device_id');
CREATE TRIGGER device_state_${table}_update AFTER UPDATE ON ${table} FOR EACH ROW
  WHEN (${changed})
  EXECUTE FUNCTION device_state_notify('device_id');
`;
}

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
${postgresTriggers('assignments', ASSIGNMENT_COLUMNS_NOT_WATCHED, `(OLD.state = 'PENDING') IS DISTINCT FROM (NEW.state = 'PENDING')`)}${postgresTriggers('rollout_devices', ROLLOUT_DEVICE_COLUMNS_NOT_WATCHED)}`;
