// The device API's TLS listener. Connections terminate TLS here (Node's tls, not grpc-js) and
// are handed to grpc-js already verified, through its connection injector, for one reason:
// a connection's client certificate is then read once, at the handshake, instead of on every
// call (grpc-js's getAuthContext() called TLSSocket.getPeerCertificate(), which rebuilds the
// certificate object and its three fingerprints each time: 10 % of the server's event loop
// at 10,000 devices, docs/benchmarks.md).
//
// Why a certificate read at the handshake stays the connection's certificate (docs/security.md,
// "Identity once per connection"): the listener speaks TLS 1.3 only, which has no
// renegotiation at all, and renegotiation is switched off on every socket all the same, here
// and again by Node's HTTP/2 session (RFC 7540 9.2.1 forbids it), so the peer cannot present
// another certificate on the same connection. What can change during a connection is checked at every
// call, not here: the device's record (decommissioning, device-service.ts) and the
// certificate's validity period (identity.ts refuses a call after notAfter).
//
// Load shedding (docs/operations.md, "Reconnect storms"): when a replica restarts, its whole
// share of the fleet reconnects within seconds, and every mTLS handshake costs the server
// about as much CPU as hundreds of heartbeats. Accepting them all queues handshakes behind one
// another on the one event loop until they time out on both ends, and the work spent on those
// is lost. So the TCP listener is ours (node:net) and hands connections to the TLS server
// only while fewer than `maxPendingHandshakes` handshakes are in progress; past that, a new
// connection is reset at once (the device sees UNAVAILABLE in milliseconds, not a deadline)
// and the agent's jittered backoff (core/src/runtime/retry-backoff.ts) brings it back later.
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { DEFAULT_MAX_PENDING_HANDSHAKES } from '../config/defaults.js';
import { MeshError } from '../errors.js';
import { SESSION_ID_CONTEXT, SESSION_LIFETIME_SECONDS } from '../pki/session-ticket-key.js';

export interface DeviceTlsListenerOptions {
  listen: { host: string; port: number };
  caPem: string;
  keyPem: string;
  certPem: string;
  /** A connection that has not finished its handshake this long after its TCP accept is dropped (slowloris). */
  handshakeTimeoutMs?: number;
  /** Handshakes in progress past which new connections are reset at once (default DEFAULT_MAX_PENDING_HANDSHAKES). */
  maxPendingHandshakes?: number;
  /** Called for every connection reset because too many handshakes were in progress. */
  onShed?: () => void;
  /** Seals session tickets (48 bytes, pki/session-ticket-key.ts); absent: Node's key of this process. */
  sessionTicketKey?: Buffer;
  /** Called for every device connection accepted, with whether it resumed a TLS session. */
  onHandshake?: (resumed: boolean) => void;
}

export interface DeviceTlsListener {
  port: number;
  /** Connections accepted whose handshake has not finished (or failed) yet. */
  pendingHandshakes(): number;
  /** Connections reset at once because `maxPendingHandshakes` were in progress. */
  shedConnections(): number;
  /** Connections whose handshake completed and that have not ended yet. */
  openConnections(): number;
  /**
   * Destroys every connection still open or handshaking: the end of a shutdown's grace period.
   * grpc-js's forceShutdown cancels the calls, but a connection it hands back to no one may
   * stay open while the device keeps it, and a process (or a worker leaving its cluster, which
   * waits for its listeners' connections) would then wait for the device to go.
   */
  destroyConnections(): void;
  /** Stops accepting connections; established ones are grpc-js's to drain. */
  close(): Promise<void>;
  /**
   * Stops accepting, tells every open connection GOAWAY (calls in flight finish, new ones are
   * refused) and resolves once every connection has ended. grpc-js's own tryShutdown must not
   * do this part: it closes the injector's HTTP/2 server, and on Node 24 closing that server
   * (one that never listened) resets the streams still open on its sessions (13 INTERNAL).
   */
  drain(): Promise<void>;
}

/** The injector destroys sessions this long after drain() at the latest (server.ts forces shutdown sooner). */
const DRAIN_BACKSTOP_MS = 10 * 60_000;

export async function listenDeviceTls(grpcServer: grpc.Server, options: DeviceTlsListenerOptions): Promise<DeviceTlsListener> {
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
  // Insecure on grpc-js's side only: what it receives is a TLSSocket this listener verified.
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const server = tls.createServer({
    key: options.keyPem,
    cert: options.certPem,
    ca: options.caPem,
    // mTLS only: a client without a certificate chained to the device CA never reaches gRPC.
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ['h2'],
    // TLS 1.3 only: its resumption keeps forward secrecy against the data dir's ticket key
    // (a TLS 1.2 ticket carries the master secret) and it has no renegotiation at all.
    minVersion: 'TLSv1.3',
    handshakeTimeout: handshakeTimeoutMs,
    // Resumption (RFC 8446 2.2) halves a reconnecting device's handshake cost; the key and the
    // ticket lifetime are the data dir's (pki/session-ticket-key.ts). A resumed session keeps
    // the certificate verified at its full handshake: pinPeerCertificate reads it from there.
    ...(options.sessionTicketKey ? { ticketKeys: options.sessionTicketKey } : {}),
    sessionTimeout: SESSION_LIFETIME_SECONDS,
    // Node's default session id context is a hash of the process's argv, and OpenSSL refuses to
    // resume a session from another context: a replica, or a restart, started with other flags
    // would never resume. The ticket key already keeps other deployments' tickets out.
    sessionIdContext: SESSION_ID_CONTEXT,
  });
  const maxPending = options.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES;
  // Node's handshakeTimeout is an idle timer (TLSSocket.setTimeout): a client that sends a byte
  // every few seconds keeps its handshake, and its place under maxPending, open for ever, and
  // maxPending such clients would have every device reset. This deadline runs from the TCP
  // accept whatever the client sends. The TLS socket Node builds is not handed back, so the
  // deadline is found again by the connection's remote address and port (unique among open
  // connections to this port).
  const deadlines = new Map<string, { timer: NodeJS.Timeout; socket: net.Socket }>();
  const endpoint = (socket: net.Socket) => `${socket.remoteAddress}|${socket.remotePort}`;
  const clearDeadline = (socket: net.Socket) => {
    const key = endpoint(socket);
    const deadline = deadlines.get(key);
    if (!deadline) return;
    clearTimeout(deadline.timer);
    deadlines.delete(key);
  };
  // Every connection handed to the TLS server ends its handshake with exactly one of
  // 'secureConnection' or 'tlsClientError' (a hang-up or the handshake timeout included: Node
  // emits tlsClientError for both); the set guards against counting one twice all the same.
  let pending = 0;
  let shed = 0;
  const open = new Set<tls.TLSSocket>();
  const idle: Array<() => void> = [];
  const settled = new WeakSet<tls.TLSSocket>();
  const settle = (socket: tls.TLSSocket) => {
    if (settled.has(socket)) return;
    settled.add(socket);
    pending -= 1;
  };
  const tcp = net.createServer((socket) => {
    if (pending >= maxPending) {
      shed += 1;
      options.onShed?.();
      // RST, not FIN: the client fails at once, and no TIME_WAIT is left on the server.
      socket.resetAndDestroy();
      return;
    }
    pending += 1;
    const key = endpoint(socket);
    const timer = setTimeout(() => {
      if (deadlines.get(key)?.socket === socket) deadlines.delete(key);
      socket.destroy();
    }, handshakeTimeoutMs);
    timer.unref();
    deadlines.set(key, { timer, socket });
    // Node's documented way to hand a TCP connection to a tls.Server that does not listen itself.
    server.emit('connection', socket);
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    clearDeadline(socket);
    settle(socket);
    // gRPC is HTTP/2 only (RFC 7540 3.3: h2 over TLS is negotiated with ALPN).
    if (socket.alpnProtocol !== 'h2' || !socket.authorized) {
      socket.destroy();
      return;
    }
    socket.disableRenegotiation();
    pinPeerCertificate(socket);
    options.onHandshake?.(socket.isSessionReused());
    open.add(socket);
    socket.once('close', () => {
      open.delete(socket);
      if (open.size === 0) for (const resolve of idle.splice(0)) resolve();
    });
    injector.injectConnection(socket);
  });
  // A failed handshake (no or a foreign certificate, a port scan) is the client's problem; the
  // listener keeps serving. It never reaches the device log: nothing authenticated happened.
  server.on('tlsClientError', (_err: Error, socket: tls.TLSSocket) => {
    clearDeadline(socket);
    settle(socket);
  });
  const port = await new Promise<number>((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new MeshError('MESH_ERR_LISTEN_FAILED', `device API cannot listen on ${options.listen.host}:${options.listen.port}: ${err.message}`, { cause: err }));
    tcp.once('error', onError);
    tcp.listen(options.listen.port, options.listen.host, () => {
      tcp.off('error', onError);
      resolve((tcp.address() as { port: number }).port);
    });
  });
  return {
    port,
    pendingHandshakes: () => pending,
    shedConnections: () => shed,
    openConnections: () => open.size,
    destroyConnections: () => {
      for (const socket of open) socket.destroy();
      for (const { socket } of deadlines.values()) socket.destroy();
    },
    // net.Server's close callback waits for every connection it accepted to end, and the
    // accepted sockets' handles now belong to their TLS sockets (grpc-js's sessions): resolve
    // once the port no longer accepts, which close() does at once.
    close: async () => {
      if (tcp.listening) tcp.close();
    },
    drain: async () => {
      if (tcp.listening) tcp.close();
      // Graceful close of every session (GOAWAY); the destroy after the grace period is the
      // caller's to decide (server.ts's grace timer calls forceShutdown), so it is set far out.
      injector.drain(DRAIN_BACKSTOP_MS);
      if (open.size > 0) await new Promise<void>((resolve) => idle.push(resolve));
    },
  };
}

/**
 * Reads the verified peer certificate's DER once and answers every later read with the same
 * object, so its identity is derived once per connection (pki/peer-identity.ts keys on that buffer).
 * Only `raw` is pinned: it is all the device API reads (grpc-js's getAuthContext hands the
 * object on, device-service.ts takes `.raw`). The full object getPeerCertificate() builds
 * (subject and issuer, three fingerprints, the public key, the serial) held about 2.5 KiB of
 * heap per connected device for nothing (docs/benchmarks.md, "Memory per connected device").
 * A caller asking for the detailed chain still gets a fresh full read.
 */
function pinPeerCertificate(socket: tls.TLSSocket): void {
  const read = socket.getPeerCertificate.bind(socket);
  const pinned = { raw: read().raw } as tls.PeerCertificate;
  socket.getPeerCertificate = ((detailed?: boolean) => (detailed ? read(true) : pinned)) as typeof socket.getPeerCertificate;
}
