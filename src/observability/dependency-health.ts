/**
 * Whether this replica can do its work: the state of each dependency without which it refuses
 * every call (Redis, the invalidation feed, the audit sink, its own SVID). One monitor answers
 * `/readyz`, drives `grpc.health.v1` (NOT_SERVING while any is down) and the
 * `svid_broker_dependency_up` gauge, so the three never disagree. A change of state is logged once,
 * with its reason; a dependency staying down is not logged again.
 */
import { X509Certificate } from 'node:crypto';
import { Gauge, type Registry } from 'prom-client';

export const DEPENDENCIES = ['redis', 'feed', 'audit', 'svid'] as const;
export type DependencyName = (typeof DEPENDENCIES)[number];

export type DependencyState = { ok: true } | { ok: false; reason: string };
export type DependencyCheck = () => DependencyState | Promise<DependencyState>;

export interface DependencyReport {
  ok: boolean;
  /** Why it is down (absent while up). */
  reason?: string;
  /** RFC 3339: when it entered this state (as far as this replica saw). */
  since: string;
}

export interface HealthReport {
  ready: boolean;
  dependencies: Partial<Record<DependencyName, DependencyReport>>;
}

/** The subset of a pino logger the monitor uses. */
export interface HealthLogger {
  error(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface DependencyHealthOptions {
  checks: Partial<Record<DependencyName, DependencyCheck>>;
  logger: HealthLogger;
  /** A check that takes longer counts as down. Default 2000 ms. */
  timeoutMs?: number;
  /** How often the monitor checks by itself (gRPC health watchers, the gauge). Default 1000 ms. */
  intervalMs?: number;
  now?: () => number;
}

const DEFAULT_TIMEOUT_MS = 2000;
const DEFAULT_INTERVAL_MS = 1000;

export class DependencyHealth {
  private readonly states = new Map<DependencyName, DependencyReport>();
  private readonly listeners: Array<(report: HealthReport) => void> = [];
  private refreshing: Promise<HealthReport> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly opts: DependencyHealthOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Runs every check now (concurrent callers share one run) and returns the result. */
  refresh(): Promise<HealthReport> {
    this.refreshing ??= this.runChecks().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** The result of the last run. */
  report(): HealthReport {
    const dependencies: HealthReport['dependencies'] = {};
    for (const [name, state] of this.states) dependencies[name] = { ...state };
    return { ready: [...this.states.values()].every((s) => s.ok), dependencies };
  }

  /** Called after every run whose readiness differs from the previous run's. */
  onReadinessChange(listener: (report: HealthReport) => void): void {
    this.listeners.push(listener);
  }

  start(): void {
    if (this.timer !== undefined || this.stopped) return;
    const tick = (): void => {
      this.timer = setTimeout(() => {
        void this.refresh().finally(() => {
          if (!this.stopped) tick();
        });
      }, this.opts.intervalMs ?? DEFAULT_INTERVAL_MS);
      this.timer.unref();
    };
    tick();
  }

  /** No more runs and no more notifications (shutdown owns gRPC health from here on). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async runChecks(): Promise<HealthReport> {
    const wasReady = this.states.size === 0 ? undefined : this.report().ready;
    const names = Object.keys(this.opts.checks) as DependencyName[];
    const results = await Promise.all(names.map((name) => this.runCheck(name)));
    names.forEach((name, i) => this.record(name, results[i] as DependencyState));
    const report = this.report();
    if (!this.stopped && report.ready !== wasReady) for (const listener of this.listeners) listener(report);
    return report;
  }

  private async runCheck(name: DependencyName): Promise<DependencyState> {
    const check = this.opts.checks[name];
    if (check === undefined) return { ok: true };
    const timeoutMs = this.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        Promise.resolve().then(check),
        new Promise<DependencyState>((resolve) => {
          timer = setTimeout(
            () => resolve({ ok: false, reason: `no answer within ${timeoutMs} ms` }),
            timeoutMs,
          );
        }),
      ]);
    } catch (err) {
      return { ok: false, reason: err instanceof Error ? err.message : String(err) };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Keeps `since` while the state holds; logs each change once. */
  private record(name: DependencyName, state: DependencyState): void {
    const previous = this.states.get(name);
    const reason = state.ok ? undefined : state.reason;
    if (previous !== undefined && previous.ok === state.ok) {
      this.states.set(name, { ...previous, ...(reason === undefined ? {} : { reason }) });
      return;
    }
    const at = this.now();
    this.states.set(name, { ok: state.ok, ...(reason === undefined ? {} : { reason }), since: iso(at) });
    if (!state.ok) {
      this.opts.logger.error(
        { dependency: name, reason },
        'dependency down: this replica refuses work until it is back',
      );
    } else if (previous !== undefined) {
      const downMs = at - Date.parse(previous.since);
      this.opts.logger.info({ dependency: name, down_ms: downMs }, 'dependency back: serving again');
    }
  }
}

/** `svid_broker_dependency_up{dependency}`: 1 while up, 0 while down, from the monitor's last run. */
export function registerDependencyGauge(registry: Registry, health: Pick<DependencyHealth, 'report'>): void {
  new Gauge({
    name: 'svid_broker_dependency_up',
    help: 'Whether a required dependency is up (1) or makes this replica refuse work (0)',
    labelNames: ['dependency'] as const,
    registers: [registry],
    collect() {
      const { dependencies } = health.report();
      for (const [name, state] of Object.entries(dependencies))
        this.set({ dependency: name }, state.ok ? 1 : 0);
    },
  });
}

/** The SVID check: the broker's own X.509-SVID is there and its leaf is within its validity. */
export function svidCheck(
  getSvid: () => { certChain: readonly Uint8Array[] } | undefined,
  now: () => number,
): DependencyCheck {
  return () => {
    const leaf = getSvid()?.certChain[0];
    if (leaf === undefined) return { ok: false, reason: 'no X.509-SVID from the Workload API' };
    const cert = new X509Certificate(leaf);
    const at = now();
    if (at > Date.parse(cert.validTo))
      return { ok: false, reason: `X.509-SVID expired at ${iso(Date.parse(cert.validTo))}` };
    if (at < Date.parse(cert.validFrom)) return { ok: false, reason: 'X.509-SVID not yet valid' };
    return { ok: true };
  };
}

/** One line naming every dependency that is down, for `/readyz`'s `reason`. */
export function describeNotReady(report: HealthReport): string {
  return Object.entries(report.dependencies)
    .filter(([, state]) => !state.ok)
    .map(([name, state]) => `${name}: ${state.reason ?? 'down'}`)
    .join('; ');
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
