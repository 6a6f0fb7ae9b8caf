// mTLS channel credentials that resume the device's TLS session on reconnection (issue 30,
// "Reconnect storm"). When a replica restarts, its whole share of the fleet reconnects at once
// and the full handshakes are the server's floor: a resumed TLS 1.3 handshake (RFC 8446 2.2,
// PSK with (EC)DHE, so traffic keys stay forward-secret) skips the certificate signature and
// both chain verifications and costs the server 0.5-0.76x of a full one
// (docs/benchmarks.md, "Reconnect storm"). The server keeps its ticket key in the shared data
// dir so a restarted replica, or another one, can still open the tickets it issued.
//
// grpc-js 1.14 never resumes: its connector calls tls.connect without a `session` and keeps no
// ticket. The seam it offers for this is ChannelCredentials' abstract `_createSecureConnector`,
// which is public in its typings but underscored; we take grpc-js's own connector for the
// target (server name, ALPN, identity check, all as grpc-js computes them) and only add the
// session to its TLS options. If a grpc-js upgrade renames the field we read, the connector is
// used as it is (full handshakes, nothing else changes) and server/tests/device-tls-session-resumption.test.ts
// fails, so the upgrade is noticed.
//
// What a resumed session proves (docs/security.md, "TLS session resumption"): only a server
// holding the ticket key can accept the ticket, and the server keeps the device certificate it
// verified at the full handshake in the session; the certificate's expiry and the device's
// record are checked at every call on the server, resumed or not.
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';

/** A connection that ends this soon after its handshake, without an error, was likely refused. */
const QUICK_CLOSE_MS = 2000;

type SecureConnector = ReturnType<grpc.ChannelCredentials['_createSecureConnector']>;
type ConnectOptions = tls.ConnectionOptions & { rejectUnauthorized?: boolean };

/** Reads grpc-js's computed TLS options off its connector; undefined if its shape changed. */
function connectionOptionsOf(connector: SecureConnector): ConnectOptions | undefined {
  const options = (connector as unknown as { connectionOptions?: unknown }).connectionOptions;
  if (options === null || typeof options !== 'object' || !('secureContext' in options)) return undefined;
  return options as ConnectOptions;
}

export class ResumingChannelCredentials extends grpc.ChannelCredentials {
  readonly #inner: grpc.ChannelCredentials;
  /**
   * The newest ticket per server name, offered at the next connection to that name only: on a
   * resumed session Node does not check the server's certificate and host name again.
   */
  readonly #sessions = new Map<string, Buffer>();
  #resumed = 0;
  #full = 0;
  #lastError: { message: string; at: number } | undefined;

  constructor(ca: Buffer, key: Buffer, cert: Buffer) {
    super();
    this.#inner = grpc.credentials.createSsl(ca, key, cert);
  }

  /** Connections that resumed a session / did a full handshake, since construction. */
  get handshakes(): { resumed: number; full: number } {
    return { resumed: this.#resumed, full: this.#full };
  }

  /**
   * Why the newest connection failed, if it did: a call that waits for the channel ends in a
   * bare deadline, and this is the reason underneath (a refused certificate, a reset).
   */
  lastConnectionError(): { message: string; at: number } | undefined {
    return this.#lastError;
  }

  /** A call succeeded: the connection works, whatever failed before. */
  clearConnectionError(): void {
    this.#lastError = undefined;
  }

  /** Forgets the ticket: the next connection does a full handshake. */
  forgetSession(): void {
    this.#sessions.clear();
  }

  override _isSecure(): boolean {
    return true;
  }

  override _equals(other: grpc.ChannelCredentials): boolean {
    return other === this;
  }

  override _createSecureConnector(...args: Parameters<grpc.ChannelCredentials['_createSecureConnector']>): SecureConnector {
    const inner = this.#inner._createSecureConnector(...args);
    const base = connectionOptionsOf(inner);
    if (!base) return inner;
    const name = String(base.servername ?? base.host ?? '');
    return {
      connect: (socket) =>
        new Promise((resolve, reject) => {
          const session = this.#sessions.get(name);
          const tlsSocket = tls.connect({ ...base, socket, ...(session ? { session } : {}) }, () => {
            if ((base.rejectUnauthorized ?? true) && !tlsSocket.authorized) {
              this.#lastError = { message: `server certificate refused: ${tlsSocket.authorizationError?.message ?? 'not authorized'}`, at: Date.now() };
              reject(tlsSocket.authorizationError);
              return;
            }
            const connectedAt = Date.now();
            // A server that refuses the client certificate under TLS 1.3 does so after the
            // client's side of the handshake is done, and often by closing (a reset can swallow
            // its alert): a connection that ends this soon without an error says so.
            tlsSocket.once('close', (hadError) => {
              if (!hadError && Date.now() - connectedAt < QUICK_CLOSE_MS)
                this.#lastError = {
                  message: `the server closed the connection ${Date.now() - connectedAt} ms after the TLS handshake (a refused client certificate ends this way)`,
                  at: Date.now(),
                };
            });
            if (tlsSocket.isSessionReused()) this.#resumed += 1;
            else this.#full += 1;
            resolve({ socket: tlsSocket, secure: true });
          });
          // TLS 1.3 tickets arrive after the handshake; each replaces the last (RFC 8446 C.4
          // prefers a fresh ticket per connection).
          tlsSocket.on('session', (ticket: Buffer) => {
            this.#sessions.set(name, ticket);
          });
          // The ticket is kept on a failed connection: a server that refuses a ticket falls back
          // to a full handshake rather than failing, and in a storm most failures are connections
          // reset by a server shedding load (server/src/device-api/tls-listener.ts).
          // Also after the handshake: TLS 1.3 finishes on the client's side before the server
          // has checked the client's certificate, so a refusal arrives as a later alert or reset.
          tlsSocket.on('error', (error: Error) => {
            this.#lastError = { message: error.message, at: Date.now() };
            reject(error);
          });
        }),
      waitForReady: () => inner.waitForReady(),
      getCallCredentials: () => inner.getCallCredentials(),
      destroy: () => inner.destroy(),
    };
  }
}
