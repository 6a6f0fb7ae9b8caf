// Migration 9: the database itself orders an assignment leaving PENDING against a halt or an
// abort of its rollout. Migration 7 announces such a change only while the rollout is halted
// or aborted, reading the rollout's status without a lock: a writer that did not share-lock
// the rollout (SQL typed by hand, or any writer now that PostgreSQL writes take no global
// lock) could read "running" while a halt commits, announce nothing, and commit after the
// halt's change-of-every-device notice had been handled: heartbeat caches kept "not served"
// for an assignment that had left PENDING (until their 10-minute re-read).
//
// Now the trigger reads the status FOR SHARE: it waits for a halt or abort in flight (they
// update the row) and then reads the status committed, and a halt or abort waits for every
// transaction that has read it so, so its own notice comes after their commits. The server's
// status reports already share-lock their rollouts first (store/row-locks.ts), so for them
// the trigger's lock is one they hold; hand-typed SQL that locks the assignment row first and
// the rollout second may deadlock with an abort, which PostgreSQL detects and undoes (one of
// the two fails), never a stale answer. SQLite has one writer at a time: nothing to change.
//
// Also (PostgreSQL): audit_chain_head_locked(), the audit chain's lock and head in one round
// trip (store/sql-audit.ts), taken by every transaction that appends, just before COMMIT.
import { AUDIT_LOCK_KEY, LOCK_NAMESPACE } from './db-postgres.js';
import { DEVICE_STATE_CHANNEL } from './migration-6.js';
import { DEVICE_STATE_CHANGED_SETTING } from './migration-7.js';

/** Same length bound as migration 7 (a transaction's announced devices). */
const CHANGED_MAX_LENGTH = 8192;

export const MIGRATION_9_SQL = `-- SQLite: one writer at a time, the status read by migration 7's trigger is the one committed against.
`;

export const POSTGRES_MIGRATION_9_SQL = `
CREATE FUNCTION audit_chain_head_locked() RETURNS TABLE (seq BIGINT, hash TEXT) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${AUDIT_LOCK_KEY});
  -- A statement of its own in a volatile function: a snapshot taken after the lock was
  -- granted (READ COMMITTED), so it sees the previous holder's commit.
  RETURN QUERY SELECT e.seq, e.hash::text FROM audit_events e ORDER BY e.seq DESC LIMIT 1;
END $$;

CREATE OR REPLACE FUNCTION device_state_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ids text[] := '{}';
  id text;
  changed text := coalesce(current_setting('${DEVICE_STATE_CHANGED_SETTING}', true), '');
  rollout_status text;
BEGIN
  IF TG_NARGS = 0 THEN
    PERFORM pg_notify('${DEVICE_STATE_CHANNEL}', '*');
    PERFORM set_config('${DEVICE_STATE_CHANGED_SETTING}', '*', true);
    RETURN NULL;
  END IF;
  -- An assignment leaving or re-entering PENDING: only while its rollout is halted or aborted.
  -- FOR SHARE (migration 9): waits for a halt or abort in flight and reads what it committed;
  -- a halt or abort after this waits for this transaction to end.
  IF TG_NARGS > 1 AND TG_ARGV[1] = 'if-rollout-halted' THEN
    SELECT r.status INTO rollout_status FROM rollouts r WHERE r.id = NEW.rollout_id FOR SHARE;
    IF rollout_status IS NULL OR rollout_status NOT IN ('halted', 'aborted') THEN
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
`;
