/**
 * Prometheus metrics of the broker, served by the ops listener at /metrics.
 *
 * Counters are derived from the audit trail: every decision the broker makes is an audit event, so
 * counting each event once its sink has recorded it (MetricsAuditSink) counts exactly what the
 * trail holds, and no use case needs a metrics dependency. Gauges are read from the shared stores
 * when Prometheus scrapes, through sources passed in by main.ts; a source that fails or hangs
 * leaves its gauge unknown for that scrape (NaN, or no series for a labelled gauge) and never
 * fails the scrape.
 *
 * Label values come only from a fixed set of fields and are checked: roles and backends against the
 * role catalog, reason codes and trigger names against a shape and a cap on distinct values. Free
 * text (justifications, human reasons, error messages) and SPIFFE IDs never become labels: anyone
 * who can scrape reads them, and every distinct value is a new series.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { AuditEventInput, AuditRecord, AuditSink } from '../audit/types.js';

/** What the gauges read at scrape time. Each should be cheap: one count in the store, no listing. */
export interface BrokerGaugeSources {
  pendingApprovals(): Promise<number>;
  /** Active leases per backend name; backends without active leases may be left out. */
  activeLeasesByBackend(): Promise<Record<string, number>>;
  /** Leases written but not yet activated (their credential has not left the broker). */
  pendingLeases(): Promise<number>;
  pendingRevocations(): Promise<number>;
  activeQuarantines(): Promise<number>;
  /** Seconds since the last successful read of the invalidation feed (+Inf before the first read). */
  feedLagSeconds(): number;
}

/** The subset of a pino logger the metrics use. */
export interface MetricsLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface BrokerMetricsOptions {
  /**
   * The role catalog. Role and backend label values must be in it (anything else is counted as
   * `other`), and it names the backend of events that carry only the role.
   */
  roles: ReadonlyMap<string, { readonly backend: string }>;
  logger: MetricsLogger;
  /** How long a gauge source may take before the scrape reports it unknown. Default 2000 ms. */
  sourceTimeoutMs?: number;
}

export interface BrokerMetrics {
  /** gRPC requests by method and status code (counted by the gRPC server). */
  readonly requests: Counter<'method' | 'code'>;
  /** gRPC request latency by method (timed by the gRPC server). */
  readonly latency: Histogram<'method'>;
  /** Counts one event the audit trail has recorded. Never throws. */
  record(event: AuditEventInput): void;
}

/** The label value for anything outside the catalog, malformed, or past the cap on distinct values. */
export const OTHER = 'other';

export const REVOCATION_OUTCOMES = [
  'revoked',
  'queued',
  'revoke_failed',
  'not_revocable',
  'expired',
  'orphaned',
] as const;
export type RevocationOutcome = (typeof REVOCATION_OUTCOMES)[number];

/** Distinct reason, action or trigger values per label before new ones are counted as `other`. */
const MAX_DISTINCT_VALUES = 64;
const DEFAULT_SOURCE_TIMEOUT_MS = 2000;

/**
 * Codes set by the broker's own code, never by a caller: reason codes (`task_expired`, what callers
 * see in x-svid-broker-reason) and quarantine triggers (`manual`, `denials`). Snake case only, so a
 * SPIFFE ID, a URL, a message or a token (`hvs.…`, a JWT, an access key) never fits.
 */
const CODE = /^[a-z][a-z0-9_]{0,63}$/;
/** gRPC method names (`IssueCredential`). */
const METHOD_NAME = /^[A-Z][A-Za-z]{0,63}$/;

const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export function createBrokerMetrics(
  registry: Registry,
  sources: BrokerGaugeSources,
  opts: BrokerMetricsOptions,
): BrokerMetrics {
  const registers = [registry];
  const requests = new Counter({
    name: 'svid_broker_requests_total',
    help: 'gRPC requests by method and status code',
    labelNames: ['method', 'code'] as const,
    registers,
  });
  const latency = new Histogram({
    name: 'svid_broker_request_seconds',
    help: 'gRPC request latency',
    labelNames: ['method'] as const,
    buckets: REQUEST_BUCKETS,
    registers,
  });
  const counters = new AuditCounters(registry, opts);
  registerGauges(registry, sources, opts, counters.backends);
  return { requests, latency, record: (event) => counters.record(event) };
}

/**
 * An AuditSink that counts every event its inner sink recorded. An event the inner sink refused is
 * not counted, and counting never turns a recorded event into a failed write (the caller would
 * then fail closed on a decision the trail holds).
 */
export class MetricsAuditSink implements AuditSink {
  constructor(
    private readonly inner: AuditSink,
    private readonly metrics: Pick<BrokerMetrics, 'record'>,
  ) {}

  async write(event: AuditEventInput): Promise<AuditRecord> {
    const record = await this.inner.write(event);
    this.metrics.record(event);
    return record;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Wraps `sink` so that what it records is counted. */
export function withMetrics(sink: AuditSink, metrics: Pick<BrokerMetrics, 'record'>): AuditSink {
  return new MetricsAuditSink(sink, metrics);
}

class AuditCounters {
  readonly backends: ReadonlySet<string>;
  private readonly issued: Counter<'backend' | 'role'>;
  private readonly denials: Counter<'action' | 'reason'>;
  private readonly revocations: Counter<'backend' | 'outcome'>;
  private readonly quarantines: Counter<'trigger'>;
  private readonly refusedEntries: Counter<'kind' | 'reason'>;
  private readonly seen = new Map<string, Set<string>>();
  private failing = false;

  constructor(
    registry: Registry,
    private readonly opts: BrokerMetricsOptions,
  ) {
    const registers = [registry];
    this.backends = new Set([...opts.roles.values()].map((r) => r.backend));
    this.issued = new Counter({
      name: 'svid_broker_credentials_issued_total',
      help: 'Credentials issued, by backend and role',
      labelNames: ['backend', 'role'] as const,
      registers,
    });
    this.denials = new Counter({
      name: 'svid_broker_denials_total',
      help: 'Refused requests (policy, budget, authentication, approval, failure), by action and reason code',
      labelNames: ['action', 'reason'] as const,
      registers,
    });
    this.revocations = new Counter({
      name: 'svid_broker_revocations_total',
      help: 'Lease revocations at the backend, by backend and outcome (revoked, queued, revoke_failed, not_revocable, expired)',
      labelNames: ['backend', 'outcome'] as const,
      registers,
    });
    this.quarantines = new Counter({
      name: 'svid_broker_quarantines_total',
      help: 'Quarantines set, by trigger (manual or the automatic trigger name)',
      labelNames: ['trigger'] as const,
      registers,
    });
    this.refusedEntries = new Counter({
      name: 'svid_broker_replica_entries_refused_total',
      help: 'Entries in shared state (JWKS, policy set) not used: unsigned, forged, from a broker not allowed, or a replayed older policy set; by kind and reason',
      labelNames: ['kind', 'reason'] as const,
      registers,
    });
    // Known series start at 0, so rate() and increase() see their first event.
    for (const [role, { backend }] of opts.roles) this.issued.inc({ backend, role }, 0);
    for (const backend of this.backends) {
      for (const outcome of REVOCATION_OUTCOMES) this.revocations.inc({ backend, outcome }, 0);
    }
  }

  record(event: AuditEventInput): void {
    try {
      this.count(event);
    } catch (err) {
      if (!this.failing) {
        this.failing = true;
        this.opts.logger.warn(
          { err: { message: errorMessage(err) }, type: event.type },
          'metrics: counting an audit event failed; later failures are not logged',
        );
      }
    }
  }

  private count(event: AuditEventInput): void {
    switch (event.type) {
      case 'credential.issued':
        this.issued.inc({ backend: this.backendOf(event), role: this.roleOf(event) });
        return;
      case 'credential.denied':
      case 'credential.failed':
        return this.denial('IssueCredential', refusalReason(event));
      case 'task.denied':
      case 'task.failed':
        return this.denial('BeginTask', refusalReason(event));
      case 'budget.exceeded':
        // Credential budgets are checked for a role; task budgets (open tasks) before any role.
        return this.denial(
          typeof event.role === 'string' ? 'IssueCredential' : 'BeginTask',
          'budget_exceeded',
        );
      case 'auth.denied':
        if (event.aggregate === true) return this.authDenialAggregate(event);
        return this.denial(shaped(event.method, METHOD_NAME) ?? OTHER, stringField(event, 'reason'));
      case 'approval.denied':
        // A human said no: the agent's IssueCredential ends with approval_denied.
        return this.denial('IssueCredential', 'approval_denied');
      case 'approval.decision_refused':
        return this.denial(
          'DecideApproval',
          event.refusal === 'policy' ? policyReason(event) : stringField(event, 'refusal'),
        );
      case 'breakglass.denied':
        return this.denial('BreakGlass', policyReason(event));
      case 'admin.denied':
        return this.denial(shaped(event.method, METHOD_NAME) ?? OTHER, stringField(event, 'reason'));
      case 'lease.revoked':
        return this.revocation(event, 'revoked');
      case 'lease.revoke_queued':
        return this.revocation(event, 'queued');
      case 'lease.revoke_failed':
        return this.revocation(event, 'revoke_failed');
      case 'lease.not_revocable':
        // Bulk revocation of a credential its backend can only let expire.
        return this.revocation(event, 'not_revocable');
      case 'lease.expired':
        return this.revocation(event, 'expired');
      case 'lease.orphaned':
        // A pending lease nobody activated, revoked by the reaper (the record says how it went).
        return this.revocation(event, 'orphaned');
      case 'quarantine.set':
        this.quarantines.inc({ trigger: this.bounded('trigger', shaped(event.trigger, CODE)) });
        return;
      case 'replica.entry_refused':
        this.refusedEntries.inc({
          kind: event.kind === 'jwks' || event.kind === 'policy' ? event.kind : OTHER,
          reason: this.bounded('reason', shaped(event.reason, CODE)),
        });
        return;
      default:
        return;
    }
  }

  private denial(action: string, reason: string | undefined, by = 1): void {
    this.denials.inc(
      {
        action: this.bounded('action', action),
        reason: this.bounded('reason', shaped(reason, CODE)),
      },
      by,
    );
  }

  /** An aggregate auth.denied record counts the denials of its window, per method. */
  private authDenialAggregate(event: AuditEventInput): void {
    const methods = event.methods;
    if (typeof methods !== 'object' || methods === null) return;
    for (const [method, n] of Object.entries(methods)) {
      if (typeof n === 'number' && Number.isSafeInteger(n) && n > 0) {
        this.denial(shaped(method, METHOD_NAME) ?? OTHER, stringField(event, 'reason'), n);
      }
    }
  }

  private revocation(event: AuditEventInput, outcome: RevocationOutcome): void {
    this.revocations.inc({ backend: this.backendOf(event), outcome });
  }

  private roleOf(event: AuditEventInput): string {
    return typeof event.role === 'string' && this.opts.roles.has(event.role) ? event.role : OTHER;
  }

  /** The event's backend when it names one (the worker's events do), else its role's. */
  private backendOf(event: AuditEventInput): string {
    const named =
      typeof event.backend === 'string'
        ? event.backend
        : typeof event.role === 'string'
          ? this.opts.roles.get(event.role)?.backend
          : undefined;
    return named !== undefined && this.backends.has(named) ? named : OTHER;
  }

  /** Caps the distinct values of one label, so a flood of new reason codes cannot grow the series. */
  private bounded(label: string, value: string | undefined): string {
    if (value === undefined) return OTHER;
    let values = this.seen.get(label);
    if (!values) this.seen.set(label, (values = new Set()));
    if (values.has(value)) return value;
    if (values.size >= MAX_DISTINCT_VALUES) return OTHER;
    values.add(value);
    return value;
  }
}

/**
 * The reason of a refusal as the caller saw it: the BrokerError reason of a refused or failed
 * request, the policy outcome of a policy denial, or the stage at which issuance failed.
 */
function refusalReason(event: AuditEventInput): string | undefined {
  if (typeof event.reason === 'string') return event.reason;
  if (event.decision !== undefined) return policyReason(event);
  switch (event.stage) {
    case 'backend':
      return typeof event.error === 'string' ? event.error : 'backend_error';
    case 'lease_store':
      return 'lease_store_unavailable';
    default:
      return typeof event.stage === 'string' ? event.stage : undefined;
  }
}

/** The same three outcomes denialError() reports to the caller. */
function policyReason(event: AuditEventInput): string {
  if (Array.isArray(event.policy_ids) && event.policy_ids.length > 0) return 'policy_denied';
  if (Array.isArray(event.policy_errors) && event.policy_errors.length > 0) return 'policy_invalid_request';
  return 'default_deny';
}

function stringField(event: AuditEventInput, field: string): string | undefined {
  const value = event[field];
  return typeof value === 'string' ? value : undefined;
}

function shaped(value: unknown, shape: RegExp): string | undefined {
  return typeof value === 'string' && shape.test(value) ? value : undefined;
}

type SourceName =
  | 'pending_approvals'
  | 'active_leases'
  | 'pending_leases'
  | 'pending_revocations'
  | 'active_quarantines'
  | 'feed_lag';

function registerGauges(
  registry: Registry,
  sources: BrokerGaugeSources,
  opts: BrokerMetricsOptions,
  backends: ReadonlySet<string>,
): void {
  const registers = [registry];
  const read = sourceReader(registry, opts);
  const unlabelled = (
    name: string,
    help: string,
    source: SourceName,
    fn: () => number | Promise<number>,
  ): void => {
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        const value = await read(source, fn);
        this.set(typeof value === 'number' ? value : Number.NaN);
      },
    });
  };
  unlabelled(
    'svid_broker_pending_approvals',
    'Approval requests waiting for humans (pending, unexpired)',
    'pending_approvals',
    () => sources.pendingApprovals(),
  );
  new Gauge({
    name: 'svid_broker_active_leases',
    help: 'Active leases by backend',
    labelNames: ['backend'] as const,
    registers,
    async collect() {
      const counts = await read('active_leases', () => sources.activeLeasesByBackend());
      this.reset();
      if (typeof counts !== 'object' || counts === null) return; // unknown this scrape: no series
      for (const backend of backends) this.set({ backend }, 0);
      for (const [backend, count] of Object.entries(counts)) {
        if (typeof count === 'number') this.inc({ backend: backends.has(backend) ? backend : OTHER }, count);
      }
    },
  });
  unlabelled(
    'svid_broker_pending_leases',
    'Leases written but not yet activated: issuances in flight, or orphans the reaper will revoke',
    'pending_leases',
    () => sources.pendingLeases(),
  );
  unlabelled(
    'svid_broker_pending_revocations',
    'Backend revocations queued for retry (waiting or being worked)',
    'pending_revocations',
    () => sources.pendingRevocations(),
  );
  unlabelled('svid_broker_active_quarantines', 'Agents currently quarantined', 'active_quarantines', () =>
    sources.activeQuarantines(),
  );
  unlabelled(
    'svid_broker_invalidation_feed_lag_seconds',
    'Seconds since the last successful read of the invalidation feed',
    'feed_lag',
    () => sources.feedLagSeconds(),
  );
}

/**
 * Reads one gauge source with a timeout. A failure is counted, logged once until the source
 * recovers, and answered with undefined (the gauge reports unknown) instead of failing the scrape.
 */
function sourceReader(
  registry: Registry,
  opts: BrokerMetricsOptions,
): <T>(source: SourceName, fn: () => T | Promise<T>) => Promise<T | undefined> {
  const timeoutMs = opts.sourceTimeoutMs ?? DEFAULT_SOURCE_TIMEOUT_MS;
  const failures = new Counter({
    name: 'svid_broker_metrics_source_failures_total',
    help: 'Gauge sources that failed or timed out at scrape time (the gauge was reported unknown)',
    labelNames: ['gauge'] as const,
    registers: [registry],
  });
  const failing = new Set<SourceName>();
  return async (source, fn) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      const value = await Promise.race([
        Promise.resolve().then(fn),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
          timer.unref();
        }),
      ]);
      if (failing.delete(source)) opts.logger.info({ gauge: source }, 'metrics: gauge source recovered');
      return value;
    } catch (err) {
      failures.inc({ gauge: source });
      if (!failing.has(source)) {
        failing.add(source);
        opts.logger.warn(
          { gauge: source, err: { message: errorMessage(err) } },
          'metrics: gauge source failed; the gauge reads unknown until it recovers',
        );
      }
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  };
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
