// The PostgreSQL scripts of migrations 1-4 (same versions and meaning as migrations.ts).
// Differences from the SQLite scripts, all mechanical:
// - integer ids are BIGSERIAL; counters and byte sizes are BIGINT (SQLite integers are 64-bit);
// - tables whose listings break timestamp ties by SQLite's implicit rowid get an explicit
//   `rowid BIGSERIAL` column, so the store's ORDER BY clauses are the same on both engines;
// - triggers call plpgsql functions (and TRUNCATE is refused too: it bypasses row triggers).
// Never edit a shipped migration: append one to both lists.

const V1 = `
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  spiffe_id TEXT NOT NULL UNIQUE,
  fleet TEXT NOT NULL,
  name TEXT NOT NULL,
  hardware TEXT,
  agent_version TEXT,
  tags TEXT NOT NULL DEFAULT '{}',
  capabilities TEXT NOT NULL DEFAULT '[]',
  heartbeat_interval_seconds INTEGER,
  created_at TEXT NOT NULL,
  registered_at TEXT,
  last_seen_at TEXT,
  last_report_seq BIGINT NOT NULL DEFAULT 0,
  decommissioned_at TEXT,
  rowid BIGSERIAL,
  UNIQUE (fleet, name)
);

CREATE TABLE artifacts (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  kind TEXT NOT NULL,
  file_name TEXT NOT NULL,
  target_path TEXT NOT NULL UNIQUE,
  sha256 TEXT NOT NULL,
  length BIGINT NOT NULL,
  spec TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  rowid BIGSERIAL,
  UNIQUE (name, version)
);

CREATE TABLE assignments (
  id TEXT PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices (id),
  artifact_id TEXT NOT NULL REFERENCES artifacts (id),
  artifact_name TEXT NOT NULL,
  rollout_id TEXT,
  probe TEXT NOT NULL,
  state TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  active INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  rowid BIGSERIAL
);
CREATE UNIQUE INDEX assignments_one_active_per_name ON assignments (device_id, artifact_name) WHERE active = 1;
CREATE INDEX assignments_by_device ON assignments (device_id, active);

CREATE TABLE status_reports (
  id BIGSERIAL PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices (id),
  assignment_id TEXT NOT NULL REFERENCES assignments (id),
  sequence BIGINT NOT NULL,
  state TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  bytes_done BIGINT NOT NULL DEFAULT 0,
  bytes_total BIGINT NOT NULL DEFAULT 0,
  device_time TEXT NOT NULL DEFAULT '',
  received_at TEXT NOT NULL,
  UNIQUE (device_id, sequence)
);
CREATE INDEX status_reports_by_assignment ON status_reports (assignment_id, sequence);

CREATE TABLE installed (
  device_id TEXT NOT NULL REFERENCES devices (id),
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  version TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  state TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (device_id, name)
);

CREATE TABLE audit_events (
  id BIGSERIAL PRIMARY KEY,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  subject TEXT NOT NULL,
  details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_by_subject ON audit_events (subject, id);
-- The audit trail is append-only: the database refuses to rewrite history.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END $$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
`;

const V2 = `
ALTER TABLE devices ADD COLUMN offboard_notified_at TEXT;

CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  token_sha256 TEXT NOT NULL UNIQUE,
  fleet TEXT NOT NULL,
  device_name TEXT,
  uses_total INTEGER NOT NULL CHECK (uses_total >= 1),
  uses_left INTEGER NOT NULL CHECK (uses_left >= 0 AND uses_left <= uses_total),
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  revoked_at TEXT,
  revoked_by TEXT,
  rowid BIGSERIAL
);
CREATE INDEX enrollment_tokens_by_fleet ON enrollment_tokens (fleet, created_at);

CREATE TABLE device_certificates (
  serial_number TEXT PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices (id),
  public_key_sha256 TEXT NOT NULL,
  not_before TEXT NOT NULL,
  not_after TEXT NOT NULL,
  issued_at TEXT NOT NULL,
  reason TEXT NOT NULL CHECK (reason IN ('enrollment', 'renewal', 'operator')),
  enrollment_token_id TEXT REFERENCES enrollment_tokens (id),
  rowid BIGSERIAL
);
CREATE INDEX device_certificates_by_device ON device_certificates (device_id, issued_at);

CREATE TABLE log_requests (
  id TEXT PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices (id),
  since TEXT,
  until TEXT,
  max_bytes BIGINT NOT NULL CHECK (max_bytes >= 1),
  requested_at TEXT NOT NULL,
  requested_by TEXT NOT NULL,
  fulfilled_at TEXT,
  size_bytes BIGINT,
  sha256 TEXT,
  rowid BIGSERIAL
);
CREATE INDEX log_requests_by_device ON log_requests (device_id, requested_at);
`;

const V3 = `
CREATE TABLE device_groups (
  fleet TEXT NOT NULL,
  name TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (fleet, name)
);
CREATE TABLE device_group_members (
  fleet TEXT NOT NULL,
  group_name TEXT NOT NULL,
  device_name TEXT NOT NULL,
  position INTEGER NOT NULL,
  PRIMARY KEY (fleet, group_name, device_name),
  FOREIGN KEY (fleet, group_name) REFERENCES device_groups (fleet, name)
);

CREATE TABLE rollouts (
  id TEXT PRIMARY KEY,
  fleet TEXT NOT NULL,
  artifact_id TEXT NOT NULL REFERENCES artifacts (id),
  artifact_name TEXT NOT NULL,
  group_name TEXT NOT NULL,
  probe TEXT NOT NULL,
  strategy TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'waiting_approval', 'halted', 'completed', 'aborted')),
  current_wave INTEGER NOT NULL,
  acknowledged_failures INTEGER NOT NULL DEFAULT 0,
  halt TEXT,
  abort_policy TEXT CHECK (abort_policy IN ('keep', 'revert')),
  created_by TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  finished_at TEXT,
  rowid BIGSERIAL
);
CREATE INDEX rollouts_by_fleet ON rollouts (fleet, created_at);
CREATE INDEX rollouts_by_status ON rollouts (status);

CREATE TABLE rollout_waves (
  rollout_id TEXT NOT NULL REFERENCES rollouts (id),
  wave INTEGER NOT NULL,
  started_at TEXT NOT NULL,
  started_by TEXT NOT NULL,
  PRIMARY KEY (rollout_id, wave)
);

CREATE TABLE rollout_devices (
  rollout_id TEXT NOT NULL REFERENCES rollouts (id),
  device_id TEXT NOT NULL REFERENCES devices (id),
  artifact_name TEXT NOT NULL,
  active INTEGER NOT NULL,
  wave INTEGER NOT NULL,
  position INTEGER NOT NULL,
  assignment_id TEXT REFERENCES assignments (id),
  assigned_at TEXT,
  previous_version TEXT,
  previous_artifact_id TEXT REFERENCES artifacts (id),
  revert_assignment_id TEXT REFERENCES assignments (id),
  revert_note TEXT,
  reverted_at TEXT,
  PRIMARY KEY (rollout_id, device_id)
);
CREATE UNIQUE INDEX rollout_devices_one_active_per_name ON rollout_devices (device_id, artifact_name) WHERE active = 1;
CREATE INDEX rollout_devices_by_revert ON rollout_devices (revert_assignment_id) WHERE revert_assignment_id IS NOT NULL;
CREATE INDEX assignments_by_rollout ON assignments (rollout_id) WHERE rollout_id IS NOT NULL;

DROP TRIGGER audit_events_no_update ON audit_events;
DROP TRIGGER audit_events_no_delete ON audit_events;
ALTER TABLE audit_events ADD COLUMN seq BIGINT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
`;

export const POSTGRES_MIGRATION_3_AUDIT_GUARDS = `
CREATE UNIQUE INDEX audit_events_by_seq ON audit_events (seq);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE FUNCTION audit_events_require_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.seq IS NULL OR NEW.prev_hash IS NULL OR NEW.hash IS NULL THEN
    RAISE EXCEPTION 'audit events are appended with their seq, prev_hash and hash';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_events_chained BEFORE INSERT ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_require_chain();
`;

const V4 = `
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  key_sha256 TEXT NOT NULL UNIQUE,
  fleet TEXT NOT NULL,
  permissions TEXT NOT NULL DEFAULT '[]',
  approve INTEGER NOT NULL DEFAULT 0 CHECK (approve IN (0, 1)),
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  revoked_at TEXT,
  revoked_by TEXT,
  rowid BIGSERIAL
);
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;

ALTER TABLE artifacts ADD COLUMN manifest TEXT;
CREATE INDEX artifacts_by_kind ON artifacts (kind, name);
`;

export const POSTGRES_MIGRATION_SQL: Readonly<Record<number, string>> = { 1: V1, 2: V2, 3: V3, 4: V4 };
