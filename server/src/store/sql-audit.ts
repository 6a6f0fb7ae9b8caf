// The audit trail for SqlStore: append-only (database triggers) and hash-chained. Each append
// reads the head and writes the next link while holding the chain's lock, so two writers, in
// one process, several processes or several replicas, can never fork the chain. SQLite: the
// write transaction (BEGIN IMMEDIATE), at once. PostgreSQL: the audit advisory lock
// (AUDIT_LOCK_KEY), taken just before COMMIT (Db.beforeCommit) and so the last lock of any
// transaction (row-locks.ts): its holder waits for nothing else, which keeps transactions
// that lock rows (status reports) and ones that append mid-way (operator actions) from
// waiting for each other in a cycle, and keeps the chain's one serialized step short. Links
// are therefore in commit order; the records an append returns inside a transaction get
// their id, seq and hashes when it commits.
import { auditEventHash, GENESIS_HASH } from '../audit/chain.js';
import type { Db } from './db.js';
import { json, num, str, valueRows, type Row } from './sql-rows.js';
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

const WHERE = `(CAST(@subject AS TEXT) IS NULL OR subject = @subject) AND (CAST(@action AS TEXT) IS NULL OR action = @action)
  AND (CAST(@afterSeq AS BIGINT) IS NULL OR seq > @afterSeq) AND (CAST(@uptoSeq AS BIGINT) IS NULL OR seq <= @uptoSeq)`;

export class SqlAudit {
  constructor(
    private readonly db: Db,
    private readonly withWriteLock: <T>(fn: () => Promise<T>) => Promise<T>,
    /** Joins the caller's transaction without a savepoint (SqlStore.joiningWrite). */
    private readonly joiningWrite: <T>(fn: () => Promise<T>) => Promise<T>,
  ) {}

  append(e: NewAuditEvent): Promise<AuditEventRecord> {
    // Its own transaction, or a savepoint in the caller's: all or nothing whatever the caller does.
    return this.withWriteLock(() => this.appendMany([e])).then((records) => records[0]!);
  }

  /** The events as consecutive links of the chain: the head is read once, one INSERT for all. */
  appendMany(events: readonly NewAuditEvent[]): Promise<AuditEventRecord[]> {
    if (events.length === 0) return Promise.resolve([]);
    return this.joiningWrite(async () => {
      // Filled in once linked (PostgreSQL: at commit).
      const records: AuditEventRecord[] = events.map((e) => ({ id: 0, seq: 0, at: '', actor: e.actor, action: e.action, subject: e.subject, details: {}, prevHash: '', hash: '' }));
      const link = async (): Promise<void> => {
        const linked = await this.linkAndInsert(events);
        linked.forEach((r, i) => Object.assign(records[i]!, r));
      };
      if (!this.db.beforeCommit(link)) await link();
      return records;
    });
  }

  private async linkAndInsert(events: readonly NewAuditEvent[]): Promise<AuditEventRecord[]> {
    // PostgreSQL: the chain's lock, then the head read in a snapshot taken after the lock was
    // granted (migration 9's function: a plain SELECT after pg_advisory_xact_lock in one
    // statement would read the snapshot from before the wait and miss the previous link).
    const head = await this.db.get(
      this.db.dialect === 'postgres' ? 'SELECT seq, hash FROM audit_chain_head_locked()' : 'SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1',
    );
    let seq = head ? num(head.seq) : 0;
    let prevHash = head ? str(head.hash) : GENESIS_HASH;
    const links = events.map((e) => {
      // Hash exactly what is stored (and read back by a verifier): the JSON round trip drops
      // undefined members and turns dates into strings.
      const detailsText = JSON.stringify(e.details ?? {});
      const fields = {
        seq: ++seq,
        at: e.at ?? new Date().toISOString(),
        actor: e.actor,
        action: e.action,
        subject: e.subject,
        details: JSON.parse(detailsText) as Record<string, unknown>,
      };
      const link = { fields, detailsText, prevHash, hash: auditEventHash(prevHash, fields) };
      prevHash = link.hash;
      return link;
    });
    const inserted = await this.db.all(
      `INSERT INTO audit_events (at, actor, action, subject, details, seq, prev_hash, hash)
       VALUES ${valueRows(links.length, 8)} RETURNING id, seq`,
      links.flatMap((l) => [l.fields.at, l.fields.actor, l.fields.action, l.fields.subject, l.detailsText, l.fields.seq, l.prevHash, l.hash]),
    );
    const idBySeq = new Map(inserted.map((r) => [num(r.seq), num(r.id)]));
    return links.map((l) => ({ id: idBySeq.get(l.fields.seq)!, ...l.fields, prevHash: l.prevHash, hash: l.hash }));
  }

  async list(filter: AuditListFilter = {}): Promise<AuditEventRecord[]> {
    const order = filter.order === 'desc' ? 'DESC' : 'ASC';
    const rows = await this.db.all(`SELECT * FROM audit_events WHERE ${WHERE} ORDER BY seq ${order} LIMIT @limit OFFSET @offset`, this.params(filter));
    return rows.map(eventFromRow);
  }

  async count(filter: AuditListFilter = {}): Promise<number> {
    const { limit: _l, offset: _o, ...params } = this.params(filter);
    const row = await this.db.get(`SELECT COUNT(*) AS n FROM audit_events WHERE ${WHERE}`, params);
    return num(row!.n);
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
