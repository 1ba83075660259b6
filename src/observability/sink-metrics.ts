/**
 * Prometheus metrics of the audit sinks (the followers of the chain): records delivered, failed
 * sends, records dropped, up/down, and the backlog waiting in memory. The label is the sink's name
 * from the config (`redis_stream`, `webhook:siem`), never request text.
 *
 * The metrics are built before the registry exists (the followers are built with the audit trail,
 * the registry later), so they start unregistered and register() adds them.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { FollowerMetrics } from '../audit/follower.js';

/** What the backlog gauge reads at scrape time: each follower's queue length, when it has one. */
export type BacklogSource = () => ReadonlyArray<{ readonly name: string; readonly backlog?: number }>;

export class SinkMetrics implements FollowerMetrics {
  private readonly deliveredTotal = new Counter({
    name: 'svid_broker_audit_sink_delivered_total',
    help: 'Audit records an audit sink delivered',
    labelNames: ['sink'] as const,
    registers: [],
  });
  private readonly failuresTotal = new Counter({
    name: 'svid_broker_audit_sink_failures_total',
    help: 'Failed sends of an audit sink (each is retried)',
    labelNames: ['sink'] as const,
    registers: [],
  });
  private readonly droppedTotal = new Counter({
    name: 'svid_broker_audit_sink_dropped_total',
    help: 'Audit records a best-effort sink dropped because its queue was full',
    labelNames: ['sink'] as const,
    registers: [],
  });
  private readonly upGauge = new Gauge({
    name: 'svid_broker_audit_sink_up',
    help: 'Whether an audit sink delivers (1) or is failing (0)',
    labelNames: ['sink'] as const,
    registers: [],
  });
  private readonly backlogGauge: Gauge<'sink'>;

  constructor(backlog: BacklogSource) {
    this.backlogGauge = new Gauge({
      name: 'svid_broker_audit_sink_backlog',
      help: 'Audit records waiting in memory for an audit sink',
      labelNames: ['sink'] as const,
      registers: [],
      collect() {
        for (const sink of backlog())
          if (sink.backlog !== undefined) this.set({ sink: sink.name }, sink.backlog);
      },
    });
  }

  /** Starts each sink at up, with zero counts, so a sink that never failed still has series. */
  declare(sinks: readonly string[]): void {
    for (const sink of sinks) {
      this.deliveredTotal.inc({ sink }, 0);
      this.failuresTotal.inc({ sink }, 0);
      this.droppedTotal.inc({ sink }, 0);
      this.upGauge.set({ sink }, 1);
    }
  }

  register(registry: Registry): void {
    for (const metric of [
      this.deliveredTotal,
      this.failuresTotal,
      this.droppedTotal,
      this.upGauge,
      this.backlogGauge,
    ]) {
      registry.registerMetric(metric);
    }
  }

  delivered(sink: string, records: number): void {
    this.deliveredTotal.inc({ sink }, records);
  }

  failed(sink: string): void {
    this.failuresTotal.inc({ sink });
  }

  dropped(sink: string, records: number): void {
    this.droppedTotal.inc({ sink }, records);
  }

  up(sink: string, up: boolean): void {
    this.upGauge.set({ sink }, up ? 1 : 0);
  }
}
