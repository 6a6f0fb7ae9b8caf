// Versioned schema migrations, applied in order and recorded in schema_migrations.
// Never edit a migration that has shipped: append a new one. Timestamps are ISO 8601 UTC text,
// JSON columns are text, booleans are 0/1 integers, so the statements port to PostgreSQL
// (which gets its own list when it arrives: only id generation and triggers differ).

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    sql: `
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
  last_report_seq INTEGER NOT NULL DEFAULT 0,
  decommissioned_at TEXT,
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
  length INTEGER NOT NULL,
  spec TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  UNIQUE (name, version)
);

CREATE TABLE assignments (
  id TEXT PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices (id),
  artifact_id TEXT NOT NULL REFERENCES artifacts (id),
  -- Denormalized from artifacts.name so the database itself enforces one active
  -- assignment per artifact name per device (the partial unique index below).
  artifact_name TEXT NOT NULL,
  rollout_id TEXT,
  probe TEXT NOT NULL,
  state TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  active INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX assignments_one_active_per_name ON assignments (device_id, artifact_name) WHERE active = 1;
CREATE INDEX assignments_by_device ON assignments (device_id, active);

CREATE TABLE status_reports (
  id INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices (id),
  assignment_id TEXT NOT NULL REFERENCES assignments (id),
  sequence INTEGER NOT NULL,
  state TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  bytes_done INTEGER NOT NULL DEFAULT 0,
  bytes_total INTEGER NOT NULL DEFAULT 0,
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
  id INTEGER PRIMARY KEY,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  subject TEXT NOT NULL,
  details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_by_subject ON audit_events (subject, id);
-- The audit trail is append-only: the database refuses to rewrite history.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
`,
  },
];
