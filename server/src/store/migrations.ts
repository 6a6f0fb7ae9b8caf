// Versioned schema migrations, applied in order and recorded in schema_migrations, with the
// same versions and names on SQLite and PostgreSQL. Never edit a migration that has shipped:
// append a new one. Timestamps are ISO 8601 UTC text, JSON columns are text, booleans are 0/1
// integers on both engines, so the store's statements are the same for both; the PostgreSQL
// scripts (migrations-postgres.ts) differ only in id generation (BIGSERIAL, and a `rowid`
// column where SQLite's implicit rowid breaks ordering ties), 64-bit integers and triggers.
import type { Db } from './db.js';
import { chainAuditEvents, MIGRATION_3_AUDIT_GUARDS, MIGRATION_3_SQL } from './migration-3.js';
import { MIGRATION_6_SQL, POSTGRES_MIGRATION_6_SQL } from './migration-6.js';
import { MIGRATION_7_SQL, POSTGRES_MIGRATION_7_SQL } from './migration-7.js';
import { MIGRATION_8_SQL, POSTGRES_MIGRATION_8_SQL } from './migration-8.js';
import { MIGRATION_9_SQL, POSTGRES_MIGRATION_9_SQL } from './migration-9.js';
import { MIGRATION_10_SQL, POSTGRES_MIGRATION_10_SQL } from './migration-10.js';
import { MIGRATION_11_SQL, POSTGRES_MIGRATION_11_SQL } from './migration-11.js';
import { POSTGRES_MIGRATION_SQL, POSTGRES_MIGRATION_3_AUDIT_GUARDS } from './migrations-postgres.js';

export interface Migration {
  version: number;
  name: string;
  /** The SQLite script. */
  sql: string;
  /** The PostgreSQL script of the same version. */
  postgresSql: string;
  /** A step SQL alone cannot do (hashing), run after the script in the same transaction. */
  up?: (db: Db) => Promise<void>;
}

// A digest of the device's installed set on its row, so a heartbeat that reports an unchanged
// set (almost all of them) compares it with the row it reads anyway instead of a second query.
// NULL means unknown (rows from before v5): the next heartbeat writes the set and its digest.
// A status report that changes an entry stores the new digest with it.
const INSTALLED_DIGEST_SQL = `ALTER TABLE devices ADD COLUMN installed_digest TEXT;`;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    postgresSql: POSTGRES_MIGRATION_SQL[1]!,
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
  {
    version: 2,
    name: 'device-lifecycle',
    postgresSql: POSTGRES_MIGRATION_SQL[2]!,
    sql: `
-- Set when a heartbeat told a decommissioned device it is offboarded: that one answer is the
-- only thing a decommissioned identity ever gets again.
ALTER TABLE devices ADD COLUMN offboard_notified_at TEXT;

CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  -- Only the hash: a copy of the database must not hand out working tokens.
  token_sha256 TEXT NOT NULL UNIQUE,
  fleet TEXT NOT NULL,
  device_name TEXT,
  uses_total INTEGER NOT NULL CHECK (uses_total >= 1),
  uses_left INTEGER NOT NULL CHECK (uses_left >= 0 AND uses_left <= uses_total),
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  revoked_at TEXT,
  revoked_by TEXT
);
CREATE INDEX enrollment_tokens_by_fleet ON enrollment_tokens (fleet, created_at);

-- Every certificate handed to a device: which key it binds, why and until when.
CREATE TABLE device_certificates (
  serial_number TEXT PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices (id),
  public_key_sha256 TEXT NOT NULL,
  not_before TEXT NOT NULL,
  not_after TEXT NOT NULL,
  issued_at TEXT NOT NULL,
  reason TEXT NOT NULL CHECK (reason IN ('enrollment', 'renewal', 'operator')),
  enrollment_token_id TEXT REFERENCES enrollment_tokens (id)
);
CREATE INDEX device_certificates_by_device ON device_certificates (device_id, issued_at);

CREATE TABLE log_requests (
  id TEXT PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices (id),
  since TEXT,
  until TEXT,
  max_bytes INTEGER NOT NULL CHECK (max_bytes >= 1),
  requested_at TEXT NOT NULL,
  requested_by TEXT NOT NULL,
  fulfilled_at TEXT,
  size_bytes INTEGER,
  sha256 TEXT
);
CREATE INDEX log_requests_by_device ON log_requests (device_id, requested_at);
`,
  },
  {
    version: 3,
    name: 'rollouts-and-audit-chain',
    sql: MIGRATION_3_SQL,
    postgresSql: POSTGRES_MIGRATION_SQL[3]!,
    // Chains the events written before this version, in order, then restores append-only.
    up: async (db) => {
      await chainAuditEvents(db);
      await db.exec(db.dialect === 'postgres' ? POSTGRES_MIGRATION_3_AUDIT_GUARDS : MIGRATION_3_AUDIT_GUARDS);
    },
  },
  {
    version: 4,
    name: 'operator-api',
    // Independent of version 3 (touches none of its tables), so either order of applying works.
    postgresSql: POSTGRES_MIGRATION_SQL[4]!,
    sql: `
-- Operator API keys: only the sha256 of a key is stored, so a copy of the database cannot call
-- the API. A name is unique among live keys (it is the actor the audit trail records).
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
  revoked_by TEXT
);
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;

-- The optional manifest an operator publishes with an artifact (also signed into its TUF target).
ALTER TABLE artifacts ADD COLUMN manifest TEXT;
CREATE INDEX artifacts_by_kind ON artifacts (kind, name);
`,
  },
  {
    version: 5,
    name: 'installed-digest',
    postgresSql: POSTGRES_MIGRATION_SQL[5]!,
    sql: INSTALLED_DIGEST_SQL,
  },
  {
    version: 6,
    name: 'device-state-changes',
    postgresSql: POSTGRES_MIGRATION_6_SQL,
    sql: MIGRATION_6_SQL,
  },
  {
    version: 7,
    name: 'device-state-narrow-triggers',
    postgresSql: POSTGRES_MIGRATION_7_SQL,
    sql: MIGRATION_7_SQL,
  },
  {
    version: 8,
    name: 'artifact-tenancy',
    postgresSql: POSTGRES_MIGRATION_8_SQL,
    sql: MIGRATION_8_SQL,
  },
  {
    version: 9,
    name: 'pending-trigger-rollout-share-lock',
    postgresSql: POSTGRES_MIGRATION_9_SQL,
    sql: MIGRATION_9_SQL,
  },
  {
    version: 10,
    name: 'rollout-glance',
    postgresSql: POSTGRES_MIGRATION_10_SQL,
    sql: MIGRATION_10_SQL,
  },
  {
    version: 11,
    name: 'rollout-devices-by-position',
    postgresSql: POSTGRES_MIGRATION_11_SQL,
    sql: MIGRATION_11_SQL,
  },
];
