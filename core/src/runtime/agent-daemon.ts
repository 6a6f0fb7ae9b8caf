// The daemon loop: register, then heartbeat and converge until stopped or offboarded.
// Network failures never touch the workloads: the agent keeps what is installed, queues its
// reports and retries with backoff.
import * as grpc from '@grpc/grpc-js';
import type { Agent } from '../agent.js';
import { assignmentFromMessage } from '../assignment.js';
import type { HardwareProfile, InstalledArtifact } from '../contract/messages.js';
import { abortableSleep } from '../kit/sleep.js';
import { Reconciler } from '../reconciler.js';
import { recoverInterrupted } from '../recovery.js';
import type { DeviceClient } from './device-client.js';
import { StatusReporter } from './status-reporter.js';

export interface AgentDaemonOptions {
  agent: Agent;
  client: DeviceClient;
  hardware: HardwareProfile;
  agentVersion: string;
  tags: Record<string, string>;
}

export type DaemonExit = 'stopped' | 'offboarded';

function backoff(attempt: number): number {
  const base = Math.min(1000 * 2 ** attempt, 60_000);
  return base / 2 + Math.random() * (base / 2);
}

export class AgentDaemon {
  readonly #options: AgentDaemonOptions;
  readonly reconciler: Reconciler;
  readonly reporter: StatusReporter;
  #intervalSeconds = 30;

  constructor(options: AgentDaemonOptions) {
    this.#options = options;
    this.reconciler = new Reconciler(options.agent);
    this.reporter = new StatusReporter(options.agent.state, options.client, options.agent.log);
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
    const { agent, client, hardware, agentVersion, tags } = this.#options;
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await client.register({ hardware, agentVersion, tags, capabilities: agent.capabilities() });
        this.#intervalSeconds = res.heartbeatIntervalSeconds || this.#intervalSeconds;
        agent.log.info({ device: res.deviceName, fleet: res.fleet, heartbeatSeconds: this.#intervalSeconds }, 'registered');
        return;
      } catch (err) {
        if ((err as grpc.ServiceError).code === grpc.status.PERMISSION_DENIED) throw err;
        agent.log.warn({ err: (err as Error).message }, 'register failed; retrying');
        await abortableSleep(backoff(attempt), signal);
      }
    }
  }

  /** Runs until `signal` aborts (returns "stopped") or the server says the device is offboarded. */
  async run(signal: AbortSignal): Promise<DaemonExit> {
    const { agent, client } = this.#options;
    await recoverInterrupted(agent);
    this.reporter.wake();
    try {
      await this.#register(signal);
      let failures = 0;
      while (!signal.aborted) {
        let wait = this.#intervalSeconds * 1000;
        try {
          const res = await client.heartbeat({ installed: this.#installed() });
          failures = 0;
          if (res.offboarded) {
            agent.log.warn('server says this device is offboarded');
            return 'offboarded';
          }
          if (res.nextHeartbeatSeconds > 0) this.#intervalSeconds = res.nextHeartbeatSeconds;
          wait = this.#intervalSeconds * 1000;
          await this.reconciler.reconcile(res.assignments.map(assignmentFromMessage));
          this.reporter.wake();
        } catch (err) {
          const code = (err as grpc.ServiceError).code;
          if (code === grpc.status.FAILED_PRECONDITION) {
            await this.#register(signal);
            continue;
          }
          if (code === grpc.status.PERMISSION_DENIED) throw err;
          failures += 1;
          wait = Math.min(backoff(failures), wait);
          agent.log.warn({ err: (err as Error).message, failures }, 'heartbeat failed');
        }
        await abortableSleep(wait, signal);
      }
    } catch (err) {
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
