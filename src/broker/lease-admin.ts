/**
 * Incident tools: list and revoke leases by selector (lease, agent or agent pattern, task,
 * environment, role, backend, trust domain, or all). Authorized by the ListLeases and RevokeLeases
 * admin actions; every revocation goes through Broker.revokeLease (backend first, durable queue on
 * refusal), and each admin call leaves one summary audit record.
 */
import type { Logger } from 'pino';
import type { AuditSink } from '../audit/types.js';
import { invalidArgument, unavailable } from '../errors.js';
import { SpiffeIdPattern, parseTrustDomain } from '../identity/spiffe-id.js';
import type { Caller } from '../identity/types.js';
import type { Lease, LeaseFilter, LeaseState, LeaseStore } from '../leases/types.js';
import type { PolicyEngine } from '../policy/types.js';
import type { Broker } from './broker.js';
import { decisionFields, denialError } from './decisions.js';
import { LIMITS, boundedText, requireRoleName, requireTaskId } from './validate.js';

const STATES: readonly LeaseState[] = ['active', 'revoking', 'revoked', 'expired', 'revoke_failed'];

export interface LeaseSelectorInput {
  leaseId: string;
  agent: string;
  taskId: string;
  environment: string;
  role: string;
  backend: string;
  trustDomain: string;
  all: boolean;
  /** ListLeases only; '' = active, 'any' = every state. */
  state: string;
}

export interface RevokeReport {
  matched: number;
  revoked: number;
  pendingRetry: number;
  alreadyEnded: number;
  byBackend: Record<string, { revoked: number; pendingRetry: number }>;
  dryRun: boolean;
  leases: Lease[];
}

export interface LeaseAdminDeps {
  store: LeaseStore;
  broker: Broker;
  policy: () => PolicyEngine;
  audit: AuditSink;
  logger: Logger;
}

interface Selector {
  filter: LeaseFilter;
  matches: (lease: Lease) => boolean;
  describe: Record<string, unknown>;
}

export class LeaseAdmin {
  constructor(private readonly deps: LeaseAdminDeps) {}

  async listLeases(caller: Caller, input: LeaseSelectorInput): Promise<Lease[]> {
    this.authorize(caller, 'ListLeases');
    const state = input.state || 'active';
    if (state !== 'any' && !(STATES as readonly string[]).includes(state)) {
      throw invalidArgument('state', `must be one of ${STATES.join(', ')} or any`);
    }
    const selector = parseSelector(input, state === 'any' ? undefined : (state as LeaseState));
    return this.find(selector);
  }

  async revokeLeases(
    caller: Caller,
    input: { selector: LeaseSelectorInput; reason: string; dryRun: boolean; confirmAll: boolean },
  ): Promise<RevokeReport> {
    this.authorize(caller, 'RevokeLeases');
    const reason = boundedText(input.reason.trim(), 'reason', LIMITS.reason);
    if (!reason) throw invalidArgument('reason', 'is required: it is recorded on every lease');
    if (input.selector.all && !input.confirmAll) {
      throw invalidArgument('confirm_all', 'revoking every lease needs confirm_all');
    }
    const selector = parseSelector(input.selector, 'active');
    const leases = await this.find(selector);
    const report: RevokeReport = {
      matched: leases.length,
      revoked: 0,
      pendingRetry: 0,
      alreadyEnded: 0,
      byBackend: {},
      dryRun: input.dryRun,
      leases,
    };
    if (!input.dryRun) {
      const why = `admin: ${reason}`;
      const outcomes = await Promise.all(leases.map((l) => this.deps.broker.revokeLease(l, why)));
      outcomes.forEach((outcome, i) => {
        const backend = (leases[i] as Lease).backend;
        const counts = (report.byBackend[backend] ??= { revoked: 0, pendingRetry: 0 });
        if (!outcome) report.alreadyEnded++;
        else if (outcome.state === 'revoked') {
          report.revoked++;
          counts.revoked++;
        } else {
          report.pendingRetry++;
          counts.pendingRetry++;
        }
      });
    }
    try {
      await this.deps.audit.write({
        type: input.dryRun ? 'admin.revoke_dry_run' : 'admin.revoke',
        agent: caller.spiffeId,
        selector: selector.describe,
        reason,
        matched: report.matched,
        revoked: report.revoked,
        pending_retry: report.pendingRetry,
        already_ended: report.alreadyEnded,
        leases: leases.map((l) => l.id),
      });
    } catch (err) {
      // The revocations stand (revoking is the safe direction); the summary's absence is loud.
      this.deps.logger.error(
        { err: { message: (err as Error).message } },
        'admin revoke summary not audited',
      );
      if (!input.dryRun) return report;
      throw unavailable('audit_unavailable', 'audit trail unavailable', err);
    }
    return report;
  }

  private async find(selector: Selector): Promise<Lease[]> {
    const leases = await this.deps.store.listLeases(selector.filter);
    return leases.filter(selector.matches);
  }

  private authorize(caller: Caller, action: 'ListLeases' | 'RevokeLeases'): void {
    const decision = this.deps.policy().authorize({
      principal: caller.spiffeId,
      action,
      resource: { type: 'Broker' },
      context: {},
    });
    if (decision.decision !== 'allow') {
      this.deps.logger.info(
        { caller: caller.spiffeId, action, ...decisionFields(decision) },
        'admin call denied',
      );
      throw denialError(decision, action);
    }
  }
}

/** Validates a selector; the narrowest store index is used, the rest is filtered here. */
function parseSelector(input: LeaseSelectorInput, state: LeaseState | undefined): Selector {
  const checks: Array<(l: Lease) => boolean> = [];
  const filter: LeaseFilter = state ? { state } : {};
  const describe: Record<string, unknown> = {};
  if (input.leaseId) {
    const id = requireTaskId(input.leaseId, 'lease_id');
    checks.push((l) => l.id === id);
    describe.lease_id = id;
  }
  if (input.agent) {
    let pattern: SpiffeIdPattern;
    try {
      pattern = SpiffeIdPattern.parse(input.agent, 'agent');
    } catch {
      throw invalidArgument('agent', 'must be a SPIFFE ID or a pattern ending in /* or /**');
    }
    const exact = !input.agent.includes('*');
    if (exact) filter.agent = input.agent;
    checks.push((l) => pattern.matches(l.agent));
    describe.agent = input.agent;
  }
  if (input.taskId) {
    filter.taskId = requireTaskId(input.taskId);
    describe.task_id = input.taskId;
  }
  if (input.environment) {
    filter.environment = boundedText(input.environment, 'environment', 64);
    describe.environment = input.environment;
  }
  if (input.role) {
    const role = requireRoleName(input.role);
    checks.push((l) => l.role === role);
    describe.role = role;
  }
  if (input.backend) {
    const backend = boundedText(input.backend, 'backend', 64);
    checks.push((l) => l.backend === backend);
    describe.backend = backend;
  }
  if (input.trustDomain) {
    const td = parseTrustDomain(input.trustDomain, 'trust_domain');
    checks.push((l) => l.agent.startsWith(`spiffe://${td}/`));
    describe.trust_domain = td;
  }
  if (input.all) describe.all = true;
  if (Object.keys(describe).length === 0) {
    throw invalidArgument(
      'selector',
      'name at least one of lease_id, agent, task_id, environment, role, backend, trust_domain, or all',
    );
  }
  return { filter, matches: (l) => checks.every((c) => c(l)), describe };
}
