// The PostgreSQL scripts of migrations 1-4 (same versions and meaning as migrations.ts).
// Differences from the SQLite scripts, all mechanical:
// - integer ids are BIGSERIAL; counters and byte sizes are BIGINT (SQLite integers are 64-bit);
// - tables whose listings break timestamp ties by SQLite's implicit rowid get an explicit
//   `rowid BIGSERIAL` column, so the store's ORDER BY clauses are the same on both engines;
// - triggers call plpgsql functions (and TRUNCATE is refused too: it bypasses row triggers);
// - text columns use the "C" collation: bytewise comparison and ordering, as SQLite's default,
//   whatever locale the database was created with (listings sort the same on both engines).
// Never edit a shipped migration: append one to both lists.

const V1 = `
CREATE TABLE devices (
  id TEXT COLLATE "C" PRIMARY KEY,
  spiffe_id TEXT COLLATE "C" NOT NULL UNIQUE,
  fleet TEXT COLLATE "C" NOT NULL,
  name TEXT COLLATE "C" NOT NULL,
  hardware TEXT COLLATE "C",
  agent_version TEXT COLLATE "C",
  tags TEXT COLLATE "C" NOT NULL DEFAULT '{}',
  capabilities TEXT COLLATE "C" NOT NULL DEFAULT '[]',
  heartbeat_interval_seconds INTEGER,
  created_at TEXT COLLATE "C" NOT NULL,
  registered_at TEXT COLLATE "C",
  last_seen_at TEXT COLLATE "C",
  last_report_seq BIGINT NOT NULL DEFAULT 0,
  decommissioned_at TEXT COLLATE "C",
  rowid BIGSERIAL,
  UNIQUE (fleet, name)
);

CREATE TABLE artifacts (
  id TEXT COLLATE "C" PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  version TEXT COLLATE "C" NOT NULL,
  kind TEXT COLLATE "C" NOT NULL,
  file_name TEXT COLLATE "C" NOT NULL,
  target_path TEXT COLLATE "C" NOT NULL UNIQUE,
  sha256 TEXT COLLATE "C" NOT NULL,
  length BIGINT NOT NULL,
  spec TEXT COLLATE "C" NOT NULL DEFAULT '{}',
  created_at TEXT COLLATE "C" NOT NULL,
  rowid BIGSERIAL,
  UNIQUE (name, version)
);

CREATE TABLE assignments (
  id TEXT COLLATE "C" PRIMARY KEY,
  device_id TEXT COLLATE "C" NOT NULL REFERENCES devices (id),
  artifact_id TEXT COLLATE "C" NOT NULL REFERENCES artifacts (id),
  artifact_name TEXT COLLATE "C" NOT NULL,
  rollout_id TEXT COLLATE "C",
  probe TEXT COLLATE "C" NOT NULL,
  state TEXT COLLATE "C" NOT NULL,
  reason TEXT COLLATE "C" NOT NULL DEFAULT '',
  active INTEGER NOT NULL,
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C" NOT NULL,
  rowid BIGSERIAL
);
CREATE UNIQUE INDEX assignments_one_active_per_name ON assignments (device_id, artifact_name) WHERE active = 1;
CREATE INDEX assignments_by_device ON assignments (device_id, active);

CREATE TABLE status_reports (
  id BIGSERIAL PRIMARY KEY,
  device_id TEXT COLLATE "C" NOT NULL REFERENCES devices (id),
  assignment_id TEXT COLLATE "C" NOT NULL REFERENCES assignments (id),
  sequence BIGINT NOT NULL,
  state TEXT COLLATE "C" NOT NULL,
  reason TEXT COLLATE "C" NOT NULL DEFAULT '',
  bytes_done BIGINT NOT NULL DEFAULT 0,
  bytes_total BIGINT NOT NULL DEFAULT 0,
  device_time TEXT COLLATE "C" NOT NULL DEFAULT '',
  received_at TEXT COLLATE "C" NOT NULL,
  UNIQUE (device_id, sequence)
);
CREATE INDEX status_reports_by_assignment ON status_reports (assignment_id, sequence);

CREATE TABLE installed (
  device_id TEXT COLLATE "C" NOT NULL REFERENCES devices (id),
  name TEXT COLLATE "C" NOT NULL,
  kind TEXT COLLATE "C" NOT NULL,
  version TEXT COLLATE "C" NOT NULL,
  sha256 TEXT COLLATE "C" NOT NULL,
  state TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (device_id, name)
);

CREATE TABLE audit_events (
  id BIGSERIAL PRIMARY KEY,
  at TEXT COLLATE "C" NOT NULL,
  actor TEXT COLLATE "C" NOT NULL,
  action TEXT COLLATE "C" NOT NULL,
  subject TEXT COLLATE "C" NOT NULL,
  details TEXT COLLATE "C" NOT NULL DEFAULT '{}'
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
ALTER TABLE devices ADD COLUMN offboard_notified_at TEXT COLLATE "C";

CREATE TABLE enrollment_tokens (
  id TEXT COLLATE "C" PRIMARY KEY,
  token_sha256 TEXT COLLATE "C" NOT NULL UNIQUE,
  fleet TEXT COLLATE "C" NOT NULL,
  device_name TEXT COLLATE "C",
  uses_total INTEGER NOT NULL CHECK (uses_total >= 1),
  uses_left INTEGER NOT NULL CHECK (uses_left >= 0 AND uses_left <= uses_total),
  created_at TEXT COLLATE "C" NOT NULL,
  created_by TEXT COLLATE "C" NOT NULL,
  expires_at TEXT COLLATE "C" NOT NULL,
  revoked_at TEXT COLLATE "C",
  revoked_by TEXT COLLATE "C",
  rowid BIGSERIAL
);
CREATE INDEX enrollment_tokens_by_fleet ON enrollment_tokens (fleet, created_at);

CREATE TABLE device_certificates (
  serial_number TEXT COLLATE "C" PRIMARY KEY,
  device_id TEXT COLLATE "C" NOT NULL REFERENCES devices (id),
  public_key_sha256 TEXT COLLATE "C" NOT NULL,
  not_before TEXT COLLATE "C" NOT NULL,
  not_after TEXT COLLATE "C" NOT NULL,
  issued_at TEXT COLLATE "C" NOT NULL,
  reason TEXT COLLATE "C" NOT NULL CHECK (reason IN ('enrollment', 'renewal', 'operator')),
  enrollment_token_id TEXT COLLATE "C" REFERENCES enrollment_tokens (id),
  rowid BIGSERIAL
);
CREATE INDEX device_certificates_by_device ON device_certificates (device_id, issued_at);

CREATE TABLE log_requests (
  id TEXT COLLATE "C" PRIMARY KEY,
  device_id TEXT COLLATE "C" NOT NULL REFERENCES devices (id),
  since TEXT COLLATE "C",
  until TEXT COLLATE "C",
  max_bytes BIGINT NOT NULL CHECK (max_bytes >= 1),
  requested_at TEXT COLLATE "C" NOT NULL,
  requested_by TEXT COLLATE "C" NOT NULL,
  fulfilled_at TEXT COLLATE "C",
  size_bytes BIGINT,
  sha256 TEXT COLLATE "C",
  rowid BIGSERIAL
);
CREATE INDEX log_requests_by_device ON log_requests (device_id, requested_at);
`;

const V3 = `
CREATE TABLE device_groups (
  fleet TEXT COLLATE "C" NOT NULL,
  name TEXT COLLATE "C" NOT NULL,
  created_at TEXT COLLATE "C" NOT NULL,
  created_by TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (fleet, name)
);
CREATE TABLE device_group_members (
  fleet TEXT COLLATE "C" NOT NULL,
  group_name TEXT COLLATE "C" NOT NULL,
  device_name TEXT COLLATE "C" NOT NULL,
  position INTEGER NOT NULL,
  PRIMARY KEY (fleet, group_name, device_name),
  FOREIGN KEY (fleet, group_name) REFERENCES device_groups (fleet, name)
);

CREATE TABLE rollouts (
  id TEXT COLLATE "C" PRIMARY KEY,
  fleet TEXT COLLATE "C" NOT NULL,
  artifact_id TEXT COLLATE "C" NOT NULL REFERENCES artifacts (id),
  artifact_name TEXT COLLATE "C" NOT NULL,
  group_name TEXT COLLATE "C" NOT NULL,
  probe TEXT COLLATE "C" NOT NULL,
  strategy TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL CHECK (status IN ('running', 'waiting_approval', 'halted', 'completed', 'aborted')),
  current_wave INTEGER NOT NULL,
  acknowledged_failures INTEGER NOT NULL DEFAULT 0,
  halt TEXT COLLATE "C",
  abort_policy TEXT COLLATE "C" CHECK (abort_policy IN ('keep', 'revert')),
  created_by TEXT COLLATE "C" NOT NULL,
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C" NOT NULL,
  finished_at TEXT COLLATE "C",
  rowid BIGSERIAL
);
CREATE INDEX rollouts_by_fleet ON rollouts (fleet, created_at);
CREATE INDEX rollouts_by_status ON rollouts (status);

CREATE TABLE rollout_waves (
  rollout_id TEXT COLLATE "C" NOT NULL REFERENCES rollouts (id),
  wave INTEGER NOT NULL,
  started_at TEXT COLLATE "C" NOT NULL,
  started_by TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (rollout_id, wave)
);

CREATE TABLE rollout_devices (
  rollout_id TEXT COLLATE "C" NOT NULL REFERENCES rollouts (id),
  device_id TEXT COLLATE "C" NOT NULL REFERENCES devices (id),
  artifact_name TEXT COLLATE "C" NOT NULL,
  active INTEGER NOT NULL,
  wave INTEGER NOT NULL,
  position INTEGER NOT NULL,
  assignment_id TEXT COLLATE "C" REFERENCES assignments (id),
  assigned_at TEXT COLLATE "C",
  previous_version TEXT COLLATE "C",
  previous_artifact_id TEXT COLLATE "C" REFERENCES artifacts (id),
  revert_assignment_id TEXT COLLATE "C" REFERENCES assignments (id),
  revert_note TEXT COLLATE "C",
  reverted_at TEXT COLLATE "C",
  PRIMARY KEY (rollout_id, device_id)
);
CREATE UNIQUE INDEX rollout_devices_one_active_per_name ON rollout_devices (device_id, artifact_name) WHERE active = 1;
CREATE INDEX rollout_devices_by_revert ON rollout_devices (revert_assignment_id) WHERE revert_assignment_id IS NOT NULL;
CREATE INDEX assignments_by_rollout ON assignments (rollout_id) WHERE rollout_id IS NOT NULL;

DROP TRIGGER audit_events_no_update ON audit_events;
DROP TRIGGER audit_events_no_delete ON audit_events;
ALTER TABLE audit_events ADD COLUMN seq BIGINT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT COLLATE "C";
ALTER TABLE audit_events ADD COLUMN hash TEXT COLLATE "C";
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
  id TEXT COLLATE "C" PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  key_sha256 TEXT COLLATE "C" NOT NULL UNIQUE,
  fleet TEXT COLLATE "C" NOT NULL,
  permissions TEXT COLLATE "C" NOT NULL DEFAULT '[]',
  approve INTEGER NOT NULL DEFAULT 0 CHECK (approve IN (0, 1)),
  created_at TEXT COLLATE "C" NOT NULL,
  created_by TEXT COLLATE "C" NOT NULL,
  revoked_at TEXT COLLATE "C",
  revoked_by TEXT COLLATE "C",
  rowid BIGSERIAL
);
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;

ALTER TABLE artifacts ADD COLUMN manifest TEXT COLLATE "C";
CREATE INDEX artifacts_by_kind ON artifacts (kind, name);
`;

/** The same statement on both engines (see INSTALLED_DIGEST_SQL in migrations.ts). */
const V5 = `ALTER TABLE devices ADD COLUMN installed_digest TEXT;`;

export const POSTGRES_MIGRATION_SQL: Readonly<Record<number, string>> = { 1: V1, 2: V2, 3: V3, 4: V4, 5: V5 };
