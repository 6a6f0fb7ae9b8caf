// Delivers the outbox in sequence order. A report leaves the outbox only after the server
// acknowledged it (accepted, or recognised as a duplicate), so delivery is at-least-once and
// the server's sequence check makes it exactly-once in effect.
//
// The next report goes out as soon as the previous one is acknowledged; dropping the
// acknowledged one from the durable outbox is a state write that runs meanwhile (and shares
// its write with whatever else is pending). A crash before that write is durable only means
// the report is sent again, which the server recognises as a duplicate.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { AgentStateStore } from '../state/agent-state.js';
import type { DeviceClient } from './device-client.js';
import { REPORT_RETRY_BACKOFF, retryDelayMs } from './retry-backoff.js';

export class StatusReporter {
  readonly #state: AgentStateStore;
  readonly #client: () => DeviceClient;
  readonly #log: Logger;
  #flushing: Promise<void> | undefined;
  #again = false;
  #retryTimer: NodeJS.Timeout | undefined;
  /** Consecutive failed deliveries: the retry delay's window (retry-backoff.ts). */
  #failures = 0;
  #stopped = false;
  /** Acknowledged sequences whose removal from the outbox is not durable yet. */
  readonly #acked = new Set<number>();

  /** `client` is a getter: the channel is replaced when the certificate is renewed. */
  constructor(state: AgentStateStore, client: () => DeviceClient, log: Logger) {
    this.#state = state;
    this.#client = client;
    this.#log = log;
  }

  /** Starts a flush, or asks the running one to go round again. */
  wake(): void {
    if (this.#stopped) return;
    if (this.#flushing) {
      this.#again = true;
      return;
    }
    this.#flushing = this.#flush().finally(() => {
      this.#flushing = undefined;
      if (this.#again) {
        this.#again = false;
        this.wake();
      }
    });
  }

  /** Drops an acknowledged (or refused) report from the outbox without waiting for the write. */
  #drop(sequence: number): void {
    this.#acked.add(sequence);
    this.#state
      .update((draft) => {
        draft.outbox = draft.outbox.filter((r) => r.sequence !== sequence);
      })
      .catch((err: unknown) => this.#log.error({ err: (err as Error).message, sequence }, 'could not drop a delivered report; it will be sent again'))
      .finally(() => {
        this.#acked.delete(sequence);
        this.wake();
      });
  }

  async #flush(): Promise<void> {
    while (!this.#stopped) {
      const next = this.#state.current.outbox.find((r) => !this.#acked.has(r.sequence));
      if (!next) return;
      try {
        const res = await this.#client().reportArtifactStatus(next);
        if (!res.accepted) this.#log.debug({ sequence: next.sequence }, 'server already had this report');
        this.#drop(next.sequence);
        this.#failures = 0;
      } catch (err) {
        const code = (err as grpc.ServiceError).code;
        if (code === grpc.status.NOT_FOUND || code === grpc.status.INVALID_ARGUMENT) {
          // The server will never take this report (an assignment it no longer knows, say):
          // drop it rather than block every later report behind it.
          this.#log.warn({ sequence: next.sequence, err: (err as Error).message }, 'server refused report; dropping it');
          this.#drop(next.sequence);
          continue;
        }
        this.#log.warn({ err: (err as Error).message, pending: this.#state.current.outbox.length }, 'report delivery failed; will retry');
        clearTimeout(this.#retryTimer);
        this.#failures += 1;
        this.#retryTimer = setTimeout(() => this.wake(), retryDelayMs(this.#failures, REPORT_RETRY_BACKOFF));
        return;
      }
    }
  }

  /** Waits until the outbox is empty or `timeoutMs` passes; returns whether it emptied. */
  async drain(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.#state.current.outbox.length > 0 && Date.now() < until) {
      this.wake();
      await new Promise((r) => setTimeout(r, 100));
    }
    return this.#state.current.outbox.length === 0;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
  }
}
