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
 * (device-api/tls-listener.ts). A handshake in progress mostly waits for the device: for its
 * ClientHello, then, a round trip and the device's own signature later, for its certificate and
 * Finished. The server's share is 1.2-1.9 ms of CPU (ECDSA P-256, this project's 2-core
 * machines; about 3 ms for a whole reconnection with its HTTP/2 session and first heartbeat,
 * docs/benchmarks.md, "Reconnect storm"). So the bound is what the server could owe if every
 * admitted handshake wanted it at once: 2,048 full handshakes are 2.5-5 s of CPU at the
 * 1.2-2.5 ms measured here (6 s counting a whole reconnection's 3 ms), inside the 10 s
 * handshake timeout and grpc-js's 20 s connect timeout; a server on cores half as fast should
 * lower it. What the bound also caps: the connections an unauthenticated client can hold
 * open before the handshake timeout closes them (one descriptor and about 100 KiB each, so
 * about 200 MiB at the bound). The bound was 256, sized as
 * if every handshake in progress were waiting for the server: over a 1 s round trip (a loaded
 * cellular link) that admits at most about 256 handshakes a second, less than half of what the
 * server's CPU could take, and the rest of a storm is reset and comes back later. On loopback
 * (2026-12-06, docs/benchmarks.md): 2,000 devices came back in 5.5 s instead of 7.4 s (medians
 * of five; 256 reset some in three runs of five, 2,048 none), and at 18,000, 2,048 reset
 * 2.7-6.2x fewer connections with no more memory.
 */
export const DEFAULT_MAX_PENDING_HANDSHAKES = 2048;
/** PostgreSQL connections per pool (readers, writers) of one server process. */
export const DEFAULT_DATABASE_CONNECTIONS = 10;

/** Heartbeat answers kept in memory (about 1 KiB each with one assignment). */
export const DEFAULT_HEARTBEAT_CACHE_SIZE = 100_000;

/** Open REST API event streams one API key may hold on one server process. */
export const DEFAULT_API_MAX_STREAMS_PER_KEY = 10;
/** An event stream ends after this long; clients reconnect. */
export const DEFAULT_API_STREAM_LIFETIME_SECONDS = 15 * 60;
/** Failed API key attempts per source address and minute before the address is answered 429. */
export const DEFAULT_API_AUTH_MAX_FAILURES = 10;
/** How long `serve` lets in-flight calls and requests finish at shutdown before cutting them. */
export const SHUTDOWN_GRACE_MS = 5000;
/** `serve --workers`: how long a worker may take to listen before the primary kills it (a start, opening the database, takes seconds). */
export const DEFAULT_WORKER_START_TIMEOUT_SECONDS = 60;
