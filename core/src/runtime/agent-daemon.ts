// The daemon loop: register, then heartbeat and converge until stopped or offboarded.
// Network failures never touch the workloads: the agent keeps what is installed, queues its
// reports and retries with backoff.
import * as grpc from '@grpc/grpc-js';
import type { Agent } from '../agent.js';
import { assignmentFromMessage, type Assignment } from '../assignment.js';
import type { HardwareProfile, InstalledArtifact } from '../contract/messages.js';
import { abortableSleep } from '../kit/sleep.js';
import { Reconciler } from '../reconciler.js';
import { recoverInterrupted } from '../recovery.js';
import type { DeviceClient } from './device-client.js';
import { CALL_RETRY_BACKOFF, retryDelayMs } from './retry-backoff.js';
import { StatusReporter } from './status-reporter.js';
import type { DeviceTlsMaterial } from '../transport/tls.js';
import type { LogUploader } from '../logs/log-uploader.js';

export interface AgentDaemonOptions {
  agent: Agent;
  client: DeviceClient;
  /** Renews the certificate when due; returns the new material when it did. */
  renewer?: { renewIfDue(): Promise<DeviceTlsMaterial | undefined> };
  /** Builds a channel (and anything else that holds credentials) for new material. */
  reconnect?: (tls: DeviceTlsMaterial) => DeviceClient;
  logUploader?: LogUploader;
  hardware: HardwareProfile;
  agentVersion: string;
  tags: Record<string, string>;
  /** Called after each heartbeat the server answered (a self-update trial confirms on the first). */
  onHeartbeatAnswered?: () => Promise<void>;
  /** Assignments no pipeline may start for while this returns true (a self-update on trial). */
  isHeld?: (assignment: Assignment) => boolean;
}

export type DaemonExit = 'stopped' | 'offboarded';

/**
 * The heartbeat interval the agent accepts from the server, in seconds. The server chooses
 * within these bounds; outside them the agent clamps (a buggy or hostile server must not make
 * it heartbeat in a tight loop, nor go silent for weeks). Node's timers also overflow above
 * 2^31-1 ms (24.8 days) and then fire after 1 ms.
 */
export const HEARTBEAT_SECONDS_MIN = 1;
export const HEARTBEAT_SECONDS_MAX = 3600;

/** `requested` (0: the server did not say) clamped to the bounds; 0 keeps `current`. */
export function clampHeartbeatSeconds(requested: number, current: number): number {
  if (!Number.isFinite(requested) || requested <= 0) return current;
  return Math.min(Math.max(requested, HEARTBEAT_SECONDS_MIN), HEARTBEAT_SECONDS_MAX);
}

export class AgentDaemon {
  readonly #options: AgentDaemonOptions;
  readonly reconciler: Reconciler;
  readonly reporter: StatusReporter;
  #intervalSeconds = 30;
  #client: DeviceClient;

  constructor(options: AgentDaemonOptions) {
    this.#options = options;
    this.#client = options.client;
    this.reconciler = new Reconciler(options.agent, options.isHeld ? { isHeld: options.isHeld } : {});
    this.reporter = new StatusReporter(options.agent.state, () => this.#client, options.agent.log);
    options.agent.hooks.transition.tap('TransitionLog', (e) => {
      const level = e.state === 'FAILED' || e.state === 'ROLLED_BACK' ? 'warn' : 'info';
      if (e.state === 'DOWNLOADING' && e.bytesDone > 0) return;
      options.agent.log[level](
        { assignmentId: e.assignment.assignmentId, artifact: e.assignment.name, version: e.assignment.version, state: e.state, reason: e.reason },
        'assignment state',
      );
    });
    options.agent.hooks.transition.tap('StatusReporter', () => this.reporter.wake());
  }

  #installed(): InstalledArtifact[] {
    return Object.values(this.#options.agent.state.current.installed).map((r) => ({
      name: r.name,
      kind: r.kind,
      version: r.version,
      sha256: r.sha256,
      state: 'HEALTHY' as const,
    }));
  }

  async #register(signal: AbortSignal): Promise<void> {
    const { agent, hardware, agentVersion, tags } = this.#options;
    for (let failures = 1; ; failures++) {
      try {
        const res = await this.#client.register({ hardware, agentVersion, tags, capabilities: agent.capabilities() });
        this.#setInterval(res.heartbeatIntervalSeconds);
        agent.log.info({ device: res.deviceName, fleet: res.fleet, heartbeatSeconds: this.#intervalSeconds }, 'registered');
        return;
      } catch (err) {
        if (isDecommissioned(err)) throw new OffboardedSignal();
        if ((err as grpc.ServiceError).code === grpc.status.PERMISSION_DENIED) throw err;
        const retryInMs = retryDelayMs(failures, CALL_RETRY_BACKOFF);
        agent.log.warn({ err: (err as Error).message, failures, retryInMs }, 'register failed; retrying');
        await this.#client.sleepUnlessReconnected(retryInMs, signal);
      }
    }
  }

  #setInterval(requested: number): void {
    const next = clampHeartbeatSeconds(Number(requested), this.#intervalSeconds);
    if (requested > 0 && next !== Number(requested)) {
      this.#options.agent.log.warn({ requested, used: next }, `heartbeat interval outside ${HEARTBEAT_SECONDS_MIN}-${HEARTBEAT_SECONDS_MAX} s; clamped`);
    }
    this.#intervalSeconds = next;
  }

  /** Swaps to renewed credentials: a new channel; the old one closes. */
  async #renewIfDue(): Promise<void> {
    const { renewer, reconnect } = this.#options;
    if (!renewer || !reconnect) return;
    const material = await renewer.renewIfDue();
    if (!material) return;
    const old = this.#client;
    this.#client = reconnect(material);
    old.close();
  }

  /** Runs until `signal` aborts (returns "stopped") or the server says the device is offboarded. */
  async run(signal: AbortSignal): Promise<DaemonExit> {
    const { agent } = this.#options;
    await recoverInterrupted(agent);
    this.reporter.wake();
    try {
      await this.#renewIfDue();
      await this.#register(signal);
      let failures = 0;
      while (!signal.aborted) {
        let wait = this.#intervalSeconds * 1000;
        try {
          const startedAt = Date.now();
          const res = await this.#client.heartbeat({ installed: this.#installed() });
          // A heartbeat that waited for the channel to reconnect answers late but does not fail.
          agent.log.debug({ tookMs: Date.now() - startedAt }, 'heartbeat answered');
          if (failures > 0) agent.log.info({ failures }, 'heartbeat back');
          failures = 0;
          await this.#options.onHeartbeatAnswered?.();
          if (res.offboarded) {
            agent.log.warn('server says this device is offboarded');
            return 'offboarded';
          }
          this.#setInterval(res.nextHeartbeatSeconds);
          wait = this.#intervalSeconds * 1000;
          await this.reconciler.reconcile(res.assignments.map(assignmentFromMessage));
          this.reporter.wake();
          // Fire-and-forget: uploads must not hold up heartbeats, and handle() never rejects.
          if (res.logRequests.length > 0) void this.#options.logUploader?.handle(res.logRequests, this.#client);
          await this.#renewIfDue();
        } catch (err) {
          if (err instanceof OffboardedSignal || isDecommissioned(err)) {
            agent.log.warn('server refuses this identity as decommissioned');
            return 'offboarded';
          }
          const code = (err as grpc.ServiceError).code;
          if (code === grpc.status.FAILED_PRECONDITION) {
            await this.#register(signal);
            continue;
          }
          if (code === grpc.status.PERMISSION_DENIED) throw err;
          if (err instanceof Error && (err as { code?: unknown }).code === 'MESH_ERR_IDENTITY_MISSING') throw err;
          failures += 1;
          // Never later than the next regular heartbeat would have been (retry-backoff.ts).
          wait = retryDelayMs(failures, { ...CALL_RETRY_BACKOFF, capMs: Math.min(CALL_RETRY_BACKOFF.capMs, wait) });
          agent.log.warn({ err: (err as Error).message, failures, retryInMs: wait }, 'heartbeat failed');
          // A failure is a deadline the channel could not connect within (calls wait for
          // readiness, device-client.ts) or an answer from the server; the retry waits no
          // longer than until the channel has reconnected on its own.
          await this.#client.sleepUnlessReconnected(wait, signal);
          continue;
        }
        await abortableSleep(wait, signal);
      }
    } catch (err) {
      if (err instanceof OffboardedSignal) return 'offboarded';
      if (!signal.aborted) throw err;
    } finally {
      this.reconciler.abort('agent stopping');
      await this.reconciler.idle();
      await this.reporter.drain(2000);
      this.reporter.stop();
    }
    return 'stopped';
  }
}

class OffboardedSignal extends Error {}

/** The server refuses a decommissioned identity with PERMISSION_DENIED saying so. */
function isDecommissioned(err: unknown): boolean {
  const e = err as grpc.ServiceError;
  return e?.code === grpc.status.PERMISSION_DENIED && /decommission/i.test(e.details ?? e.message ?? '');
}
