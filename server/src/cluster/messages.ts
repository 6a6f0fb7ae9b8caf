// What the primary and its workers say to each other over the cluster's IPC channel (JSON).
import type { MetricObjectWithValues, MetricValue } from 'prom-client';

/** The environment variable that tells a forked worker its slot (1..N); a replacement takes its predecessor's. */
export const WORKER_SLOT_ENV = 'MESHANICS_WORKER_SLOT';

/** One worker's registry as prom-client's getMetricsAsJSON gives it, the form AggregatorRegistry.aggregate merges. */
export type WorkerMetrics = Array<MetricObjectWithValues<MetricValue<string>>>;

export interface WorkerAddresses {
  grpc: string;
  artifacts: string;
  enroll: string;
  api?: string;
}

/** Worker to primary. */
export type WorkerMessage =
  | { type: 'meshanics:listening'; addresses: WorkerAddresses }
  /** The worker is draining on a signal of its own (not the primary's request): do not replace it. */
  | { type: 'meshanics:stopping' }
  /** A /metrics request reached this worker: the primary answers for every worker. */
  | { type: 'meshanics:scrape'; id: number }
  /** This worker's own metrics, for the primary's answer to a scrape. */
  | { type: 'meshanics:collected'; id: number; metrics: WorkerMetrics; error?: string };

/** Primary to worker. */
export type PrimaryMessage =
  | { type: 'meshanics:shutdown' }
  | { type: 'meshanics:collect'; id: number }
  | { type: 'meshanics:scraped'; id: number; contentType: string; body: string }
  | { type: 'meshanics:scrape-failed'; id: number; error: string };

function hasType(message: unknown): message is { type: unknown } {
  return typeof message === 'object' && message !== null && 'type' in message;
}

export function isWorkerMessage(message: unknown): message is WorkerMessage {
  return hasType(message) && typeof message.type === 'string' && ['meshanics:listening', 'meshanics:stopping', 'meshanics:scrape', 'meshanics:collected'].includes(message.type);
}

export function isPrimaryMessage(message: unknown): message is PrimaryMessage {
  return hasType(message) && typeof message.type === 'string' && ['meshanics:shutdown', 'meshanics:collect', 'meshanics:scraped', 'meshanics:scrape-failed'].includes(message.type);
}
