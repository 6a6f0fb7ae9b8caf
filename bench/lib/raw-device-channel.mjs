// A simulated device's channel without grpc-js: one node:http2 session over mutual TLS (the
// device's own key and certificate, the server verified against the device CA), unary gRPC
// calls framed by hand (5-byte prefix: compressed flag, big-endian length; status in the
// trailers) with the messages encoded by the contract's own serializers (@grpc/proto-loader).
// For the fleet bench's load generators only, where tens of thousands of channels share one
// process (docs/benchmarks.md, "what one simulated device costs"); the agent itself uses
// grpc-js (core/src/runtime/device-client.ts). It offers the slice of grpc-js's Client that
// fleet-client.mjs uses: unary methods by their lower-case names, waitForReady, close.
import http2 from 'node:http2';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadDeviceService } from '@meshanics/core/contract';

const { service } = loadDeviceService();
/** The contract's device methods (path, serializers) by name, loaded once for the process. */
export { service as deviceService };

/**
 * Starts the unary call `def` on `session`: request headers with a grpc-timeout of `timeoutMs`,
 * then `request` as its one message (5-byte prefix: uncompressed flag, big-endian length). The
 * response and its status arrive on the stream returned.
 */
export function startUnaryCall(session, def, request, timeoutMs) {
  const body = def.requestSerialize(request);
  const stream = session.request({
    ':method': 'POST',
    ':path': def.path,
    'content-type': 'application/grpc',
    te: 'trailers',
    'grpc-timeout': `${timeoutMs}m`,
  });
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = 0;
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  stream.end(frame);
  return stream;
}

/** Calls `onStatus(code, message)` with the call's grpc-status: from the trailers, or from the headers of a trailers-only response. */
export function onGrpcStatus(stream, onStatus) {
  const note = (headers) => {
    if (headers['grpc-status'] !== undefined) onStatus(Number(headers['grpc-status']), decodeURIComponent(String(headers['grpc-message'] ?? '')));
  };
  stream.on('response', note);
  stream.on('trailers', note);
}

/** A gRPC error as grpc-js reports it (code, details, message), so callers treat both alike. */
function grpcError(code, details) {
  const err = new Error(`${code} ${grpc.status[code] ?? ''}: ${details}`);
  err.code = code;
  err.details = details;
  return err;
}

export class RawDeviceChannel {
  #address;
  #tls;
  #session = null;

  /** `localAddress`: the address to connect from (net.connect's option), for many devices on one loopback port. */
  constructor(address, { caPem, keyPem, certPem }, { localAddress } = {}) {
    this.#address = address;
    // One SecureContext per device: the key and certificate are the device's own.
    this.#tls = { ca: caPem, key: keyPem, cert: certPem, ...(localAddress ? { localAddress } : {}) };
    for (const def of Object.values(service)) {
      if (def.requestStream || def.responseStream) continue;
      this[def.originalName] = (request, _metadata, options, cb) => this.#unary(def, request, options.deadline, cb);
    }
  }

  /** The open session, or a new one (after a failure, as grpc-js reconnects on the next call). */
  #connect() {
    if (this.#session && !this.#session.closed && !this.#session.destroyed) return this.#session;
    // No SNI for an IP address (RFC 6066 3); the certificate is still checked against it.
    const host = this.#address.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
    const session = http2.connect(`https://${this.#address}`, { ...this.#tls, ...(net.isIP(host) ? { servername: '' } : {}), settings: { enablePush: false } });
    session.on('error', () => undefined); // reported to the calls in flight through their streams
    session.once('close', () => {
      if (this.#session === session) this.#session = null;
    });
    session.unref();
    this.#session = session;
    return session;
  }

  waitForReady(deadline, cb) {
    const session = this.#connect();
    if (session.connecting === false && session.encrypted) return void cb();
    const timer = setTimeout(() => done(grpcError(grpc.status.DEADLINE_EXCEEDED, 'waitForReady deadline')), Math.max(0, deadline - Date.now()));
    const done = (err) => {
      clearTimeout(timer);
      session.off('connect', onConnect);
      session.off('close', onClose);
      session.off('error', onError);
      cb(err);
    };
    const onConnect = () => done();
    let cause = '';
    const onError = (err) => (cause = `: ${err.message}`);
    session.once('error', onError);
    const onClose = () => done(grpcError(grpc.status.UNAVAILABLE, `connection closed before it was ready${cause}`));
    session.once('connect', onConnect);
    session.once('close', onClose);
  }

  #unary(def, request, deadline, cb) {
    let session;
    try {
      session = this.#connect();
    } catch (err) {
      return void cb(grpcError(grpc.status.UNAVAILABLE, err.message));
    }
    const timeoutMs = Math.max(1, deadline - Date.now());
    const stream = startUnaryCall(session, def, request, timeoutMs);
    const chunks = [];
    let finished = false;
    const finish = (err, res) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      if (err) stream.close(http2.constants.NGHTTP2_CANCEL);
      cb(err, res);
    };
    const timer = setTimeout(() => finish(grpcError(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded')), timeoutMs);
    let status = null;
    let message = '';
    onGrpcStatus(stream, (code, text) => {
      status = code;
      message = text;
    });
    stream.on('data', (c) => chunks.push(c));
    stream.on('error', (err) => finish(grpcError(grpc.status.UNAVAILABLE, err.message)));
    stream.on('close', () => {
      if (status === null) return finish(grpcError(grpc.status.UNAVAILABLE, `stream closed without a status (${stream.rstCode ?? 'no code'})`));
      if (status !== grpc.status.OK) return finish(grpcError(status, message));
      const data = Buffer.concat(chunks);
      if (data.length < 5 || data[0] !== 0) return finish(grpcError(grpc.status.INTERNAL, 'response is not one uncompressed message'));
      try {
        finish(null, def.responseDeserialize(data.subarray(5, 5 + data.readUInt32BE(1))));
      } catch (err) {
        finish(grpcError(grpc.status.INTERNAL, err.message));
      }
    });
  }

  close() {
    this.#session?.close();
    this.#session = null;
  }
}
