// Migration 3: static groups, rollouts with their stored wave split, and the hash chain of
// the audit trail. Kept in its own file so the migration list stays readable.
import { auditEventHash, GENESIS_HASH } from '../audit/chain.js';
import type { Db } from './db.js';

export const MIGRATION_3_SQL = `
-- Static groups: the device names as the operator gave them, in order. They are resolved
-- when read or used, so a name that does not resolve is kept and reported, never dropped.
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
  -- The highest wave whose assignments have been made.
  current_wave INTEGER NOT NULL,
  -- Failures a resume acknowledged: only newer ones can halt the rollout again.
  acknowledged_failures INTEGER NOT NULL DEFAULT 0,
  halt TEXT,
  abort_policy TEXT CHECK (abort_policy IN ('keep', 'revert')),
  created_by TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  finished_at TEXT
);
CREATE INDEX rollouts_by_fleet ON rollouts (fleet, created_at);
CREATE INDEX rollouts_by_status ON rollouts (status);

-- When each wave started and who started it (the creator for wave 0 and auto waves'
-- "rollout-engine", the approver for a manual one).
CREATE TABLE rollout_waves (
  rollout_id TEXT NOT NULL REFERENCES rollouts (id),
  wave INTEGER NOT NULL,
  started_at TEXT NOT NULL,
  started_by TEXT NOT NULL,
  PRIMARY KEY (rollout_id, wave)
);

-- The split into waves, computed once at creation in a stable order.
CREATE TABLE rollout_devices (
  rollout_id TEXT NOT NULL REFERENCES rollouts (id),
  device_id TEXT NOT NULL REFERENCES devices (id),
  -- Denormalized so the database itself keeps a device in at most one active rollout per
  -- artifact name (the partial unique index below); cleared when the rollout ends.
  artifact_name TEXT NOT NULL,
  active INTEGER NOT NULL,
  wave INTEGER NOT NULL,
  position INTEGER NOT NULL,
  -- Set when the device's wave starts.
  assignment_id TEXT REFERENCES assignments (id),
  assigned_at TEXT,
  -- What the device had installed under this artifact name when its wave started.
  previous_version TEXT,
  previous_artifact_id TEXT REFERENCES artifacts (id),
  -- Abort with policy revert.
  revert_assignment_id TEXT REFERENCES assignments (id),
  revert_note TEXT,
  reverted_at TEXT,
  PRIMARY KEY (rollout_id, device_id)
);
CREATE UNIQUE INDEX rollout_devices_one_active_per_name ON rollout_devices (device_id, artifact_name) WHERE active = 1;
CREATE INDEX rollout_devices_by_revert ON rollout_devices (revert_assignment_id) WHERE revert_assignment_id IS NOT NULL;
CREATE INDEX assignments_by_rollout ON assignments (rollout_id) WHERE rollout_id IS NOT NULL;

-- The audit trail becomes a hash chain. The append-only triggers are dropped only while
-- the events already stored are chained (in this same transaction), then recreated.
DROP TRIGGER audit_events_no_update;
DROP TRIGGER audit_events_no_delete;
ALTER TABLE audit_events ADD COLUMN seq INTEGER;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
`;

export const MIGRATION_3_AUDIT_GUARDS = `
CREATE UNIQUE INDEX audit_events_by_seq ON audit_events (seq);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
-- Every new event must carry its place in the chain.
CREATE TRIGGER audit_events_chained BEFORE INSERT ON audit_events
  WHEN NEW.seq IS NULL OR NEW.prev_hash IS NULL OR NEW.hash IS NULL
  BEGIN SELECT RAISE(ABORT, 'audit events are appended with their seq, prev_hash and hash'); END;
`;

interface LegacyEventRow {
  id: number;
  at: string;
  actor: string;
  action: string;
  subject: string;
  details: string;
}

/** Gives every event stored before migration 3 its seq, prev_hash and hash, in id order. */
export async function chainAuditEvents(db: Db): Promise<void> {
  const rows = (await db.all('SELECT id, at, actor, action, subject, details FROM audit_events ORDER BY id')) as unknown as LegacyEventRow[];
  let prev = GENESIS_HASH;
  for (const [i, r] of rows.entries()) {
    const seq = i + 1;
    const details = (r.details ? JSON.parse(r.details) : {}) as Record<string, unknown>;
    const hash = auditEventHash(prev, { seq, at: r.at, actor: r.actor, action: r.action, subject: r.subject, details });
    await db.run('UPDATE audit_events SET seq = ?, prev_hash = ?, hash = ? WHERE id = ?', [seq, prev, hash, r.id]);
    prev = hash;
  }
}
