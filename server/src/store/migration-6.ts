// Migration 6: every committed change to what a device's heartbeat is answered from is
// announced by the database itself, so the server can answer unchanged heartbeats from memory
// (heartbeat-cache.ts) and still see every write: its own, another replica's, the CLI's, an
// operator's hand-written SQL. Triggers rather than calls in the store, because a write path
// added later (or made outside the server) cannot forget them.
//
// The answer is made of: the device row (less its liveness columns), the device's assignments,
// its rollout_devices rows (a revert is served even from a halted rollout), its log requests,
// the artifacts assignments point at, and the status of rollouts (a halted or aborted rollout
// serves no new assignment). A change names the device it concerns; NULL (SQLite) or '*'
// (PostgreSQL) means it may concern every device (artifacts, rollouts).

/**
 * The devices columns whose change never changes a heartbeat's answer: liveness, written by
 * every heartbeat batch, and the report sequence, written by every status report. Every other
 * column is watched (tests/device-state-triggers.test.ts fails when a new column is neither).
 */
export const DEVICE_COLUMNS_NOT_WATCHED = ['last_seen_at', 'last_report_seq'] as const;

/** The devices columns as of migration 6 that the SQLite trigger compares. */
export const DEVICE_COLUMNS_WATCHED = [
  'id',
  'spiffe_id',
  'fleet',
  'name',
  'hardware',
  'agent_version',
  'tags',
  'capabilities',
  'heartbeat_interval_seconds',
  'created_at',
  'registered_at',
  'decommissioned_at',
  'offboard_notified_at',
  'installed_digest',
] as const;

function perDeviceTriggers(table: string): string {
  return `
CREATE TRIGGER device_state_${table}_insert AFTER INSERT ON ${table}
BEGIN INSERT INTO device_state_changes (device_id) VALUES (NEW.device_id); END;
CREATE TRIGGER device_state_${table}_update AFTER UPDATE ON ${table}
BEGIN
  INSERT INTO device_state_changes (device_id) VALUES (OLD.device_id);
  INSERT INTO device_state_changes (device_id) SELECT NEW.device_id WHERE NEW.device_id IS NOT OLD.device_id;
END;
CREATE TRIGGER device_state_${table}_delete AFTER DELETE ON ${table}
BEGIN INSERT INTO device_state_changes (device_id) VALUES (OLD.device_id); END;
`;
}

/**
 * SQLite has no notifications: changes go to a log that the server polls with one indexed
 * read per heartbeat (store/state-feed-sqlite.ts). AUTOINCREMENT keeps `seq` increasing and
 * gap-free across rolled-back transactions, and writers are serialized, so `seq` order is
 * commit order: a reader that has seen seq n has seen every change up to n.
 */
export const MIGRATION_6_SQL = `
CREATE TABLE device_state_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id TEXT,
  at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TRIGGER device_state_devices_insert AFTER INSERT ON devices
BEGIN INSERT INTO device_state_changes (device_id) VALUES (NEW.id); END;
CREATE TRIGGER device_state_devices_update AFTER UPDATE ON devices
WHEN ${DEVICE_COLUMNS_WATCHED.map((c) => `NEW.${c} IS NOT OLD.${c}`).join(' OR ')}
BEGIN INSERT INTO device_state_changes (device_id) VALUES (OLD.id); END;
CREATE TRIGGER device_state_devices_delete AFTER DELETE ON devices
BEGIN INSERT INTO device_state_changes (device_id) VALUES (OLD.id); END;
${perDeviceTriggers('assignments')}${perDeviceTriggers('rollout_devices')}${perDeviceTriggers('log_requests')}
CREATE TRIGGER device_state_artifacts_update AFTER UPDATE ON artifacts
BEGIN INSERT INTO device_state_changes (device_id) VALUES (NULL); END;
CREATE TRIGGER device_state_artifacts_delete AFTER DELETE ON artifacts
BEGIN INSERT INTO device_state_changes (device_id) VALUES (NULL); END;
CREATE TRIGGER device_state_rollouts_update AFTER UPDATE OF status ON rollouts WHEN NEW.status IS NOT OLD.status
BEGIN INSERT INTO device_state_changes (device_id) VALUES (NULL); END;
CREATE TRIGGER device_state_rollouts_delete AFTER DELETE ON rollouts
BEGIN INSERT INTO device_state_changes (device_id) VALUES (NULL); END;
`;

/** The channel the PostgreSQL triggers notify (store/state-feed-postgres.ts listens). */
export const DEVICE_STATE_CHANNEL = 'meshanics_device_state';

/**
 * PostgreSQL delivers NOTIFY to every listening replica after the commit, in commit order,
 * and drops it with a rolled-back transaction. The devices trigger compares whole rows less
 * the unwatched columns, so a column added later is watched without touching this trigger.
 */
export const POSTGRES_MIGRATION_6_SQL = `
CREATE FUNCTION device_state_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_NARGS = 0 THEN
    PERFORM pg_notify('${DEVICE_STATE_CHANNEL}', '*');
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    PERFORM pg_notify('${DEVICE_STATE_CHANNEL}', to_jsonb(OLD) ->> TG_ARGV[0]);
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    PERFORM pg_notify('${DEVICE_STATE_CHANNEL}', to_jsonb(NEW) ->> TG_ARGV[0]);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER device_state_devices AFTER INSERT OR DELETE ON devices
  FOR EACH ROW EXECUTE FUNCTION device_state_notify('id');
CREATE TRIGGER device_state_devices_update AFTER UPDATE ON devices FOR EACH ROW
  WHEN ((to_jsonb(OLD) ${DEVICE_COLUMNS_NOT_WATCHED.map((c) => `- '${c}'`).join(' ')}) IS DISTINCT FROM (to_jsonb(NEW) ${DEVICE_COLUMNS_NOT_WATCHED.map((c) => `- '${c}'`).join(' ')}))
  EXECUTE FUNCTION device_state_notify('id');
CREATE TRIGGER device_state_assignments AFTER INSERT OR UPDATE OR DELETE ON assignments
  FOR EACH ROW EXECUTE FUNCTION device_state_notify('device_id');
CREATE TRIGGER device_state_rollout_devices AFTER INSERT OR UPDATE OR DELETE ON rollout_devices
  FOR EACH ROW EXECUTE FUNCTION device_state_notify('device_id');
CREATE TRIGGER device_state_log_requests AFTER INSERT OR UPDATE OR DELETE ON log_requests
  FOR EACH ROW EXECUTE FUNCTION device_state_notify('device_id');
CREATE TRIGGER device_state_artifacts AFTER UPDATE OR DELETE ON artifacts
  FOR EACH STATEMENT EXECUTE FUNCTION device_state_notify();
CREATE TRIGGER device_state_rollouts_status AFTER UPDATE OF status ON rollouts FOR EACH ROW
  WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION device_state_notify();
CREATE TRIGGER device_state_rollouts_delete AFTER DELETE ON rollouts
  FOR EACH STATEMENT EXECUTE FUNCTION device_state_notify();
`;
