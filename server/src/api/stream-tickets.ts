// Stream tickets: what the console puts in an EventSource URL instead of its API key.
// EventSource cannot set headers, and a URL is what proxies and access logs keep, so the key
// itself must never ride in one (issue 23). A ticket is minted with the key in the
// Authorization header (POST /api/v1/stream-tickets), opens event streams only, once, within
// a minute. It is an HMAC over (key id, purpose, expiry, nonce) with a secret kept in the
// shared data dir, so any replica can check a ticket another replica minted; "once" is
// remembered per process (a ticket could open at most one stream per replica, within its minute).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const STREAM_TICKET_PREFIX = 'mesh_st_';
export const DEFAULT_STREAM_TICKET_TTL_MS = 60_000;
const SECRET_BYTES = 32;
const SECRET_FILE = 'stream-tickets.key';
/** What the MAC covers besides the payload: a ticket of another kind or version never verifies. */
const PURPOSE = 'meshanics stream ticket v1: events';
const MAX_TICKET_LENGTH = 512;

interface Payload {
  /** The API key's id (never the key). */
  k: string;
  /** Expiry, ms since the epoch. */
  e: number;
  n: string;
}

/**
 * The ticket secret of a data dir, created on first use. Created beside the other PKI files;
 * a temp file linked into place, so two replicas starting at once agree on one secret.
 */
export function loadTicketSecret(pkiDir: string): Buffer {
  const file = path.join(pkiDir, SECRET_FILE);
  try {
    return checked(fs.readFileSync(file), file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, crypto.randomBytes(SECRET_BYTES), { mode: 0o600, flag: 'wx' });
  try {
    fs.linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return checked(fs.readFileSync(file), file);
}

function checked(secret: Buffer, file: string): Buffer {
  if (secret.length !== SECRET_BYTES) throw new Error(`${file} must hold ${SECRET_BYTES} bytes, found ${secret.length}`);
  return secret;
}

export class StreamTickets {
  readonly #secret: Buffer;
  readonly #ttlMs: number;
  /** Nonces already redeemed, with their expiry (in expiry order: the TTL is fixed). */
  readonly #used = new Map<string, number>();

  constructor(secret: Buffer, ttlMs = DEFAULT_STREAM_TICKET_TTL_MS) {
    this.#secret = secret;
    this.#ttlMs = ttlMs;
  }

  mint(keyId: string, now = Date.now()): { ticket: string; expiresAt: string } {
    const payload: Payload = { k: keyId, e: now + this.#ttlMs, n: crypto.randomBytes(16).toString('base64url') };
    const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
    return { ticket: `${STREAM_TICKET_PREFIX}${body}.${this.#mac(body)}`, expiresAt: new Date(payload.e).toISOString() };
  }

  /** The id of the key the ticket was minted for; undefined when forged, expired or already used. */
  redeem(ticket: string, now = Date.now()): string | undefined {
    for (const [nonce, expiry] of this.#used) {
      if (expiry > now) break;
      this.#used.delete(nonce);
    }
    if (!ticket.startsWith(STREAM_TICKET_PREFIX) || ticket.length > MAX_TICKET_LENGTH) return undefined;
    const [body, mac, ...rest] = ticket.slice(STREAM_TICKET_PREFIX.length).split('.');
    if (body === undefined || mac === undefined || rest.length > 0) return undefined;
    const expected = Buffer.from(this.#mac(body));
    const given = Buffer.from(mac);
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return undefined;
    const payload = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Payload;
    if (!(payload.e > now) || this.#used.has(payload.n)) return undefined;
    this.#used.set(payload.n, payload.e);
    return payload.k;
  }

  #mac(body: string): string {
    return crypto.createHmac('sha256', this.#secret).update(`${PURPOSE}\n${body}`).digest('base64url');
  }
}
