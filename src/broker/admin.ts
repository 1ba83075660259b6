/**
 * Administrative use cases: deciding approvals and break-glass. Every call is authorized by
 * policy (DecideApproval, BreakGlass, WatchAudit), audited, and refused closed; every refusal is
 * a strike for the automatic quarantine (admin-guard.ts). Separation of duties: nobody decides
 * their own request, grants themselves break-glass, or reviews a grant they gave or received.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { APPROVAL_STATES } from '../approvals/approval-records.js';
import type {
  ApprovalRequest,
  ApprovalState,
  ApprovalStore,
  BreakGlassGrant,
  BreakGlassStore,
  DecideOutcome,
} from '../approvals/types.js';
import type { AuditEventInput, AuditSink } from '../audit/types.js';
import type { RoleDefinition } from '../credentials/backend.js';
import {
  type BrokerError,
  failedPrecondition,
  invalidArgument,
  notFound,
  permissionDenied,
  unavailable,
} from '../errors.js';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import type { Caller } from '../identity/types.js';
import type { PolicyDecision, PolicyEngine, PolicyRequest } from '../policy/types.js';
import { AdminGuard } from './admin-guard.js';
import type { IncidentHooks } from './broker.js';
import { decisionFields, denialError } from './decisions.js';
import { LIMITS, boundedText, requireRoleName, requireTaskId } from './validate.js';
import { pageOfApprovals, type ApprovalPage } from './approval-pages.js';
import {
  approvalNeedsStepUp,
  isOwner,
  policyPrincipal,
  requireFreshSignIn,
  type StepUpPolicy,
} from './human-checks.js';

export interface BrokerAdminDeps {
  approvals: ApprovalStore;
  breakGlass: BreakGlassStore;
  policy: () => PolicyEngine;
  roles: ReadonlyMap<string, RoleDefinition>;
  audit: AuditSink;
  breakGlassMaxTtlSeconds: number;
  /** The automatic quarantine triggers: an admin refusal is a strike. */
  incidents?: Pick<IncidentHooks, 'onRefused'>;
  logger: Logger;
  /** Fresh sign-in rules for people (humans.*); absent, no step-up is asked. */
  stepUp?: StepUpPolicy;
  /** The catalog's `owner` of an agent: that person cannot approve its requests. */
  agentOwner?: (spiffeId: string) => string | undefined;
  now?: () => number;
  newId?: () => string;
}

export class BrokerAdmin {
  private readonly now: () => number;
  private readonly newId: () => string;
  private readonly guard: AdminGuard;

  constructor(private readonly deps: BrokerAdminDeps) {
    this.now = deps.now ?? Date.now;
    this.newId = deps.newId ?? randomUUID;
    this.guard = new AdminGuard({
      policy: deps.policy,
      audit: deps.audit,
      logger: deps.logger,
      ...(deps.incidents ? { incidents: deps.incidents } : {}),
    });
  }

  /** Requests in a state (default pending) that the caller may decide. */
  async listApprovals(caller: Caller, input: { state: string }): Promise<ApprovalRequest[]> {
    const state = (input.state || 'pending') as ApprovalState | 'any';
    if (state !== 'any' && !APPROVAL_STATES.includes(state)) {
      throw invalidArgument('state', `must be one of ${APPROVAL_STATES.join(', ')} or any`);
    }
    const all = await this.deps.approvals.list({ state }, this.now());
    const visible = all.filter((a) => {
      const role = this.deps.roles.get(a.role);
      return role !== undefined && this.authorizeDecide(caller, a, role).decision === 'allow';
    });
    await this.guard.recordRead(caller, 'ListApprovals', { state, count: visible.length });
    return visible;
  }

  /** One page of listApprovals (newest first); see approval-pages.ts for the token. */
  async listApprovalPage(
    caller: Caller,
    input: { state: string; pageSize?: number; pageToken?: string },
  ): Promise<ApprovalPage> {
    return pageOfApprovals(await this.listApprovals(caller, input), input);
  }

  async decideApproval(
    caller: Caller,
    input: { approvalId: string; approve: boolean; reason: string },
  ): Promise<{ approval: ApprovalRequest; outcome: 'recorded' | 'approved' | 'denied' }> {
    if (!input.approvalId) throw invalidArgument('approval_id', 'is required');
    const approvalId = input.approvalId;
    const reason = boundedText(input.reason.trim(), 'reason', LIMITS.reason);
    if (!reason) throw invalidArgument('reason', 'is required');
    const now = this.now();
    // An id that is not one the broker hands out names no approval, like an unknown one.
    const request = isBrokerId(approvalId) ? await this.deps.approvals.get(approvalId, now) : undefined;
    if (!request) throw notFound('approval_not_found', `no approval ${printableId(approvalId)}`);
    const role = this.deps.roles.get(request.role);
    if (!role) throw failedPrecondition('role_removed', `role "${request.role}" is no longer configured`);

    const base = {
      agent: caller.spiffeId,
      approval: request.id,
      requester: request.requester,
      task: request.taskId,
      role: request.role,
      environment: request.environment,
      approve: input.approve,
      reason,
    };
    const decision = await this.mayDecide(caller, request, role, base);
    if (input.approve && this.deps.stepUp && approvalNeedsStepUp(request, this.deps.stepUp)) {
      requireFreshSignIn(caller, this.deps.stepUp, now, 'approving this request');
    }
    const { outcome, request: after } = await this.deps.approvals.decide(approvalId, {
      approver: caller.spiffeId,
      approve: input.approve,
      reason,
      at: now,
    });
    if (outcome !== 'approved' && outcome !== 'recorded' && outcome !== 'denied') {
      throw decideRefusal(outcome, request);
    }
    if (!after) throw unavailable('approval_store_inconsistent', 'approval store returned no record');
    await this.record({
      type: outcome === 'denied' ? 'approval.denied' : 'approval.approved',
      ...base,
      outcome,
      approvals_received: after.approvals.length,
      approvals_required: after.required,
      ...decisionFields(decision),
    });
    return { approval: after, outcome };
  }

  /**
   * Nobody decides their own request, and policy must allow the caller to decide this one; a
   * refusal is recorded (approval.decision_refused), counted as a strike and thrown.
   */
  private async mayDecide(
    caller: Caller,
    request: ApprovalRequest,
    role: RoleDefinition,
    base: { agent: string; approve: boolean } & Record<string, unknown>,
  ): Promise<PolicyDecision> {
    if (request.requester === caller.spiffeId) {
      await this.record({ type: 'approval.decision_refused', ...base, refusal: 'self_approval' });
      const err = permissionDenied('the requester cannot decide its own request', [], 'self_approval');
      return this.guard.refuse(caller, 'DecideApproval', err, {}, true);
    }
    if (base.approve && caller.human && isOwner(caller.human, this.deps.agentOwner?.(request.requester))) {
      await this.record({ type: 'approval.decision_refused', ...base, refusal: 'owner_approval' });
      const err = permissionDenied("an agent's owner cannot approve its requests", [], 'owner_approval');
      return this.guard.refuse(caller, 'DecideApproval', err, {}, true);
    }
    const decision = this.authorizeDecide(caller, request, role);
    if (decision.decision !== 'allow') {
      await this.record({
        type: 'approval.decision_refused',
        ...base,
        refusal: 'policy',
        ...decisionFields(decision),
      });
      const err = denialError(decision, `DecideApproval for "${request.role}"`);
      return this.guard.refuse(caller, 'DecideApproval', err, {}, true);
    }
    return decision;
  }

  async grantBreakGlass(
    caller: Caller,
    input: { agent: string; taskId: string; roles: string[]; reason: string; ttlSeconds: number },
  ): Promise<BreakGlassGrant> {
    let agent: string;
    try {
      agent = parseSpiffeId(input.agent, 'agent').toString();
    } catch {
      throw invalidArgument('agent', 'must be the SPIFFE ID of an agent');
    }
    // Cedar cannot compare context.target with the principal, so the two-person rule is here.
    if (agent === caller.spiffeId) {
      const err = permissionDenied('break-glass cannot be granted to yourself', [], 'self_grant');
      return this.guard.refuse(caller, 'BreakGlass', err, { target: agent, refusal: 'self_grant' });
    }
    const { taskId, roles, reason } = this.grantTerms(input);
    const base = {
      agent: caller.spiffeId,
      target: agent,
      ...(taskId ? { task: taskId } : {}),
      roles,
      reason,
      ttl_seconds: input.ttlSeconds,
      severity: 'critical',
    };
    await this.authorizeGrant(caller, base);
    const now = this.now();
    requireFreshSignIn(caller, this.deps.stepUp, now, 'granting break-glass');
    const grant: BreakGlassGrant = {
      id: this.newId(),
      grantedBy: caller.spiffeId,
      agent,
      ...(taskId ? { taskId } : {}),
      roles,
      reason,
      createdAt: now,
      expiresAt: now + input.ttlSeconds * 1000,
      uses: 0,
      reviewed: false,
    };
    // A grant nobody can account for must not stand: the record is written first, and a grant
    // whose record failed is never stored (marking it reviewed would not stop it from working).
    try {
      await this.deps.audit.write({
        type: 'breakglass.granted',
        ...base,
        grant: grant.id,
        expires_at: new Date(grant.expiresAt).toISOString(),
      });
    } catch (err) {
      throw unavailable('audit_unavailable', 'audit trail unavailable: break-glass refused', err);
    }
    await this.deps.breakGlass.grant(grant);
    return grant;
  }

  /** What a grant covers and why, checked; the TTL is required and capped by breakGlass.maxTtlSeconds. */
  private grantTerms(input: { taskId: string; roles: string[]; reason: string; ttlSeconds: number }): {
    taskId: string | undefined;
    roles: string[];
    reason: string;
  } {
    const taskId = input.taskId ? requireTaskId(input.taskId) : undefined;
    if (input.roles.length === 0) throw invalidArgument('roles', 'name at least one role');
    const roles = [...new Set(input.roles.map((r) => requireRoleName(r)))];
    for (const r of roles) if (!this.deps.roles.has(r)) throw invalidArgument('roles', `unknown role "${r}"`);
    const reason = boundedText(input.reason.trim(), 'reason', LIMITS.reason);
    if (!reason) throw invalidArgument('reason', 'is required: say why the glass is broken');
    const max = this.deps.breakGlassMaxTtlSeconds;
    if (!Number.isInteger(input.ttlSeconds) || input.ttlSeconds <= 0) {
      throw invalidArgument('ttl_seconds', `is required (1 to ${max})`);
    }
    if (input.ttlSeconds > max)
      throw invalidArgument('ttl_seconds', `must be at most ${max} (the break-glass cap)`);
    return { taskId, roles, reason };
  }

  /** Policy must allow BreakGlass for every role; the first refusal is recorded, a strike, and thrown. */
  private async authorizeGrant(
    caller: Caller,
    base: { agent: string; target: string; roles: string[]; reason: string; ttl_seconds: number },
  ): Promise<void> {
    for (const r of base.roles) {
      const decision = this.deps.policy().authorize({
        principal: policyPrincipal(caller),
        action: 'BreakGlass',
        resource: { type: 'Role', role: this.deps.roles.get(r) as RoleDefinition },
        context: { target: base.target, ttlSeconds: base.ttl_seconds, reason: base.reason },
      });
      if (decision.decision !== 'allow') {
        await this.record({ type: 'breakglass.denied', ...base, role: r, ...decisionFields(decision) });
        return this.guard.refuse(
          caller,
          'BreakGlass',
          denialError(decision, `BreakGlass for "${r}"`),
          {},
          true,
        );
      }
    }
  }

  async listBreakGlass(caller: Caller): Promise<BreakGlassGrant[]> {
    // Reviewing break-glass use is audit work: the WatchAudit admin action governs it.
    await this.guard.authorize(caller, 'WatchAudit', 'ListBreakGlass');
    const grants = await this.deps.breakGlass.listUnreviewed();
    await this.guard.recordRead(caller, 'ListBreakGlass', { count: grants.length });
    return grants;
  }

  async reviewBreakGlass(caller: Caller, input: { grantId: string; note: string }): Promise<BreakGlassGrant> {
    if (!input.grantId) throw invalidArgument('grant_id', 'is required');
    const grantId = input.grantId;
    const note = boundedText(input.note.trim(), 'note', LIMITS.reason);
    if (!note) throw invalidArgument('note', 'is required: record what the review found');
    await this.guard.authorize(caller, 'WatchAudit', 'ReviewBreakGlass');
    const grant = isBrokerId(grantId) ? await this.deps.breakGlass.get(grantId) : undefined;
    if (!grant) throw notFound('grant_not_found', `no break-glass grant ${printableId(grantId)}`);
    // A review is a second person's look: neither the grantor nor the agent that used the grant.
    if (grant.grantedBy === caller.spiffeId || grant.agent === caller.spiffeId) {
      const own = grant.grantedBy === caller.spiffeId ? 'you granted it' : 'it was granted to you';
      const err = permissionDenied(`you cannot review this break-glass grant: ${own}`, [], 'self_review');
      return this.guard.refuse(caller, 'ReviewBreakGlass', err, {
        grant: grantId,
        granted_by: grant.grantedBy,
        target: grant.agent,
        refusal: 'self_review',
      });
    }
    const reviewed = await this.deps.breakGlass.review(grantId, caller.spiffeId, note, this.now());
    if (!reviewed) throw notFound('grant_not_found', `no break-glass grant ${printableId(grantId)}`);
    await this.record({
      type: 'breakglass.reviewed',
      agent: caller.spiffeId,
      grant: grantId,
      target: reviewed.agent,
      uses: reviewed.uses,
      note,
    });
    return reviewed;
  }

  private authorizeDecide(caller: Caller, request: ApprovalRequest, role: RoleDefinition): PolicyDecision {
    const req: PolicyRequest = {
      principal: policyPrincipal(caller),
      action: 'DecideApproval',
      resource: { type: 'Role', role },
      context: {
        environment: request.environment,
        requester: request.requester,
        changeType: request.changeType,
        sensitivity: request.sensitivity,
        ttlSeconds: request.ttlSeconds,
      },
    };
    return this.deps.policy().authorize(req);
  }

  /** Admin records must be written: an unrecorded admin action is refused. */
  private record(event: AuditEventInput): Promise<void> {
    return this.guard.record(event);
  }
}

/** The error for a decision the approval store refused. */
function decideRefusal(
  outcome: Exclude<DecideOutcome, 'approved' | 'recorded' | 'denied'>,
  request: ApprovalRequest,
): BrokerError {
  switch (outcome) {
    case 'not_found':
      return notFound('approval_not_found', `no approval ${request.id}`);
    case 'self_approval':
      return permissionDenied('the requester cannot decide its own request', [], 'self_approval');
    case 'duplicate_approver':
      return failedPrecondition(
        'duplicate_approver',
        'you already approved this request; another approver is needed',
      );
    case 'expired':
      return failedPrecondition('approval_expired', 'the approval request has expired');
    case 'not_pending':
      return failedPrecondition('approval_not_pending', `the approval request is already ${request.state}`);
  }
}

/** Approval and grant ids are UUIDs the broker made (requireTaskId's shape). */
function isBrokerId(id: string): boolean {
  try {
    requireTaskId(id);
    return true;
  } catch {
    return false;
  }
}

/** An id as typed, safe to echo: anything unusual is quoted and cut short. */
function printableId(id: string): string {
  return /^[A-Za-z0-9._-]{1,64}$/.test(id) ? id : JSON.stringify(id.slice(0, 64));
}
