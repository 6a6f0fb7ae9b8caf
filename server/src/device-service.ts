// meshanics.device.v1.DeviceService: the only surface agents talk to, served over mTLS.
// The caller is whoever its verified client certificate says; no request field can name a
// device (spec: "Identity comes from the certificate, never the request").
import * as grpc from '@grpc/grpc-js';
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
import { InvalidRequest, validateHeartbeat, validateRegister, validateReport } from './device-request-validation.js';
import { MeshError } from './errors.js';
import type { Logger } from './log.js';
import { deviceFromCertificate, type PeerDevice } from './pki/peer-identity.js';
import type { DeviceRecord, DesiredArtifact, Store } from './store/index.js';

export const MAX_DEVICE_MESSAGE_BYTES = 1024 * 1024;

export interface DeviceServiceOptions {
  store: Store;
  trustDomain: string;
  logger: Logger;
  /** Default heartbeat interval for devices without their own. */
  heartbeatIntervalSeconds: number;
}

/** A refusal with a gRPC status; its message goes to the device, so it names no other device. */
class Refusal extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

interface Caller {
  peer: PeerDevice;
  /** Undefined until the device's row exists (issue-cert or first Register creates it). */
  device: DeviceRecord | undefined;
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

export function createDeviceServiceHandlers(options: DeviceServiceOptions): grpc.UntypedServiceImplementation {
  const { store, trustDomain, logger } = options;

  function authenticate(call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>): Caller {
    const peer = deviceFromCertificate(call.getAuthContext().sslPeerCertificate?.raw, trustDomain);
    if (!peer) throw new Refusal(grpc.status.UNAUTHENTICATED, 'client certificate carries no device identity of this trust domain');
    const device = store.getDeviceBySpiffeId(peer.spiffeId);
    if (device?.decommissionedAt) throw new Refusal(grpc.status.PERMISSION_DENIED, 'device is decommissioned');
    return { peer, device };
  }

  function registered(caller: Caller): DeviceRecord {
    if (!caller.device?.registeredAt) throw new Refusal(grpc.status.FAILED_PRECONDITION, 'device is not registered: register first');
    return caller.device;
  }

  function heartbeatSeconds(device: DeviceRecord | undefined): number {
    return device?.heartbeatIntervalSeconds ?? options.heartbeatIntervalSeconds;
  }

  function unary<Req, Res>(method: string, handle: (caller: Caller, request: Req) => Res): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      let caller: Caller | undefined;
      try {
        caller = authenticate(call);
        callback(null, handle(caller, call.request));
      } catch (err) {
        callback(refusalFor(method, err, caller?.peer.spiffeId));
      }
    };
  }

  function refusalFor(method: string, err: unknown, device: string | undefined): Partial<grpc.StatusObject> {
    if (err instanceof Refusal) {
      logger.warn({ method, device, code: grpc.status[err.code], reason: err.message }, 'device call refused');
      return { code: err.code, details: err.message };
    }
    if (err instanceof InvalidRequest) {
      logger.warn({ method, device, reason: err.message }, 'invalid device request');
      return { code: grpc.status.INVALID_ARGUMENT, details: err.message };
    }
    // Internal details stay in the server log.
    logger.error({ method, device, err }, 'device call failed');
    return { code: grpc.status.INTERNAL, details: 'internal error' };
  }

  const Register = unary<RegisterRequest, RegisterResponse>('Register', (caller, request) => {
    const profile = validateRegister(request);
    const { peer } = caller;
    const now = new Date().toISOString();
    const device = store.withWriteLock(() => {
      const record = store.registerDevice({ spiffeId: peer.spiffeId, fleet: peer.fleet, name: peer.name, profile, now });
      if (!caller.device?.registeredAt) {
        store.appendAudit({ at: now, actor: `device:${peer.spiffeId}`, action: 'device.registered', subject: `device:${peer.spiffeId}`, details: { agentVersion: profile.agentVersion } });
      }
      return record;
    });
    logger.info({ device: peer.spiffeId, agentVersion: profile.agentVersion }, 'device registered');
    return { deviceName: device.name, fleet: device.fleet, heartbeatIntervalSeconds: heartbeatSeconds(device) };
  });

  const Heartbeat = unary<HeartbeatRequest, HeartbeatResponse>('Heartbeat', (caller, request) => {
    const device = registered(caller);
    const installed = validateHeartbeat(request);
    store.recordHeartbeat(device.id, installed, new Date().toISOString());
    return {
      assignments: store.listDesiredArtifacts(device.id).map(toAssignmentMessage),
      logRequests: [],
      // Decommissioned devices are refused above; the flag is for the offboarding issue.
      offboarded: device.decommissionedAt !== null,
      nextHeartbeatSeconds: heartbeatSeconds(device),
    };
  });

  const ReportArtifactStatus = unary<ReportArtifactStatusRequest, ReportArtifactStatusResponse>(
    'ReportArtifactStatus',
    (caller, request) => {
      const report = validateReport(request);
      const device = caller.device;
      const assignment = report.assignmentId ? store.getAssignment(report.assignmentId) : undefined;
      if (!device || !assignment || assignment.deviceId !== device.id) {
        // Same answer whether the id does not exist or belongs to another device: no probing.
        logger.warn({ device: caller.peer.spiffeId, assignmentId: report.assignmentId }, 'status report for an assignment the device does not own');
        throw new Refusal(grpc.status.NOT_FOUND, 'no such assignment for this device');
      }
      const artifact = store.getArtifactById(assignment.artifactId);
      const receivedAt = new Date().toISOString();
      const accepted = store.withWriteLock(() => {
        const stored = store.recordStatusReport({
          ...report,
          deviceId: device.id,
          receivedAt,
          ...(report.state === 'HEALTHY' && artifact
            ? { installed: { name: artifact.name, kind: artifact.kind, version: artifact.version, sha256: artifact.sha256, state: 'HEALTHY' } }
            : {}),
        });
        if (stored && TERMINAL_STATES.has(report.state)) {
          store.appendAudit({
            at: receivedAt,
            actor: `device:${device.spiffeId}`,
            action: `assignment.${report.state.toLowerCase()}`,
            subject: `assignment:${assignment.id}`,
            details: { artifact: artifact ? `${artifact.name}@${artifact.version}` : assignment.artifactId, reason: report.reason, sequence: report.sequence },
          });
        }
        return stored;
      });
      logger.info({ device: device.spiffeId, assignmentId: assignment.id, state: report.state, sequence: report.sequence, accepted }, 'artifact status reported');
      return { accepted };
    },
  );

  const UploadLogs: grpc.handleClientStreamingCall<unknown, unknown> = (call, callback) => {
    let caller: Caller | undefined;
    try {
      caller = authenticate(call);
      throw new Refusal(grpc.status.UNIMPLEMENTED, 'log upload is not implemented yet');
    } catch (err) {
      callback(refusalFor('UploadLogs', err, caller?.peer.spiffeId));
    }
  };

  return { Register, Heartbeat, ReportArtifactStatus, UploadLogs } as grpc.UntypedServiceImplementation;
}

export interface DeviceGrpcServerOptions extends DeviceServiceOptions {
  listen: string;
  caPem: string;
  keyPem: string;
  certPem: string;
}

/** Binds the device API with client-certificate verification against the device CA. */
export async function startDeviceGrpcServer(options: DeviceGrpcServerOptions): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_DEVICE_MESSAGE_BYTES,
    'grpc.max_send_message_length': 4 * MAX_DEVICE_MESSAGE_BYTES,
  });
  server.addService(loadDeviceService().service, createDeviceServiceHandlers(options));
  const credentials = grpc.ServerCredentials.createSsl(
    Buffer.from(options.caPem),
    [{ private_key: Buffer.from(options.keyPem), cert_chain: Buffer.from(options.certPem) }],
    true,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(options.listen, credentials, (err, boundPort) =>
      err
        ? reject(new MeshError('MESH_ERR_LISTEN_FAILED', `device API cannot listen on ${options.listen}: ${err.message}`, { cause: err }))
        : resolve(boundPort),
    ),
  );
  return { server, port };
}
