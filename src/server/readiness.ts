/**
 * Readiness of this replica, built from the parts it depends on: the lease store (Redis), the
 * invalidation feed, the audit sink and the broker's own SVID. `/readyz`, `grpc.health.v1` and the
 * dependency gauge all read the one monitor built here.
 */
import type { HealthImplementation } from 'grpc-health-check';
import type { AuditSink } from '../audit/types.js';
import type { FeedFreshness } from '../feed/types.js';
import type { LeaseStore } from '../leases/types.js';
import {
  DependencyHealth,
  svidCheck,
  type DependencyState,
  type HealthLogger,
} from '../observability/dependency-health.js';
import { ADMIN_SERVICE, BROKER_SERVICE } from './grpc-server.js';

export interface ReadinessParts {
  store: Pick<LeaseStore, 'ping'>;
  freshness: Pick<FeedFreshness, 'fresh' | 'lagMs'>;
  audit: Pick<AuditSink, 'health'>;
  x509: { getX509Svid(): { certChain: readonly Uint8Array[] } | undefined };
  logger: HealthLogger;
  now?: () => number;
  intervalMs?: number;
}

export function buildDependencyHealth(parts: ReadinessParts): DependencyHealth {
  const now = parts.now ?? Date.now;
  return new DependencyHealth({
    checks: {
      redis: async (): Promise<DependencyState> => {
        await parts.store.ping();
        return { ok: true };
      },
      feed: () =>
        parts.freshness.fresh()
          ? { ok: true }
          : { ok: false, reason: `invalidation feed stale (${describeLag(parts.freshness.lagMs())})` },
      audit: () => {
        const state = parts.audit.health?.() ?? { ok: true };
        return state.ok
          ? state
          : { ok: false, reason: `audit sink failed since ${state.since}: ${state.cause}` };
      },
      svid: svidCheck(() => parts.x509.getX509Svid(), now),
    },
    logger: parts.logger,
    now,
    ...(parts.intervalMs === undefined ? {} : { intervalMs: parts.intervalMs }),
  });
}

/** Sets every service this server offers (and the server as a whole, "") to one status. */
export function setGrpcServing(health: HealthImplementation, serving: boolean): void {
  const status = serving ? 'SERVING' : 'NOT_SERVING';
  for (const service of ['', BROKER_SERVICE, ADMIN_SERVICE]) health.setStatus(service, status);
}

function describeLag(ms: number): string {
  return Number.isFinite(ms) ? `no confirmed read for ${Math.round(ms)} ms` : 'never read';
}
