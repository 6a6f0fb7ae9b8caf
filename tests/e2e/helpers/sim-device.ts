// A simulated device for the end-to-end rollout tests: it does what an agent tells the server
// (reports DOWNLOADING, VERIFYING, APPLYING, then HEALTHY or ROLLED_BACK, and heartbeats what
// it installed) without touching any file, so tens of them fit next to the real processes.
// How it reaches the server is the test's part: one channel (rollouts), or one that fails
// over between replicas and resends a report that got no answer (replicas).
import type { AssignmentMessage, InstalledArtifact, RegisterRequest, ReportArtifactStatusRequest } from '@meshanics/core/contract';

export interface SimTransport {
  heartbeat(installed: InstalledArtifact[]): Promise<AssignmentMessage[]>;
  reportArtifactStatus(report: ReportArtifactStatusRequest): Promise<unknown>;
  close(): void;
}

/** What a simulated device registers with: a model-artifact capability and nothing else. */
export const SIM_REGISTER_REQUEST: RegisterRequest = {
  hardware: null,
  agentVersion: 'simulated',
  tags: {},
  capabilities: [{ kind: 'ARTIFACT', name: 'model', version: '0.1.0' }],
};

type State = 'DOWNLOADING' | 'VERIFYING' | 'APPLYING' | 'HEALTHY' | 'ROLLED_BACK';

export class SimDevice {
  readonly installed: InstalledArtifact[] = [];
  readonly handled = new Set<string>();
  /** Every report the server answered, as `assignmentId#sequence`. */
  readonly answered = new Set<string>();
  outcome: 'HEALTHY' | 'ROLLED_BACK' = 'HEALTHY';
  /** Held devices neither heartbeat nor report until released. */
  held = false;
  /** Pause between two reports (keeps a rollout in flight long enough to act on it). */
  stepMs = 0;
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  constructor(
    readonly name: string,
    private readonly transport: SimTransport,
    private readonly tickMs: number,
  ) {}

  start(): void {
    this.#timer = setInterval(() => void this.tick().catch(() => undefined), this.tickMs);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.transport.close();
  }

  heartbeat(): Promise<AssignmentMessage[]> {
    return this.transport.heartbeat(this.installed);
  }

  async tick(): Promise<void> {
    if (this.held || this.#busy) return;
    this.#busy = true;
    try {
      for (const a of await this.heartbeat()) {
        if (this.handled.has(a.assignmentId)) continue;
        this.handled.add(a.assignmentId);
        await this.apply(a);
      }
    } finally {
      this.#busy = false;
    }
  }

  async report(a: AssignmentMessage, state: State, reason = ''): Promise<void> {
    const sequence = ++this.#seq;
    await this.transport.reportArtifactStatus({
      assignmentId: a.assignmentId,
      state,
      sequence,
      reason,
      bytesDone: 0,
      bytesTotal: a.expectedLength,
      deviceTime: new Date().toISOString(),
    });
    this.answered.add(`${a.assignmentId}#${sequence}`);
    if (this.stepMs > 0) await new Promise((r) => setTimeout(r, this.stepMs));
  }

  async apply(a: AssignmentMessage): Promise<void> {
    for (const s of ['DOWNLOADING', 'VERIFYING', 'APPLYING'] as const) await this.report(a, s);
    if (this.outcome === 'ROLLED_BACK') {
      await this.report(a, 'ROLLED_BACK', 'probe failed on attempt 1/1: simulated');
      return;
    }
    await this.report(a, 'HEALTHY', 'simulated probe ok');
    const record = { name: a.name, kind: a.kind, version: a.version, sha256: a.expectedSha256, state: 'HEALTHY' as const };
    const i = this.installed.findIndex((x) => x.name === a.name);
    if (i >= 0) this.installed[i] = record;
    else this.installed.push(record);
  }
}
