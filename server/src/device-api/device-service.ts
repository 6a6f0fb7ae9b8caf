// device-api/ owns the device gRPC API: DeviceService (this file), request validation (request-validation.ts),
// refusals with their gRPC status and MESH_ERR code (refusal.ts), heartbeat answers kept in memory (heartbeat-cache.ts)
// and heartbeat writes in batches (heartbeat-batcher.ts).
// May import: store/, pki/ (peer identity), logs/upload.ts (the UploadLogs body), config/, observability/,
// ../errors.ts, @grpc/grpc-js, @meshanics/core/contract. Never api/, catalog/, fleet/, rollouts/ or server.ts:
// server.ts wires it. logs/upload.ts imports refusal.ts back (the one cycle between folders; docs/architecture.md).
//
// meshanics.device.v1.DeviceService: the only surface agents talk to, served over mTLS.
// Over 400 lines because the four handlers share one closure (identity, the caller's record, the
// report batcher, the heartbeat cache) that splitting would have to thread through every file;
// what stands alone already lives beside it (validation, refusals, cache, batcher, TLS listener).
// The caller is whoever its verified client certificate says; no request field can name a
// device (spec: "Identity comes from the certificate, never the request").
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import pLimit from 'p-limit';
import {
  loadDeviceService,
  TERMINAL_STATES,
  type AssignmentMessage,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type RegisterRequest,
  type RegisterResponse,
  type ReportArtifactStatusRequest,
  type ReportArtifactStatusResponse,
} from '@meshanics/core/contract';
import { InvalidRequest, validateHeartbeat, validateRegister, validateReport } from './request-validation.js';
import { Refusal } from './refusal.js';
import type { Logger } from '../observability/log.js';
import { receiveLogUpload, type UploadLogsChunk } from '../logs/upload.js';
import type { HeartbeatBatcher } from './heartbeat-batcher.js';
import type { HeartbeatCache, HeartbeatView } from './heartbeat-cache.js';
import { deviceFromCertificate, type PeerDevice } from '../pki/peer-identity.js';
import { parseListenAddress } from '../config/listen-address.js';
import { listenDeviceTls } from './tls-listener.js';
import { installedDigest, type DeviceRecord, type DesiredArtifact, type NewAuditEvent, type NewStatusReport, type Store } from '../store/index.js';
import { WriteBatcher } from '../store/write-batcher.js';

export const MAX_DEVICE_MESSAGE_BYTES = 1024 * 1024;

export interface DeviceServiceOptions {
  store: Store;
  trustDomain: string;
  logger: Logger;
  /** Default heartbeat interval for devices without their own. */
  heartbeatIntervalSeconds: number;
  /** Where UploadLogs stores bundles (`<data-dir>/logs`). */
  logsDir: string;
  /** An upload that sends nothing for this long is aborted (default 60 s). */
  logUploadIdleTimeoutMs?: number;
  /**
   * Called after a status report is stored (committed) for an assignment of a rollout: the
   * rollout engine's progression step. Its errors are logged; they never fail the report.
   */
  afterRolloutReport?: (rolloutId: string) => unknown;
  /**
   * Where heartbeats record liveness and changed installed sets (flushed in batches; see
   * heartbeat-batcher.ts). Absent: each heartbeat writes both itself before it is answered.
   */
  heartbeatWrites?: Pick<HeartbeatBatcher, 'record'>;
  metrics?: DeviceServiceMetrics;
  /** Heartbeat answers kept in memory, kept right by the store's device-state feed. */
  heartbeatCache?: HeartbeatCache;
}

/** How a heartbeat was answered: from memory or the database, and whether it listed a changed installed set. */
export interface HeartbeatTiming {
  answer: 'memory' | 'database';
  installedChanged: boolean;
  /** From the handler's start to its answer (decoding and TLS not included). */
  seconds: number;
}

/** What the device API counts (metrics.ts implements it with prom-client). */
export interface DeviceServiceMetrics {
  heartbeat(timing: HeartbeatTiming): void;
  report(state: string, accepted: boolean): void;
  /** A call that ended with a non-OK status, by gRPC code name. */
  grpcError(method: string, code: string): void;
  /** One batch of status reports' audit events appended to the chain: how many, and how long it took. */
  auditBatch?(events: number, seconds: number): void;
  /** A new connection reset at once because too many TLS handshakes were in progress (tls-listener.ts). */
  connectionShed?(): void;
  /** A device connection's TLS handshake completed: resumed from a ticket, or full. */
  handshake?(resumed: boolean): void;
  /** Reads the listener's handshakes in progress when scraped. */
  attachHandshakes?(pending: () => number): void;
  /** Reads the listener's open device connections when scraped. */
  attachConnections?(open: () => number): void;
}

const DEFAULT_LOG_UPLOAD_IDLE_TIMEOUT_MS = 60_000;

/** A connection-level failure to reach the database (pg: ECONNREFUSED and friends, 57P01 admin shutdown, 08xxx). */
function isDatabaseUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('08') || code === '57P01' || code === '57P03' || code === 'ECONNREFUSED' || code === 'ECONNRESET');
}
const DECOMMISSIONED = 'device is decommissioned';

/** The caller cancelled the call or its deadline has passed (grpc-js answers it DEADLINE_EXCEEDED itself). */
function gaveUp(call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'cancelled' | 'getDeadline'>): boolean {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return call.cancelled || at <= Date.now();
}

interface Caller {
  peer: PeerDevice;
  /** Undefined until the device's row exists (issue-cert or first Register creates it). */
  device: DeviceRecord | undefined;
  /** Digest of the installed set stored for the device (null: unknown, write it). */
  installedDigest: string | null;
  pendingLogRequests: boolean;
}

function toAssignmentMessage({ assignment, artifact }: DesiredArtifact): AssignmentMessage {
  return {
    assignmentId: assignment.id,
    rolloutId: assignment.rolloutId ?? '',
    kind: artifact.kind,
    name: artifact.name,
    version: artifact.version,
    targetPath: artifact.targetPath,
    expectedSha256: artifact.sha256,
    expectedLength: artifact.length,
    specJson: JSON.stringify(artifact.spec),
    probe: {
      type: assignment.probe.type,
      specJson: JSON.stringify(assignment.probe.spec),
      timeoutSeconds: assignment.probe.timeoutSeconds,
      attempts: assignment.probe.attempts,
      initialDelaySeconds: assignment.probe.initialDelaySeconds,
    },
  };
}

/** A status report waiting for its batch, with its audit event when it is a transition. */
interface PendingReport {
  report: NewStatusReport;
  audit?: NewAuditEvent;
  call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'cancelled' | 'getDeadline'>;
}

/**
 * Status reports' reads at once. A wave's reports come in bursts (thousands of devices start
 * downloading together); unlimited, their reads took every pooled PostgreSQL connection and
 * heartbeats waited behind them (docs/benchmarks.md: most slow statements were waits for a
 * connection). A report can wait in memory; a heartbeat's answer should not.
 */
const REPORT_READS_AT_ONCE = 4;

export function createDeviceServiceHandlers(options: DeviceServiceOptions): grpc.UntypedServiceImplementation {
  const { store, trustDomain, logger } = options;
  const reportReads = pLimit(REPORT_READS_AT_ONCE);

  /**
   * A batch of reports, inside its write transaction: whether each was stored (undefined: not
   * written, its call had given up), and the audit events of the stored transitions.
   */
  async function writeReports(batch: PendingReport[]): Promise<Array<boolean | undefined>> {
    // A call whose deadline passed while it queued for its batch: the device has given up
    // and will send the report again, so writing it now would only lengthen the queue for
    // the reports still waited for (when a wave overloads the server, most of the queue).
    const wanted = batch.filter((p) => !gaveUp(p.call));
    const stored = await store.recordStatusReports(wanted.map((p) => p.report));
    // The batch's transitions as consecutive links of the chain: one head read and one INSERT
    // for all of them, in the reports' own transaction (sql-audit.ts appendMany).
    const audit = wanted.flatMap((p, i) => (stored[i] && p.audit ? [p.audit] : []));
    const started = performance.now();
    await store.appendAuditEvents(audit);
    if (audit.length > 0) options.metrics?.auditBatch?.(audit.length, (performance.now() - started) / 1000);
    const byPending = new Map(wanted.map((p, i) => [p, stored[i]!]));
    return batch.map((p) => byPending.get(p));
  }
  // Reports arriving together are committed together (still each before its answer).
  const reportWrites = new WriteBatcher<PendingReport, boolean | undefined>(store, writeReports);

  /** The device identity the TLS-verified client certificate asserts (no database read). */
  function identify(call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>): PeerDevice {
    const peer = deviceFromCertificate(call.getAuthContext().sslPeerCertificate?.raw, trustDomain);
    if (!peer) throw new Refusal(grpc.status.UNAUTHENTICATED, 'client certificate carries no device identity of this trust domain');
    // The handshake checked the validity period once; a connection outlives it, calls do not.
    if (Date.now() > peer.notAfterMs) throw new Refusal(grpc.status.UNAUTHENTICATED, 'client certificate has expired: renew it and reconnect');
    return peer;
  }

  /**
   * Who is calling. A decommissioned device is refused here on every call but Heartbeat,
   * which answers it `offboarded` once (see offboard) so the agent can wipe itself and exit.
   */
  async function authenticate(call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>, method: string): Promise<Caller> {
    const peer = identify(call);
    const found = await store.getCallingDevice(peer.spiffeId);
    const device = found?.device;
    if (device?.decommissionedAt && method !== 'Heartbeat') throw new Refusal(grpc.status.PERMISSION_DENIED, DECOMMISSIONED);
    return { peer, device, installedDigest: found?.installedDigest ?? null, pendingLogRequests: found?.pendingLogRequests ?? false };
  }

  /** The one answer a decommissioned identity gets: the first heartbeat after decommissioning. */
  async function offboard(device: DeviceRecord): Promise<HeartbeatResponse> {
    const now = new Date().toISOString();
    const first = await store.withWriteLock(async () => {
      if (!(await store.markOffboardNotified(device.id, now))) return false;
      await store.appendAudit({ at: now, actor: `device:${device.spiffeId}`, action: 'device.offboard_notified', subject: `device:${device.spiffeId}` });
      return true;
    });
    if (!first) throw new Refusal(grpc.status.PERMISSION_DENIED, DECOMMISSIONED);
    logger.info({ device: device.spiffeId }, 'decommissioned device told it is offboarded');
    return { assignments: [], logRequests: [], offboarded: true, nextHeartbeatSeconds: heartbeatSeconds(device) };
  }

  function registered(caller: Caller): DeviceRecord {
    if (!caller.device?.registeredAt) throw new Refusal(grpc.status.FAILED_PRECONDITION, 'device is not registered: register first');
    return caller.device;
  }

  function heartbeatSeconds(device: DeviceRecord | undefined): number {
    return device?.heartbeatIntervalSeconds ?? options.heartbeatIntervalSeconds;
  }

  function unary<Req, Res>(method: string, handle: (caller: Caller, request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return answered(method, async (call, who) => {
      const caller = await authenticate(call, method);
      who(caller.peer);
      return handle(caller, call.request, call);
    });
  }

  /** Runs `handle` and turns what it throws into the call's status. `who` names the caller for the log. */
  function answered<Req, Res>(method: string, handle: (call: grpc.ServerUnaryCall<Req, Res>, who: (peer: PeerDevice) => void) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      let peer: PeerDevice | undefined;
      handle(call, (p) => (peer = p)).then(
        (response) => callback(null, response),
        (err: unknown) => callback(refusalFor(method, err, peer?.spiffeId)),
      );
    };
  }

  function refusalFor(method: string, err: unknown, device: string | undefined): Partial<grpc.StatusObject> {
    const status = statusFor(method, err, device);
    options.metrics?.grpcError(method, grpc.status[status.code] ?? String(status.code));
    return status;
  }

  function statusFor(method: string, err: unknown, device: string | undefined): { code: grpc.status; details: string } {
    if (err instanceof Refusal) {
      logger.warn({ method, device, code: grpc.status[err.code], reason: err.message }, 'device call refused');
      return { code: err.code, details: err.message };
    }
    if (err instanceof InvalidRequest) {
      logger.warn({ method, device, reason: err.message }, 'invalid device request');
      return { code: grpc.status.INVALID_ARGUMENT, details: err.message };
    }
    // Internal details stay in the server log. UNAVAILABLE (not INTERNAL) when the database
    // cannot be reached: the agent retries, possibly against another replica.
    logger.error({ method, device, err }, 'device call failed');
    if (isDatabaseUnavailable(err)) return { code: grpc.status.UNAVAILABLE, details: 'database unavailable' };
    return { code: grpc.status.INTERNAL, details: 'internal error' };
  }

  const Register = unary<RegisterRequest, RegisterResponse>('Register', async (caller, request) => {
    const profile = validateRegister(request);
    const { peer } = caller;
    const now = new Date().toISOString();
    const device = await store.withWriteLock(async () => {
      const record = await store.registerDevice({ spiffeId: peer.spiffeId, fleet: peer.fleet, name: peer.name, profile, now });
      if (!caller.device?.registeredAt) {
        await store.appendAudit({
          at: now,
          actor: `device:${peer.spiffeId}`,
          action: 'device.registered',
          subject: `device:${peer.spiffeId}`,
          details: { agentVersion: profile.agentVersion },
        });
      }
      return record;
    });
    logger.info({ device: peer.spiffeId, agentVersion: profile.agentVersion }, 'device registered');
    return { deviceName: device.name, fleet: device.fleet, heartbeatIntervalSeconds: heartbeatSeconds(device) };
  });

  /**
   * What a heartbeat is answered from: kept in memory while the store's feed says nothing
   * changed (heartbeat-cache.ts), else read. A decommissioned or unregistered device is never
   * kept: its heartbeat is answered from the database every time.
   */
  async function heartbeatView(peer: PeerDevice, timing: Pick<HeartbeatTiming, 'answer'>): Promise<HeartbeatView | HeartbeatResponse> {
    const cache = options.heartbeatCache;
    const { view, ticket, deviceId } = cache?.lookup(peer.spiffeId) ?? {};
    if (view) {
      timing.answer = 'memory';
      return view;
    }
    // The device known from an earlier answer: both reads at once (on PostgreSQL, one round
    // trip's wait instead of two). Its outcome is awaited below or dropped with the answer.
    const early = deviceId === undefined ? undefined : store.listDesiredArtifacts(deviceId);
    early?.catch(() => undefined);
    const found = await store.getCallingDevice(peer.spiffeId);
    const device = found?.device;
    // Before the registration check: a device decommissioned before it ever registered must
    // still learn that it is offboarded.
    if (device?.decommissionedAt) return offboard(device);
    if (!found || !device?.registeredAt) throw new Refusal(grpc.status.FAILED_PRECONDITION, 'device is not registered: register first');
    const read: HeartbeatView = {
      deviceId: device.id,
      installedDigest: found.installedDigest,
      assignments: (await (early !== undefined && deviceId === device.id ? early : store.listDesiredArtifacts(device.id))).map(toAssignmentMessage),
      // Every heartbeat repeats a request until its upload arrives: a lost response loses nothing.
      logRequests: (found.pendingLogRequests ? await store.logRequests.listPending(device.id) : []).map((r) => ({
        logRequestId: r.id,
        since: r.since ?? '',
        until: r.until ?? '',
        maxBytes: r.maxBytes,
      })),
      nextHeartbeatSeconds: heartbeatSeconds(device),
    };
    cache?.store(ticket, peer.spiffeId, read);
    return read;
  }

  const Heartbeat = answered<HeartbeatRequest, HeartbeatResponse>('Heartbeat', async (call, who) => {
    const started = performance.now();
    // Taken before any wait: it orders this heartbeat's writes against the device's others.
    const received = new Date().toISOString();
    const peer = identify(call);
    who(peer);
    const timing: HeartbeatTiming = { answer: 'database', installedChanged: false, seconds: 0 };
    const view = await heartbeatView(peer, timing);
    if (!('deviceId' in view)) return view;
    const installed = validateHeartbeat(call.request);
    if (options.heartbeatWrites) {
      // Both go into the next batch (flushed within a second). The installed set only when it
      // differs from what is stored, told by the digest on the device row (no query at all for
      // an unchanged set). Writing it changes the row: the feed drops the view.
      const digest = installedDigest(installed);
      timing.installedChanged = digest !== view.installedDigest;
      options.heartbeatWrites.record(view.deviceId, received, { set: installed, digest, storedDigest: view.installedDigest });
    } else {
      await store.recordHeartbeat(view.deviceId, installed, received);
    }
    timing.seconds = (performance.now() - started) / 1000;
    options.metrics?.heartbeat(timing);
    return { assignments: view.assignments, logRequests: view.logRequests, offboarded: false, nextHeartbeatSeconds: view.nextHeartbeatSeconds };
  });

  const ReportArtifactStatus = answered<ReportArtifactStatusRequest, ReportArtifactStatusResponse>('ReportArtifactStatus', async (call, who) => {
    const peer = identify(call);
    who(peer);
    const report = validateReport(call.request);
    // The device, the assignment and its artifact in one read (what authenticate() reads, and more).
    const found = await reportReads(() => store.getReportingDevice(peer.spiffeId, report.assignmentId));
    if (found?.device.decommissionedAt) throw new Refusal(grpc.status.PERMISSION_DENIED, DECOMMISSIONED);
    const device = found?.device;
    const assignment = found?.assignment;
    if (!device || !assignment) {
      // Same answer whether the id does not exist or belongs to another device: no probing.
      logger.warn({ device: peer.spiffeId, assignmentId: report.assignmentId }, 'status report for an assignment the device does not own');
      throw new Refusal(grpc.status.NOT_FOUND, 'no such assignment for this device');
    }
    const artifact = found.artifact;
    const receivedAt = new Date().toISOString();
    const accepted = await reportWrites.write({
      report: {
        ...report,
        deviceId: device.id,
        receivedAt,
        ...(report.state === 'HEALTHY' && artifact
          ? { installed: { name: artifact.name, kind: artifact.kind, version: artifact.version, sha256: artifact.sha256, state: 'HEALTHY' } }
          : {}),
      },
      // Every transition feeds the audit trail (spec, "Status lifecycle": the per-device states
      // "feed the audit trail"): a state other than the one stored, and every outcome. A
      // progress report (DOWNLOADING again, with more bytes) is not a transition.
      ...(TERMINAL_STATES.has(report.state) || report.state !== assignment.state
        ? {
            audit: {
              at: receivedAt,
              actor: `device:${device.spiffeId}`,
              action: `assignment.${report.state.toLowerCase()}`,
              subject: `assignment:${assignment.id}`,
              details: { artifact: artifact ? `${artifact.name}@${artifact.version}` : assignment.artifactId, reason: report.reason, sequence: report.sequence },
            },
          }
        : {}),
      call,
    });
    if (accepted === undefined) throw new Refusal(grpc.status.CANCELLED, 'the device stopped waiting before the report was stored');
    logger.info({ device: device.spiffeId, assignmentId: assignment.id, state: report.state, sequence: report.sequence, accepted }, 'artifact status reported');
    options.metrics?.report(report.state, accepted);
    // Only an outcome (healthy, failed, rolled back) can change a rollout's decision: the
    // engine treats pending and in-progress devices alike (rollouts/progress.ts).
    // The answer waits for the rollout's next step (at most one per drive interval, see
    // rollouts/drive-queue.ts): when a device's outcome is acknowledged, the rollout has
    // taken it into account (the wave it completed has started the next one).
    if (accepted && assignment.rolloutId && TERMINAL_STATES.has(report.state) && options.afterRolloutReport) {
      try {
        await options.afterRolloutReport(assignment.rolloutId);
      } catch (err) {
        logger.error({ err, rolloutId: assignment.rolloutId }, 'rollout progression after a status report failed');
      }
    }
    return { accepted };
  });

  const idleTimeoutMs = options.logUploadIdleTimeoutMs ?? DEFAULT_LOG_UPLOAD_IDLE_TIMEOUT_MS;

  /** The chunks of `call`, aborting the call when the device goes quiet mid-upload. */
  async function* chunksOf(call: grpc.ServerReadableStream<UploadLogsChunk, unknown>): AsyncGenerator<UploadLogsChunk> {
    const idle = setTimeout(() => call.destroy(new Refusal(grpc.status.DEADLINE_EXCEEDED, `log upload sent nothing for ${Math.round(idleTimeoutMs / 1000)} s`)), idleTimeoutMs);
    // A call cancelled (by the device, or by the server's shutdown after its grace period) does
    // not end its stream by itself: the loop below would wait, and the idle timer keep the
    // process alive, for up to the idle timeout after the server closed.
    const onCancelled = (): void => void call.destroy(new Refusal(grpc.status.CANCELLED, 'log upload cancelled'));
    call.once('cancelled', onCancelled);
    try {
      for await (const chunk of call as AsyncIterable<UploadLogsChunk>) {
        idle.refresh();
        yield chunk;
      }
    } finally {
      clearTimeout(idle);
      call.off('cancelled', onCancelled);
    }
  }

  const UploadLogs: grpc.handleClientStreamingCall<UploadLogsChunk, { bytesReceived: number }> = (call, callback) => {
    let caller: Caller | undefined;
    let device: DeviceRecord | undefined;
    (async () => {
      caller = await authenticate(call, 'UploadLogs');
      device = registered(caller);
      return receiveLogUpload(chunksOf(call), device, { store, logsDir: options.logsDir, logger });
    })().then(
      (response) => callback(null, response),
      (err: unknown) => {
        if (device && call.cancelled) {
          logger.info({ device: device.spiffeId }, 'log upload cancelled by the device');
          callback({ code: grpc.status.CANCELLED, details: 'cancelled' });
          return;
        }
        callback(refusalFor('UploadLogs', err, caller?.peer.spiffeId));
      },
    );
  };

  return { Register, Heartbeat, ReportArtifactStatus, UploadLogs };
}

export interface DeviceGrpcServerOptions extends DeviceServiceOptions {
  listen: string;
  /** TLS handshakes in progress past which new connections are reset at once (tls-listener.ts). */
  maxPendingHandshakes?: number;
  caPem: string;
  keyPem: string;
  certPem: string;
  /** Seals TLS session tickets (pki/session-ticket-key.ts); absent: a key of this process only. */
  sessionTicketKey?: Buffer;
}

/** What startDeviceGrpcServer started: shut it down with tryShutdown (drain) or forceShutdown. */
export interface DeviceGrpcServer {
  port: number;
  /** Stops accepting connections, lets calls in flight finish, then calls back. */
  tryShutdown(callback: () => void): void;
  /** Stops accepting and cancels every call in flight. */
  forceShutdown(): void;
}

/**
 * Binds the device API with client-certificate verification against the device CA. TLS ends
 * in tls-listener.ts, which hands grpc-js verified connections (identity read once each).
 */
export async function startDeviceGrpcServer(options: DeviceGrpcServerOptions): Promise<DeviceGrpcServer> {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_DEVICE_MESSAGE_BYTES,
    'grpc.max_send_message_length': 4 * MAX_DEVICE_MESSAGE_BYTES,
    // Channelz (call tracing for a debugging service we do not expose) costs CPU on every call.
    'grpc.enable_channelz': 0,
  });
  server.addService(loadDeviceService().service, createDeviceServiceHandlers(options));
  const listener = await listenDeviceTls(server, {
    listen: parseListenAddress(options.listen, '--grpc-listen'),
    caPem: options.caPem,
    keyPem: options.keyPem,
    certPem: options.certPem,
    ...(options.sessionTicketKey ? { sessionTicketKey: options.sessionTicketKey } : {}),
    ...(options.metrics?.handshake ? { onHandshake: (resumed: boolean) => options.metrics?.handshake?.(resumed) } : {}),
    ...(options.maxPendingHandshakes !== undefined ? { maxPendingHandshakes: options.maxPendingHandshakes } : {}),
    ...(options.metrics?.connectionShed ? { onShed: () => options.metrics?.connectionShed?.() } : {}),
  });
  options.metrics?.attachHandshakes?.(() => listener.pendingHandshakes());
  options.metrics?.attachConnections?.(() => listener.openConnections());
  return {
    port: listener.port,
    tryShutdown(callback) {
      // The GOAWAY on open connections leaves in this tick, before a call that arrives right
      // after the signal is read (drain-in-flight.test.ts); grpc-js is shut down once every
      // connection has ended, with nothing left for it to cut (see DeviceTlsListener.drain).
      void listener.drain().then(() => server.tryShutdown(() => callback()));
    },
    forceShutdown() {
      void listener.close();
      server.forceShutdown();
      listener.destroyConnections();
    },
  };
}
