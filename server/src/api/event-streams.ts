// Every open server-sent event stream of the REST API, by the API key that opened it (issue 23):
// a key holds at most `maxPerKey` of them (429 past that), each ends after `maxLifetimeMs`
// (clients reconnect; the console does so with a fresh ticket), and a revoked key's streams
// end within `revocationCheckMs` plus one database read. Revocation is noticed by re-reading
// the keys from the database, not by an in-process signal: `apikey revoke` runs in another
// process, and on PostgreSQL any replica may have done it.
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import { DEFAULT_API_MAX_STREAMS_PER_KEY, DEFAULT_API_STREAM_LIFETIME_SECONDS } from '../config/defaults.js';
import { MeshError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import type { ApiKeyStore } from '../store/index.js';

export interface EventStreamLimits {
  /** Open streams one API key may hold on this server process (default 10). */
  maxPerKey: number;
  /** A stream ends after this long (default 15 minutes); clients reconnect. */
  maxLifetimeMs: number;
  /** How often the keys of open streams are re-read for revocation (default 250 ms: within a second even after a slow read). */
  revocationCheckMs: number;
}

export const DEFAULT_EVENT_STREAM_LIMITS: EventStreamLimits = {
  maxPerKey: DEFAULT_API_MAX_STREAMS_PER_KEY,
  maxLifetimeMs: DEFAULT_API_STREAM_LIFETIME_SECONDS * 1000,
  revocationCheckMs: 250,
};

/** What EventSource waits before reconnecting a dropped stream. */
const RETRY_MS = 2000;

interface OpenStream {
  keyId: string;
  res: ServerResponse;
  lifetime: NodeJS.Timeout;
}

export class EventStreams {
  readonly #byKey = new Map<string, Set<OpenStream>>();
  readonly #limits: EventStreamLimits;
  #checkTimer: NodeJS.Timeout | undefined;
  #checking = false;

  constructor(
    private readonly keys: Pick<ApiKeyStore, 'get'>,
    private readonly logger: Logger,
    limits: Partial<EventStreamLimits> = {},
  ) {
    this.#limits = { ...DEFAULT_EVENT_STREAM_LIMITS, ...limits };
  }

  /** Open streams of one key (all keys when absent). */
  count(keyId?: string): number {
    if (keyId !== undefined) return this.#byKey.get(keyId)?.size ?? 0;
    let n = 0;
    for (const set of this.#byKey.values()) n += set.size;
    return n;
  }

  /**
   * Takes over the reply as a text/event-stream for `keyId`, or throws (429) when the key
   * already holds its share. Synchronous from the check to the registration, so two requests
   * racing for the last slot cannot both get it.
   */
  open(keyId: string, reply: FastifyReply, headers: Record<string, string> = {}): ServerResponse {
    const held = this.#byKey.get(keyId)?.size ?? 0;
    if (held >= this.#limits.maxPerKey) {
      throw new MeshError('MESH_ERR_API_TOO_MANY_STREAMS', `this API key already has ${held} open event streams (at most ${this.#limits.maxPerKey}); close one first`);
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(`retry: ${RETRY_MS}\n\n`);
    const stream: OpenStream = {
      keyId,
      res,
      lifetime: setTimeout(() => this.#end(stream, 'reconnect', { reason: 'the stream reached its maximum lifetime; reconnect' }), this.#limits.maxLifetimeMs),
    };
    let set = this.#byKey.get(keyId);
    if (!set) this.#byKey.set(keyId, (set = new Set()));
    set.add(stream);
    res.on('close', () => this.#forget(stream));
    this.#startChecking();
    return res;
  }

  /** Ends every stream (server shutdown). */
  closeAll(): void {
    for (const set of [...this.#byKey.values()]) for (const s of [...set]) this.#end(s);
  }

  #end(stream: OpenStream, event?: string, data?: unknown): void {
    if (!stream.res.writableEnded) stream.res.end(event ? `event: ${event}\ndata: ${JSON.stringify(data ?? {})}\n\n` : undefined);
    this.#forget(stream);
  }

  #forget(stream: OpenStream): void {
    clearTimeout(stream.lifetime);
    const set = this.#byKey.get(stream.keyId);
    if (!set?.delete(stream)) return;
    if (set.size === 0) this.#byKey.delete(stream.keyId);
    if (this.#byKey.size === 0 && this.#checkTimer) {
      clearInterval(this.#checkTimer);
      this.#checkTimer = undefined;
    }
  }

  #startChecking(): void {
    if (this.#checkTimer) return;
    this.#checkTimer = setInterval(() => void this.#checkRevocations(), this.#limits.revocationCheckMs);
    this.#checkTimer.unref();
  }

  async #checkRevocations(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      for (const keyId of [...this.#byKey.keys()]) {
        const key = await this.keys.get(keyId);
        if (key && key.revokedAt === null) continue;
        const set = this.#byKey.get(keyId);
        if (!set) continue;
        this.logger.info({ apiKeyId: keyId, streams: set.size }, 'API key revoked: closing its event streams');
        for (const s of [...set]) this.#end(s, 'revoked', { error: 'the API key was revoked' });
      }
    } catch (err) {
      // The database is away: streams stay as they are; the next check tries again.
      this.logger.warn({ err }, 'cannot check the keys of open event streams');
    } finally {
      this.#checking = false;
    }
  }
}
