// The audit trail is hash-chained: each event carries the hash of the one before, over the
// canonical JSON of its own fields, so changing, removing or reordering any stored event
// breaks every hash after it. Verification needs only the events themselves.
import { createHash } from 'node:crypto';

export const GENESIS_HASH = '0'.repeat(64);

export interface AuditFields {
  seq: number;
  at: string;
  actor: string;
  action: string;
  subject: string;
  details: Record<string, unknown>;
}

export interface ChainedAuditEvent extends AuditFields {
  prevHash: string;
  hash: string;
}

/**
 * Canonical JSON of a JSON value: object keys sorted (UTF-16 code units), no whitespace,
 * strings and numbers exactly as JSON.stringify writes them (so fractions such as a failure
 * tolerance of 0.05 are fine, unlike TUF's integer-only dialect). Undefined members are left
 * out, as they are when the details are stored.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') return JSON.stringify(Number.isFinite(value) ? value : null);
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.keys(value as Record<string, unknown>)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  throw new TypeError(`cannot encode a ${typeof value} in an audit event`);
}

export function auditEventHash(prevHash: string, e: AuditFields): string {
  const body = canonicalJson({
    prev: prevHash,
    seq: e.seq,
    at: e.at,
    actor: e.actor,
    action: e.action,
    subject: e.subject,
    details: e.details,
  });
  return createHash('sha256').update(body).digest('hex');
}

export interface ChainVerification {
  count: number;
  verified: boolean;
  headHash: string;
  /** The first event whose stored hash or link does not match. */
  firstBrokenSeq?: number;
  problem?: string;
}

/** Streams over the events in order, checking every link; stops counting nothing. */
export class ChainVerifier {
  #count = 0;
  #prev = GENESIS_HASH;
  #expectedSeq = 1;
  #broken: { seq: number; problem: string } | undefined;

  add(e: ChainedAuditEvent): void {
    this.#count += 1;
    if (this.#broken) return;
    if (e.seq !== this.#expectedSeq) {
      this.#broken = { seq: e.seq, problem: `expected event ${this.#expectedSeq}, found ${e.seq} (an event was removed or reordered)` };
    } else if (e.prevHash !== this.#prev) {
      this.#broken = { seq: e.seq, problem: 'its previous-hash link does not match the event before it' };
    } else if (auditEventHash(e.prevHash, e) !== e.hash) {
      this.#broken = { seq: e.seq, problem: 'its contents do not match its hash (the event was changed)' };
    }
    this.#expectedSeq = e.seq + 1;
    this.#prev = e.hash;
  }

  result(): ChainVerification {
    return {
      count: this.#count,
      verified: !this.#broken,
      headHash: this.#prev,
      ...(this.#broken ? { firstBrokenSeq: this.#broken.seq, problem: this.#broken.problem } : {}),
    };
  }
}
