// Prometheus metrics of one server process (prom-client), served at /metrics on the REST
// port. A registry per server, not prom-client's global one: tests run several servers in one
// process. Rollout states are read from the database when scraped, so every replica reports
// the fleet-wide numbers. Under `serve --workers N` a scrape reaching any worker answers for
// all of them (cluster/primary.ts gathers the workers' registries): every series of a worker
// carries its `worker` label, so a replaced worker's counters start over in its own series
// (a counter reset, which rate() handles) instead of pulling a sum backwards; the fleet-wide
// gauges (aggregator 'first') are given once, without the label.
import client from 'prom-client';
import type { DeviceServiceMetrics, HeartbeatTiming } from '../device-api/device-service.js';
import type { HeartbeatCache } from '../device-api/heartbeat-cache.js';
import type { RolloutStreamStats } from '../api/rollout-snapshots.js';
import type { ApiMetrics } from '../api/routes/options.js';
import type { QueryObserver, Store } from '../store/index.js';

export class ServerMetrics implements DeviceServiceMetrics, ApiMetrics {
  readonly registry = new client.Registry();
  private readonly heartbeats: client.Counter;
  private readonly reports: client.Counter<'state' | 'accepted'>;
  private readonly grpcErrors: client.Counter<'method' | 'code'>;
  private readonly dbLatency: client.Histogram<'operation'>;
  private readonly heartbeatLatency: client.Histogram<'answer' | 'installed'>;
  private readonly auditEvents: client.Counter;
  private readonly auditAppend: client.Histogram;
  private readonly shed: client.Counter;
  private readonly handshakes: client.Counter<'resumed'>;
  private pendingHandshakes: (() => number) | undefined;
  private rolloutStreams: (() => RolloutStreamStats) | undefined;
  private openConnections: (() => number) | undefined;
  private store: Store | undefined;
  private heartbeatCache: HeartbeatCache | undefined;
  private textSource: (() => Promise<{ contentType: string; body: string }>) | undefined;

  /** `worker`: this process's worker slot under `serve --workers` (the `worker` label of its series). */
  constructor(options: { worker?: number } = {}) {
    client.collectDefaultMetrics({ register: this.registry, prefix: 'meshanics_' });
    this.heartbeats = new client.Counter({ name: 'meshanics_heartbeats_total', help: 'Device heartbeats answered', registers: [this.registry] });
    this.reports = new client.Counter({
      name: 'meshanics_status_reports_total',
      help: 'Device status reports, by reported state and whether they were stored (a stale sequence is not)',
      labelNames: ['state', 'accepted'],
      registers: [this.registry],
    });
    this.grpcErrors = new client.Counter({
      name: 'meshanics_grpc_errors_total',
      help: 'Device API calls that ended with a non-OK gRPC status, by method and code',
      labelNames: ['method', 'code'],
      registers: [this.registry],
    });
    this.dbLatency = new client.Histogram({
      name: 'meshanics_database_seconds',
      help: 'Database latency: each statement (query) and each write transaction, waiting for its turn and the write lock included (transaction)',
      labelNames: ['operation'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    this.heartbeatLatency = new client.Histogram({
      name: 'meshanics_heartbeat_seconds',
      help: 'Time the server spent on a heartbeat, from its handler starting to its answer, by where the answer came from (memory, database) and whether the heartbeat listed an installed set that differs from the stored one (changed: queued for the next batch; unchanged)',
      labelNames: ['answer', 'installed'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    // Status reports' transitions are appended to the audit chain in the reports' batches:
    // events per batch is events_total / append_seconds_count.
    this.auditEvents = new client.Counter({
      name: 'meshanics_audit_report_events_total',
      help: 'Audit events of device state transitions appended with their status reports',
      registers: [this.registry],
    });
    this.auditAppend = new client.Histogram({
      name: 'meshanics_audit_report_append_seconds',
      help: "Time to append one batch of status reports' audit events to the hash chain (inside the reports' write transaction)",
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers: [this.registry],
    });
    this.shed = new client.Counter({
      name: 'meshanics_device_connections_shed_total',
      help: 'Device API connections reset at once, before their TLS handshake, because --max-pending-handshakes handshakes were in progress',
      registers: [this.registry],
    });
    this.handshakes = new client.Counter({
      name: 'meshanics_device_tls_handshakes_total',
      help: 'Device API TLS handshakes completed, by whether they resumed a session from a ticket (resumed="true") or were full',
      labelNames: ['resumed'],
      registers: [this.registry],
    });
    const self = this;
    new client.Gauge({
      name: 'meshanics_device_tls_handshakes_pending',
      help: 'Device API connections accepted whose TLS handshake has not finished yet',
      registers: [this.registry],
      collect() {
        if (self.pendingHandshakes) this.set(self.pendingHandshakes());
      },
    });
    if (options.worker !== undefined) this.registry.setDefaultLabels({ worker: String(options.worker) });
    new client.Gauge({
      name: 'meshanics_device_connections',
      help: 'Device API connections open (TLS handshake done) on this process',
      registers: [this.registry],
      collect() {
        if (self.openConnections) this.set(self.openConnections());
      },
    });
    // A console tab watching a rollout is one stream; the snapshots its streams share are held
    // while any is open (a 36,000-device detail is 9 MB of JSON).
    const streamGauges: Array<[string, string, keyof RolloutStreamStats]> = [
      ['meshanics_rollout_event_streams', 'Rollout event streams open on this process (consoles and CLI watches)', 'streams'],
      ['meshanics_rollout_snapshots', 'Rollout snapshots this process holds for its event streams (one per rollout and view watched)', 'snapshots'],
      ['meshanics_rollout_snapshot_chars', 'Length of the JSON of the rollout snapshots this process holds, in UTF-16 code units (about bytes for this ASCII JSON)', 'chars'],
    ];
    for (const [name, help, field] of streamGauges) {
      new client.Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          if (self.rolloutStreams) this.set(self.rolloutStreams()[field]);
        },
      });
    }
    new client.Gauge({
      name: 'meshanics_rollouts',
      help: 'Rollouts by status (read from the database when scraped: fleet-wide)',
      labelNames: ['status'],
      aggregator: 'first',
      registers: [this.registry],
      async collect() {
        if (!self.store) return;
        this.reset();
        const counts = await self.store.rollouts.countByStatus();
        for (const status of ['running', 'waiting_approval', 'halted', 'completed', 'aborted']) this.set({ status }, counts[status] ?? 0);
      },
    });
    new client.Counter({
      name: 'meshanics_heartbeat_cache_lookups_total',
      help: 'Heartbeat answers looked up in memory: hit, miss (read from the database), bypassed (database notifications not caught up)',
      labelNames: ['result'],
      registers: [this.registry],
      collect() {
        if (!self.heartbeatCache) return;
        const { hits, misses, bypassed } = self.heartbeatCache.stats();
        this.reset();
        this.inc({ result: 'hit' }, hits);
        this.inc({ result: 'miss' }, misses);
        this.inc({ result: 'bypassed' }, bypassed);
      },
    });
    new client.Gauge({
      name: 'meshanics_heartbeat_cache_entries',
      help: 'Heartbeat answers held in memory',
      registers: [this.registry],
      collect() {
        if (self.heartbeatCache) this.set(self.heartbeatCache.stats().entries);
      },
    });
    new client.Gauge({
      name: 'meshanics_devices',
      help: 'Devices known to the fleet database',
      aggregator: 'first',
      registers: [this.registry],
      async collect() {
        if (self.store) this.set(await self.store.countDevices());
      },
    });
  }

  /** The heartbeat cache whose lookups are counted (read when scraped). */
  attachHeartbeatCache(cache: HeartbeatCache): void {
    this.heartbeatCache = cache;
  }

  /** The store the scrape-time gauges read. */
  attach(store: Store): void {
    this.store = store;
  }

  readonly observeDatabase: QueryObserver = (operation, seconds) => this.dbLatency.observe({ operation }, seconds);

  heartbeat(timing: HeartbeatTiming): void {
    this.heartbeats.inc();
    this.heartbeatLatency.observe({ answer: timing.answer, installed: timing.installedChanged ? 'changed' : 'unchanged' }, timing.seconds);
  }

  report(state: string, accepted: boolean): void {
    this.reports.inc({ state, accepted: String(accepted) });
  }

  auditBatch(events: number, seconds: number): void {
    this.auditEvents.inc(events);
    this.auditAppend.observe(seconds);
  }

  connectionShed(): void {
    this.shed.inc();
  }

  handshake(resumed: boolean): void {
    this.handshakes.inc({ resumed: String(resumed) });
  }

  attachRolloutStreams(stats: () => RolloutStreamStats): void {
    this.rolloutStreams = stats;
  }

  attachHandshakes(pending: () => number): void {
    this.pendingHandshakes = pending;
  }

  attachConnections(open: () => number): void {
    this.openConnections = open;
  }

  /** Answers scrapes from elsewhere: a worker asks the primary, which answers with every worker's series. */
  answerScrapesWith(source: () => Promise<{ contentType: string; body: string }>): void {
    this.textSource = source;
  }

  grpcError(method: string, code: string): void {
    this.grpcErrors.inc({ method, code });
  }

  async text(): Promise<{ contentType: string; body: string }> {
    if (this.textSource) return this.textSource();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
