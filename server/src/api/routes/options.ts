import type { MeshanicsContext } from '../../config/data-dir.js';
import type { EventStreams } from '../event-streams.js';
import type { RolloutStreamStats } from '../rollout-snapshots.js';
import type { StreamTickets } from '../stream-tickets.js';

/** What every route module gets from buildApi. */
export interface ApiRouteOptions {
  ctx: MeshanicsContext;
  /** The heartbeat interval of devices without their own (online = within three of them). */
  heartbeatIntervalSeconds: number;
  /** The largest artifact upload accepted, in bytes. */
  maxArtifactBytes: number;
  /** How often the rollout event stream re-reads the rollout. */
  rolloutEventsIntervalMs: number;
  /** Every open event stream, by key: caps, lifetimes, revocation. */
  streams: EventStreams;
  tickets: StreamTickets;
  metrics?: ApiMetrics;
  isAccepting?: () => boolean;
}

/** The server's metrics as the API sees them: served at /metrics, and fed what only the routes know. */
export interface ApiMetrics {
  text(): Promise<{ contentType: string; body: string }>;
  /** What the rollout event streams hold, read when scraped. */
  attachRolloutStreams?(stats: () => RolloutStreamStats): void;
}
