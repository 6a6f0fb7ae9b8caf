// audit/ owns the hash-chained audit trail: the chain's hash and its verifier (chain.ts, pure; store/ imports it to
// append inside its write transaction, store/sql-audit.ts) and reading the trail back (this file: export, verify).
// May import: chain.ts nothing of the server; trail.ts types from store/ and config/.
//
// Reading the audit trail back: export as NDJSON while verifying the chain, or just verify.
// Events are read in pages (never one long-running statement), so an export streamed to a
// slow client does not keep the database connection busy.
import type { MeshanicsContext } from '../config/data-dir.js';
import type { AuditEventRecord } from '../store/index.js';
import { ChainVerifier, type ChainedAuditEvent, type ChainVerification } from './chain.js';

const PAGE = 500;

type AuditContext = Pick<MeshanicsContext, 'store'>;

/** An exported event: what the hash covers, and its links. */
export type ExportedAuditEvent = ChainedAuditEvent;

function exported(e: AuditEventRecord): ExportedAuditEvent {
  return { seq: e.seq, at: e.at, actor: e.actor, action: e.action, subject: e.subject, details: e.details, prevHash: e.prevHash, hash: e.hash };
}

/** Every event up to the head as it was when the walk started, oldest first. */
async function* walk(ctx: AuditContext): AsyncGenerator<ExportedAuditEvent> {
  const head = (await ctx.store.listAudit({ order: 'desc', limit: 1 }))[0]?.seq ?? 0;
  let after = 0;
  for (;;) {
    const page = await ctx.store.listAudit({ afterSeq: after, uptoSeq: head, limit: PAGE });
    if (page.length === 0) return;
    for (const e of page) yield exported(e);
    after = page.at(-1)!.seq;
  }
}

/**
 * The audit trail as NDJSON, oldest first: one string per line, each ending in "\n". Each
 * event line is `{seq, at, actor, action, subject, details, prevHash, hash}`; the chain is
 * verified along the way and the last line is `{"chain": {count, verified, headHash,
 * firstBrokenSeq?, problem?}}`.
 */
export async function* exportAudit(ctx: AuditContext): AsyncGenerator<string> {
  const verifier = new ChainVerifier();
  let n = 0;
  for await (const e of walk(ctx)) {
    verifier.add(e);
    yield JSON.stringify(e) + '\n';
    // Let other work (device calls) in between pages of a long export.
    if (++n % PAGE === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  yield JSON.stringify({ chain: verifier.result() }) + '\n';
}

/** Walks the whole chain: count, head hash, and the first event that does not match, if any. */
export async function verifyAudit(ctx: AuditContext): Promise<ChainVerification> {
  const verifier = new ChainVerifier();
  for await (const e of walk(ctx)) verifier.add(e);
  return verifier.result();
}
