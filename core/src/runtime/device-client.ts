import * as grpc from '@grpc/grpc-js';
import { loadDeviceService } from '../contract/proto.js';
import type { HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse, ReportArtifactStatusRequest, ReportArtifactStatusResponse } from '../contract/messages.js';
import type { DeviceTlsMaterial } from '../transport/tls.js';

type Unary<Req, Res> = (req: Req, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

/**
 * grpc-js backs a failed connection off up to 120 s by default and, while it waits, fails
 * every call at once (TRANSIENT_FAILURE) whatever the agent's own retry rhythm: after a long
 * server outage agents came back up to a minute late. The agent already paces its calls
 * (heartbeat interval, its own jittered backoff), so the channel itself retries within a few
 * seconds of being asked.
 */
export const RECONNECT_BACKOFF = { initialMs: 1000, maxMs: 5000 } as const;

/** The agent's side of DeviceService: mutual TLS only, one long-lived channel. */
export class DeviceClient {
  readonly #client: grpc.Client & Record<string, unknown>;
  readonly #deadlineMs: number;

  constructor(address: string, tls: DeviceTlsMaterial, options: { deadlineMs?: number } = {}) {
    const { Client } = loadDeviceService();
    const credentials = grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
    this.#client = new Client(address, credentials, {
      'grpc.keepalive_time_ms': 60_000,
      'grpc.initial_reconnect_backoff_ms': RECONNECT_BACKOFF.initialMs,
      'grpc.max_reconnect_backoff_ms': RECONNECT_BACKOFF.maxMs,
      'grpc.max_receive_message_length': 4 * 1024 * 1024,
    });
    this.#deadlineMs = options.deadlineMs ?? 15_000;
  }

  #call<Req, Res>(method: string, request: Req): Promise<Res> {
    const fn = this.#client[method] as Unary<Req, Res>;
    return new Promise((resolve, reject) => {
      fn.call(this.#client, request, new grpc.Metadata(), { deadline: Date.now() + this.#deadlineMs }, (err, res) => (err ? reject(err) : resolve(res as Res)));
    });
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
