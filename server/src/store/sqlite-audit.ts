// The audit trail for SqliteStore: append-only (database triggers) and hash-chained. Each
// append reads the head and writes the next link under the write lock (BEGIN IMMEDIATE), so
// two writers, in one process or several, can never fork the chain.
import type Database from 'better-sqlite3';
import { auditEventHash, GENESIS_HASH } from '../audit/chain.js';
import { json, num, str, type Row } from './sqlite-rows.js';
import type { AuditEventRecord, AuditListFilter, NewAuditEvent } from './store.js';

function eventFromRow(r: Row): AuditEventRecord {
  return {
    id: num(r.id),
    seq: num(r.seq),
    at: str(r.at),
    actor: str(r.actor),
    action: str(r.action),
    subject: str(r.subject),
    details: json(r.details, {}),
    prevHash: str(r.prev_hash),
    hash: str(r.hash),
  };
}

const WHERE = `(@subject IS NULL OR subject = @subject) AND (@action IS NULL OR action = @action)
  AND (@afterSeq IS NULL OR seq > @afterSeq) AND (@uptoSeq IS NULL OR seq <= @uptoSeq)`;

export class SqliteAudit {
  constructor(
    private readonly db: Database.Database,
    private readonly withWriteLock: <T>(fn: () => T) => T,
  ) {}

  append(e: NewAuditEvent): AuditEventRecord {
    return this.withWriteLock(() => {
      const head = this.db.prepare('SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1').get() as Row | undefined;
      const seq = head ? num(head.seq) + 1 : 1;
      const prevHash = head ? str(head.hash) : GENESIS_HASH;
      // Hash exactly what is stored (and read back by a verifier): the JSON round trip drops
      // undefined members and turns dates into strings.
      const detailsText = JSON.stringify(e.details ?? {});
      const fields = {
        seq,
        at: e.at ?? new Date().toISOString(),
        actor: e.actor,
        action: e.action,
        subject: e.subject,
        details: JSON.parse(detailsText) as Record<string, unknown>,
      };
      const hash = auditEventHash(prevHash, fields);
      const info = this.db
        .prepare('INSERT INTO audit_events (at, actor, action, subject, details, seq, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(fields.at, fields.actor, fields.action, fields.subject, detailsText, seq, prevHash, hash);
      return { id: Number(info.lastInsertRowid), ...fields, prevHash, hash };
    });
  }

  list(filter: AuditListFilter = {}): AuditEventRecord[] {
    const order = filter.order === 'desc' ? 'DESC' : 'ASC';
    const rows = this.db
      .prepare(`SELECT * FROM audit_events WHERE ${WHERE} ORDER BY seq ${order} LIMIT @limit OFFSET @offset`)
      .all(this.params(filter)) as Row[];
    return rows.map(eventFromRow);
  }

  count(filter: AuditListFilter = {}): number {
    const row = this.db.prepare(`SELECT COUNT(*) AS n FROM audit_events WHERE ${WHERE}`).get(this.params(filter)) as Row;
    return num(row.n);
  }

  private params(filter: AuditListFilter): Record<string, unknown> {
    return {
      subject: filter.subject ?? null,
      action: filter.action ?? null,
      afterSeq: filter.afterSeq ?? null,
      uptoSeq: filter.uptoSeq ?? null,
      limit: filter.limit ?? 1000,
      offset: filter.offset ?? 0,
    };
  }
}
