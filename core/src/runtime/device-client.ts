import * as grpc from '@grpc/grpc-js';
import { loadDeviceService } from '../contract/proto.js';
import type { HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse, ReportArtifactStatusRequest, ReportArtifactStatusResponse } from '../contract/messages.js';
import type { DeviceTlsMaterial } from '../transport/tls.js';
import { ResumingChannelCredentials } from './resuming-credentials.js';

type Unary<Req, Res> = (req: Req, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

/**
 * grpc-js backs a failed connection off up to 120 s by default: after a long server outage
 * agents came back up to a minute late. The agent already paces its calls (heartbeat
 * interval, its own jittered backoff), so the channel itself retries within a few seconds.
 * The channel's backoff is jittered too (±20 %, grpc-js backoff-timeout.js), so a fleet whose
 * server restarts reaches it spread over up to `maxMs` rather than all at once.
 */
export const RECONNECT_BACKOFF = { initialMs: 1000, maxMs: 5000 } as const;

/** The channel options the agent opens its one long-lived channel with. */
export const DEVICE_CHANNEL_OPTIONS: grpc.ChannelOptions = Object.freeze({
  'grpc.keepalive_time_ms': 60_000,
  'grpc.initial_reconnect_backoff_ms': RECONNECT_BACKOFF.initialMs,
  'grpc.max_reconnect_backoff_ms': RECONNECT_BACKOFF.maxMs,
  'grpc.max_receive_message_length': 4 * 1024 * 1024,
});

/** How long a unary call (register, heartbeat, status report) may take, waiting for a connection included. */
export const CALL_DEADLINE_MS = 15_000;

/**
 * The metadata of every unary call: wait-for-ready. Without it grpc-js fails a call made
 * while the channel sits in its reconnect backoff (TRANSIENT_FAILURE) at once with
 * UNAVAILABLE, without trying; after a server restart each such failure widened the agent's
 * retry window (retry-backoff.ts) while the server was already back, and a 2,000-device fleet
 * came back in 3.6x the handshake-CPU floor with the server 40 % busy (issue 30). With it the
 * call waits for the channel's next connection attempt, bounded by its deadline, and only a
 * deadline or an answer from the server counts as a failure. grpc-js reads this option from
 * the Metadata, not from CallOptions (load-balancing-call.js: metadata.getOptions()).
 */
export function deviceCallMetadata(waitForReady = true): grpc.Metadata {
  return new grpc.Metadata({ waitForReady });
}

/**
 * Resolves after `ms`, or earlier when the channel becomes READY from another state (it
 * reconnected on its own: grpc-js keeps connecting with backoff while it is in transient
 * failure), or when `signal` aborts. A retry sleep ends with it, so an agent whose server
 * came back does not sit out the rest of its retry window. Already READY (the server
 * answered the failed call): the full `ms`, so an answered failure is never retried in a
 * tight loop. Rejects with the signal's reason when it aborts (as abortableSleep).
 */
export function sleepUnlessReconnected(
  channel: Pick<grpc.Channel, 'getConnectivityState' | 'watchConnectivityState'>,
  ms: number,
  signal?: AbortSignal,
): Promise<'reconnected' | 'slept'> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const deadline = Date.now() + ms;
    let done = false;
    const finish = (how: 'reconnected' | 'slept' | 'aborted') => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (how === 'aborted') reject(signal?.reason);
      else resolve(how);
    };
    const onAbort = () => finish('aborted');
    const timer = setTimeout(() => finish('slept'), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
    const watch = (from: grpc.connectivityState) => {
      if (done || from === grpc.connectivityState.SHUTDOWN) return;
      channel.watchConnectivityState(from, deadline, (err) => {
        if (err || done) return; // the deadline passed: the timer resolves
        const now = channel.getConnectivityState(false);
        if (now === grpc.connectivityState.READY && from !== grpc.connectivityState.READY) finish('reconnected');
        else watch(now);
      });
    };
    watch(channel.getConnectivityState(false));
  });
}

export interface DeviceClientOptions {
  /** Default CALL_DEADLINE_MS. */
  deadlineMs?: number;
  /**
   * Default true (the agent's policy, see deviceCallMetadata). False fails a call at once
   * while the channel cannot connect, with the connection error in the status (tests of a
   * refused handshake).
   */
  waitForReady?: boolean;
}

/** The agent's side of DeviceService: mutual TLS only, one long-lived channel. */
export class DeviceClient {
  readonly #client: grpc.Client & Record<string, unknown>;
  readonly #credentials: ResumingChannelCredentials;
  readonly #deadlineMs: number;
  readonly #waitForReady: boolean;

  constructor(address: string, tls: DeviceTlsMaterial, options: DeviceClientOptions = {}) {
    const { Client } = loadDeviceService();
    this.#credentials = new ResumingChannelCredentials(tls.ca, tls.key, tls.cert);
    this.#client = new Client(address, this.#credentials, { ...DEVICE_CHANNEL_OPTIONS });
    this.#deadlineMs = options.deadlineMs ?? CALL_DEADLINE_MS;
    this.#waitForReady = options.waitForReady ?? true;
  }

  /** Sleeps before a retry: see sleepUnlessReconnected. */
  sleepUnlessReconnected(ms: number, signal?: AbortSignal): Promise<'reconnected' | 'slept'> {
    return sleepUnlessReconnected(this.#client.getChannel(), ms, signal);
  }

  #call<Req, Res>(method: string, request: Req): Promise<Res> {
    const fn = this.#client[method] as Unary<Req, Res>;
    const startedAt = Date.now();
    return new Promise((resolve, reject) => {
      fn.call(this.#client, request, deviceCallMetadata(this.#waitForReady), { deadline: startedAt + this.#deadlineMs }, (err, res) =>
        err ? reject(this.#withConnectionError(err, startedAt)) : (this.#credentials.clearConnectionError(), resolve(res as Res)),
      );
    });
  }

  /** A call that waited for the channel in vain says why the channel could not connect. */
  #withConnectionError(err: grpc.ServiceError, startedAt: number): grpc.ServiceError {
    const last = this.#credentials.lastConnectionError();
    if (err.code !== grpc.status.DEADLINE_EXCEEDED || !last || last.at < startedAt) return err;
    const reason = `; the last connection attempt failed: ${last.message}`;
    err.details += reason;
    err.message += reason;
    return err;
  }

  register(request: RegisterRequest): Promise<RegisterResponse> {
    return this.#call('register', request);
  }

  heartbeat(request: HeartbeatRequest): Promise<HeartbeatResponse> {
    return this.#call('heartbeat', request);
  }

  reportArtifactStatus(request: ReportArtifactStatusRequest): Promise<ReportArtifactStatusResponse> {
    return this.#call('reportArtifactStatus', request);
  }

  /** Streams a gzip bundle in chunks (client streaming); resolves with what the server stored. */
  uploadLogs(logRequestId: string, bundle: Buffer, chunkSize = 64 * 1024): Promise<number> {
    const fn = this.#client.uploadLogs as (
      meta: grpc.Metadata,
      opts: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res?: { bytesReceived: number }) => void,
    ) => grpc.ClientWritableStream<{ logRequestId: string; data: Buffer }>;
    return new Promise((resolve, reject) => {
      const call = fn.call(this.#client, new grpc.Metadata(), { deadline: Date.now() + 120_000 }, (err, res) => (err ? reject(err) : resolve(Number(res?.bytesReceived ?? 0))));
      for (let offset = 0, first = true; offset < bundle.length || first; offset += chunkSize, first = false) {
        call.write({ logRequestId: first ? logRequestId : '', data: bundle.subarray(offset, offset + chunkSize) });
      }
      call.end();
    });
  }

  close(): void {
    this.#client.close();
  }
}
