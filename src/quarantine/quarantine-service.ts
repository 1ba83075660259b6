/**
 * Quarantine: setting, releasing and listing quarantines (with their audit records), optionally
 * revoking everything the quarantined agents hold, and the automatic triggers the broker consults
 * (IncidentHooks): N denials in M seconds, a budget exceeded repeatedly, a request for `restricted`
 * data from outside the allowed groups. Strikes are counted in the shared store, so every replica
 * adds to the same window. Authorization of the admin calls is the caller's (QuarantineAdmin).
 */
import type { Logger } from 'pino';
import type { AuditSink } from '../audit/types.js';
import type { Sensitivity } from '../config/schema.js';
import { type BrokerError, notFound } from '../errors.js';
import type { LeaseSelector, RevokeReport } from '../leases/types.js';
import { quarantinedError } from './quarantine-view.js';
import { findQuarantine, type Quarantine, type QuarantineStore } from './types.js';

export interface StrikeTrigger {
  /** Strikes within the window that quarantine the agent. */
  count: number;
  windowSeconds: number;
  /** How long the automatic quarantine lasts; 0 = until released. */
  ttlSeconds: number;
  /** Also revoke every active lease of the agent. */
  revokeActive: boolean;
}

export interface QuarantineTriggers {
  denials?: StrikeTrigger;
  budgetExceeded?: StrikeTrigger;
  restrictedData?: { allowedGroups: string[]; ttlSeconds: number; revokeActive: boolean };
}

export interface QuarantineServiceDeps {
  store: QuarantineStore;
  /** Bulk revocation (LeaseAdmin.revokeSelected), for revoke_active. */
  revoke: (
    by: string,
    selector: LeaseSelector,
    describe: Record<string, unknown>,
    reason: string,
  ) => Promise<RevokeReport>;
  /**
   * `quarantine.revokeDelegates`: ends the tasks delegated from the quarantined agents' tasks and
   * revokes what their delegates hold (TaskTreeAdmin.revokeDelegatesOf). Unset: delegates keep theirs.
   */
  revokeDelegates?: (pattern: string, by: string, reason: string) => Promise<unknown>;
  audit: AuditSink;
  logger: Logger;
  triggers: QuarantineTriggers;
  agentGroups: (spiffeId: string) => readonly string[];
  now?: () => number;
}

export interface QuarantineInput {
  /** Already validated: an exact SPIFFE ID or a `/*`, `/**` pattern. */
  pattern: string;
  /** For revoke_active: the same pattern as a lease selector. */
  selector: LeaseSelector;
  reason: string;
  /** 0 = until released. */
  ttlSeconds: number;
  revokeActive: boolean;
  by: string;
  trigger: string;
  evidence?: Record<string, unknown>;
}

export interface QuarantineResult {
  quarantine: Quarantine;
  replaced: boolean;
  revocation?: RevokeReport;
}

/**
 * A credential request as the restricted-data trigger sees it (before policy). Its caller, the
 * broker, declares the hooks it calls (IncidentHooks in src/broker/broker.ts); this service fits
 * them without importing the layer above.
 */
export interface ScreenedRequest {
  taskId: string;
  role: string;
  environment: string;
  sensitivity: Sensitivity;
}

export class QuarantineService {
  private readonly now: () => number;

  constructor(private readonly deps: QuarantineServiceDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * Sets the quarantine (effective on every replica as soon as this returns: the store announces
   * it on the invalidation feed, and put-lease enforces it atomically), audits it, then revokes
   * the agents' active leases if asked.
   */
  async quarantine(input: QuarantineInput): Promise<QuarantineResult> {
    const now = this.now();
    const quarantine: Quarantine = {
      pattern: input.pattern,
      reason: input.reason,
      by: input.by,
      trigger: input.trigger,
      createdAt: now,
      expiresAt: input.ttlSeconds > 0 ? now + input.ttlSeconds * 1000 : 0,
      ...(input.evidence ? { evidence: input.evidence } : {}),
    };
    // Stored first: a quarantine is the safe direction and must not wait on the audit trail.
    const { replaced } = await this.deps.store.put(quarantine);
    await this.auditQuietly({
      type: 'quarantine.set',
      agent: input.by,
      pattern: input.pattern,
      reason: input.reason,
      trigger: input.trigger,
      ttl_seconds: input.ttlSeconds,
      expires_at: quarantine.expiresAt ? new Date(quarantine.expiresAt).toISOString() : null,
      revoke_active: input.revokeActive,
      replaced,
      ...(input.evidence ? { evidence: input.evidence } : {}),
    });
    await this.deps.revokeDelegates?.(input.pattern, input.by, input.reason);
    if (!input.revokeActive) return { quarantine, replaced };
    const revocation = await this.deps.revoke(
      input.by,
      input.selector,
      { agent: input.pattern, quarantine: true },
      `quarantine: ${input.reason}`,
    );
    return { quarantine, replaced, revocation };
  }

  async release(pattern: string, by: string, reason: string): Promise<Quarantine> {
    const released = await this.deps.store.release(pattern, this.now());
    if (!released) throw notFound('quarantine_not_found', `no quarantine for "${pattern}"`);
    await this.auditQuietly({
      type: 'quarantine.released',
      agent: by,
      pattern,
      reason,
      quarantined_by: released.by,
      quarantined_at: new Date(released.createdAt).toISOString(),
      trigger: released.trigger,
    });
    return released;
  }

  list(): Promise<Quarantine[]> {
    return this.deps.store.list(this.now());
  }

  // --- automatic triggers (IncidentHooks) ------------------------------------------------------

  async onRefused(agent: string, err: BrokerError, request: Record<string, unknown>): Promise<void> {
    if (err.reason === 'quarantined') return;
    const t = this.deps.triggers;
    if (err.code === 'PERMISSION_DENIED' && t.denials) {
      await this.strike(agent, 'denials', t.denials, {
        last_refusal: { reason: err.reason, policies: err.policies, ...request },
      });
    } else if (err.code === 'RESOURCE_EXHAUSTED' && t.budgetExceeded) {
      await this.strike(agent, 'budget_exceeded', t.budgetExceeded, {
        last_refusal: { reason: err.reason, ...request },
      });
    }
  }

  async screenRequest(agent: string, request: ScreenedRequest): Promise<void> {
    const rule = this.deps.triggers.restrictedData;
    if (!rule || request.sensitivity !== 'restricted') return;
    const groups = this.deps.agentGroups(agent);
    if (groups.some((g) => rule.allowedGroups.includes(g))) return;
    const result = await this.quarantine({
      pattern: agent,
      selector: { agent },
      reason: `requested restricted data (${request.role}) from outside the allowed groups`,
      ttlSeconds: rule.ttlSeconds,
      revokeActive: rule.revokeActive,
      by: 'broker',
      trigger: 'restricted_data',
      evidence: {
        request: { ...request },
        agent_groups: [...groups],
        allowed_groups: rule.allowedGroups,
      },
    });
    throw quarantinedError(result.quarantine);
  }

  private async strike(
    agent: string,
    kind: 'denials' | 'budget_exceeded',
    rule: StrikeTrigger,
    evidence: Record<string, unknown>,
  ): Promise<void> {
    const now = this.now();
    const count = await this.deps.store.recordStrike(agent, kind, now, rule.windowSeconds * 1000);
    if (count < rule.count) return;
    // Already quarantined (by this trigger on another replica, or by hand): nothing to add.
    if (findQuarantine(await this.deps.store.list(now), agent, now)) return;
    this.deps.logger.warn({ agent, trigger: kind, count }, 'automatic quarantine');
    await this.quarantine({
      pattern: agent,
      selector: { agent },
      reason: `${count} ${kind === 'denials' ? 'denials' : 'budget refusals'} in ${rule.windowSeconds} s`,
      ttlSeconds: rule.ttlSeconds,
      revokeActive: rule.revokeActive,
      by: 'broker',
      trigger: kind,
      evidence: { strikes: count, threshold: rule.count, window_seconds: rule.windowSeconds, ...evidence },
    });
  }

  /** Quarantine records are written after the fact; a failed write is loud but undoes nothing. */
  private async auditQuietly(event: Parameters<AuditSink['write']>[0]): Promise<void> {
    try {
      await this.deps.audit.write(event);
    } catch (err) {
      this.deps.logger.error(
        { err: { message: (err as Error).message }, type: event.type },
        'quarantine audit record not written',
      );
    }
  }
}
