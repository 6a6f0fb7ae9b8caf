// Defaults shared by the library and the CLI's help text. Dependency-free on purpose: the
// CLI imports it eagerly and loads everything else only for the command it runs.
export const DEFAULT_TRUST_DOMAIN = 'meshanics.local';
export const DEFAULT_GRPC_LISTEN = '127.0.0.1:7443';
export const DEFAULT_ARTIFACT_LISTEN = '127.0.0.1:7444';
export const DEFAULT_ENROLL_LISTEN = '127.0.0.1:7445';
/** The documented REST API address; `serve` starts the API only when --api-listen is given. */
export const DEFAULT_API_LISTEN = '127.0.0.1:7480';
export const DEFAULT_HEARTBEAT_INTERVAL_SECONDS = 30;
export const DEFAULT_DEVICE_CERT_DAYS = 30;
export const PROBE_DEFAULTS = { timeoutSeconds: 10, attempts: 3, initialDelaySeconds: 0 } as const;
export const DEFAULT_ENROLLMENT_TOKEN_TTL_SECONDS = 86_400;
export const DEFAULT_LOG_MAX_BYTES = 1024 * 1024;
/** The hard cap of one log bundle, whatever a request says. */
export const MAX_LOG_BYTES = 16 * 1024 * 1024;

/**
 * Device API TLS handshakes in progress past which new connections are reset at once
 * (device-api/tls-listener.ts). One mTLS handshake (ECDSA P-256) costs the server 1.5-1.9 ms
 * of CPU on this project's 2-core machines, and a whole reconnection (handshake, HTTP/2 session,
 * first heartbeat) about 2.7 ms (docs/benchmarks.md, "Reconnect storm"), all of it on the event
 * loop. 256 handshakes in progress are about 0.7 s of queued work: the last one admitted still
 * completes far inside the 10 s handshake timeout (and grpc-js's 20 s connect timeout), the loop
 * keeps serving heartbeats between them, and there is always work queued for the CPU.
 */
export const DEFAULT_MAX_PENDING_HANDSHAKES = 256;

/** Heartbeat answers kept in memory (about 1 KiB each with one assignment). */
export const DEFAULT_HEARTBEAT_CACHE_SIZE = 100_000;

/** Open REST API event streams one API key may hold on one server process. */
export const DEFAULT_API_MAX_STREAMS_PER_KEY = 10;
/** An event stream ends after this long; clients reconnect. */
export const DEFAULT_API_STREAM_LIFETIME_SECONDS = 15 * 60;
/** Failed API key attempts per source address and minute before the address is answered 429. */
export const DEFAULT_API_AUTH_MAX_FAILURES = 10;
