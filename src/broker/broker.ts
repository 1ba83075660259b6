/**
 * The use cases: begin task, issue credential, end task, revoke. No gRPC types in here: callers
 * arrive as verified `Caller`s, failures leave as BrokerErrors.
 *
 * Fail-closed order of IssueCredential: validate -> load task -> policy -> mint at the backend ->
 * write the lease -> write the audit record -> return. If the lease or the audit record cannot be
 * written, the credential is revoked at the backend and nothing leaves the broker.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AuditEventInput, AuditSink } from '../audit/types.js';
import type { ChangeType, Sensitivity } from '../config/schema.js';
import type { Credential, CredentialBackend, RoleDefinition } from '../credentials/backend.js';
import {
  BrokerError,
  failedPrecondition,
  invalidArgument,
  isBrokerError,
  notFound,
  permissionDenied,
  unavailable,
} from '../errors.js';
import type { Caller } from '../identity/types.js';
import type { RevocationQueue } from '../leases/revocation-queue.js';
import { revocationBackoff } from '../leases/revocation-worker.js';
import type { Lease, LeaseStore, Task, TaskLeaseSummary } from '../leases/types.js';
import type { ApprovalRequest, ApprovalStore, BreakGlassStore } from '../approvals/types.js';
import type { BudgetStore } from '../budgets/types.js';
import { decideWithApprovalGate } from '../policy/approval-gate.js';
import type { PolicyEngine } from '../policy/types.js';
import { quarantinedError } from '../quarantine/quarantine-view.js';
import { approvalDigest } from './approval-digest.js';
import { roleOptions, type RoleOption } from './role-options.js';
import { decisionFields, denialError } from './decisions.js';
import {
  budgetError,
  budgetFields,
  budgetScopesFor,
  type BudgetConfig,
  type BudgetScopes,
} from './budget-scopes.js';
import {
  LIMITS,
  boundedText,
  changeTypeOrDefault,
  maxSensitivity,
  optionalSensitivity,
  optionalTtl,
  requireRoleName,
  requireTaskId,
  validLabels,
} from './validate.js';

export interface BeginTaskInput {
  environment: string;
  intent: string;
  ttlSeconds: number;
  labels: Record<string, string>;
}

export interface IssueCredentialInput {
  taskId: string;
  role: string;
  ttlSeconds: number;
  sensitivity: string;
  changeType: string;
  justification: string;
  tool: string;
}

export interface IssuedLease {
  leaseId: string;
  expiresAt: number;
  ttlSeconds: number;
  credential: Credential;
  role: string;
  taskId: string;
  environment: string;
  policyIds: string[];
  breakGlass: boolean;
}

/** IssueCredential either issues or parks the request for human approval. */
export type IssueOutcome =
  | ({ status: 'issued' } & IssuedLease)
  | {
      status: 'pending_approval';
      approval: ApprovalRequest;
      role: string;
      taskId: string;
      environment: string;
    };

export interface RevokedLeaseSummary {
  leaseId: string;
  role: string;
  /**
   * `revoking`: the backend refused for now; the revocation queue keeps retrying it.
   * `not_revocable`: the backend cannot revoke it one by one (cloud STS); it lives until it expires.
   */
  state: 'revoked' | 'revoking' | 'not_revocable';
}

export interface BrokerDeps {
  store: LeaseStore;
  /** A getter, so a policy reload can swap the engine between requests. */
  policy: () => PolicyEngine;
  audit: AuditSink;
  backends: ReadonlyMap<string, CredentialBackend>;
  roles: ReadonlyMap<string, RoleDefinition>;
  environments: readonly string[];
  tasks: { defaultTtlSeconds: number; maxTtlSeconds: number };
  approvals: ApprovalStore;
  /** Seconds a pending approval waits for humans. */
  approvalTtlSeconds: number;
  breakGlass: BreakGlassStore;
  budgets: BudgetStore;
  /** Durable queue for backend revokes that failed; its worker retries them. */
  revocations: RevocationQueue;
  revocationRetry: { baseDelayMs: number; maxDelayMs: number };
  budgetLimits: BudgetConfig;
  /** The agent catalog: AgentGroups of a SPIFFE ID (also given to policy). */
  agentGroups: (spiffeId: string) => readonly string[];
  /**
   * This replica's quarantine check, run first on every call (throws PERMISSION_DENIED
   * "quarantined", or UNAVAILABLE when the replica's invalidation feed is stale). The lease store
   * checks again, atomically with the lease write, for requests already in flight.
   */
  quarantine?: { check(agent: string): void };
  /** Automatic quarantine triggers: they see every refusal and screen each credential request. */
  incidents?: IncidentHooks;
  logger: Logger;
  now?: () => number;
  newId?: () => string;
}

/** What the automatic quarantine triggers need from the broker (src/quarantine/triggers.ts). */
export interface IncidentHooks {
  /** After a refused call was audited; never throws into the caller's path. */
  onRefused(agent: string, err: BrokerError, request: Record<string, unknown>): Promise<void>;
  /** Before policy, for each credential request; throws (quarantined) when it quarantined the agent. */
  screenRequest(agent: string, request: ScreenedRequest): Promise<void>;
}

export interface ScreenedRequest {
  taskId: string;
  role: string;
  environment: string;
  sensitivity: Sensitivity;
}

/** One lease of a bulk revocation and what became of it at its backend. */
export interface BulkRevocationResult {
  lease: Lease;
  outcome: 'revoked' | 'pending_retry' | 'not_revocable';
  /** Why the backend refused (pending_retry); never a secret. */
  error?: string;
}

const MIN_CREDENTIAL_SECONDS = 1;
/** Backend revokes in flight at once during a bulk revocation. */
const BULK_REVOKE_CONCURRENCY = 64;

export class Broker {
  private readonly now: () => number;
  private readonly newId: () => string;

  constructor(private readonly deps: BrokerDeps) {
    this.now = deps.now ?? Date.now;
    this.newId = deps.newId ?? randomUUID;
  }

  /** Every attempt leaves an audit record: refusals the steps below did not record are recorded here. */
  async beginTask(caller: Caller, input: BeginTaskInput): Promise<Task> {
    const attempt: Attempt = { audited: false };
    try {
      return await this.begin(caller, input, attempt);
    } catch (err) {
      if (!attempt.audited) {
        await this.auditDenial({
          type: refusalType(err, 'task.denied', 'task.failed'),
          agent: caller.spiffeId,
          environment: clip(input.environment),
          ...refusalFields(err),
        });
      }
      await this.noteRefusal(caller, err, { action: 'BeginTask', environment: clip(input.environment) });
      throw err;
    }
  }

  private async begin(caller: Caller, input: BeginTaskInput, attempt: Attempt): Promise<Task> {
    this.deps.quarantine?.check(caller.spiffeId);
    const environment = input.environment;
    if (!environment) throw invalidArgument('environment', 'is required');
    if (!this.deps.environments.includes(environment)) {
      throw invalidArgument(
        'environment',
        `unknown environment (configured: ${this.deps.environments.join(', ')})`,
      );
    }
    const intent = boundedText(input.intent, 'intent', LIMITS.intent);
    const labels = validLabels(input.labels);
    const requested = optionalTtl(input.ttlSeconds);
    const ttlSeconds = Math.min(
      requested || this.deps.tasks.defaultTtlSeconds,
      this.deps.tasks.maxTtlSeconds,
    );

    const decision = this.deps.policy().authorize({
      principal: caller.spiffeId,
      action: 'BeginTask',
      resource: { type: 'Environment', id: environment },
      context: { environment, ttlSeconds, intent, authMethod: caller.authMethod },
    });
    if (decision.decision !== 'allow') {
      await this.auditDenial(
        {
          type: 'task.denied',
          agent: caller.spiffeId,
          environment,
          intent,
          ttl_seconds: ttlSeconds,
          ...decisionFields(decision),
        },
        attempt,
      );
      throw denialError(decision, `BeginTask in "${environment}"`);
    }

    const now = this.now();
    const taskId = this.newId();
    const scopes = this.budgetScopes(caller.spiffeId, taskId);
    const budget = await this.deps.budgets.reserveTask(scopes.task, taskId, now + ttlSeconds * 1000, now);
    if (!budget.ok) {
      await this.auditDenial(
        {
          type: 'budget.exceeded',
          agent: caller.spiffeId,
          environment,
          ttl_seconds: ttlSeconds,
          ...budgetFields(budget),
        },
        attempt,
      );
      throw budgetError(budget);
    }
    const task: Task = {
      id: taskId,
      agent: caller.spiffeId,
      environment,
      intent,
      labels,
      createdAt: now,
      expiresAt: now + ttlSeconds * 1000,
      state: 'active',
    };
    try {
      await this.deps.store.createTask(task);
    } catch (err) {
      await this.deps.budgets.releaseTask(scopes.taskNames, taskId).catch(() => undefined);
      throw err;
    }
    try {
      await this.deps.audit.write({
        type: 'task.begun',
        agent: caller.spiffeId,
        task: task.id,
        environment,
        intent,
        labels,
        ttl_seconds: ttlSeconds,
        expires_at: new Date(task.expiresAt).toISOString(),
        auth_method: caller.authMethod,
        ...decisionFields(decision),
      });
    } catch (err) {
      // An unrecorded task must not be usable.
      await this.deps.store.endTask(task.id, 'ended', 'audit_unavailable', this.now()).catch(() => undefined);
      attempt.audited = true; // the trail itself is down: nothing more can be recorded
      throw auditUnavailable(err);
    }
    return task;
  }

  async getTask(caller: Caller, taskId: string): Promise<Task> {
    this.deps.quarantine?.check(caller.spiffeId);
    return this.ownTask(caller, requireTaskId(taskId));
  }

  /** The roles the agent may ask for in its task now (a dry evaluation: grants nothing). */
  async listRoles(caller: Caller, input: { taskId: string }): Promise<RoleOption[]> {
    this.deps.quarantine?.check(caller.spiffeId);
    const task = await this.ownTask(caller, requireTaskId(input.taskId));
    const summary = await this.taskLeaseSummary(task.id);
    const options = roleOptions(this.deps.policy(), this.deps.roles.values(), {
      caller,
      task,
      summary,
      now: this.now(),
    });
    await this.deps.audit
      .write({
        type: 'task.roles_listed',
        agent: caller.spiffeId,
        task: task.id,
        environment: task.environment,
        allowed: options.filter((o) => o.decision !== 'deny').map((o) => o.name),
      })
      .catch((err: unknown) => {
        throw auditUnavailable(err);
      });
    return options;
  }

  async issueCredential(caller: Caller, input: IssueCredentialInput): Promise<IssueOutcome> {
    const attempt: Attempt = { audited: false };
    try {
      return await this.issue(caller, input, attempt);
    } catch (err) {
      if (!attempt.audited) {
        await this.auditDenial({
          type: refusalType(err, 'credential.denied', 'credential.failed'),
          agent: caller.spiffeId,
          task: clip(input.taskId),
          role: clip(input.role),
          ...refusalFields(err),
        });
      }
      await this.noteRefusal(caller, err, {
        action: 'IssueCredential',
        task: clip(input.taskId),
        role: clip(input.role),
      });
      throw err;
    }
  }

  private async issue(caller: Caller, input: IssueCredentialInput, attempt: Attempt): Promise<IssueOutcome> {
    this.deps.quarantine?.check(caller.spiffeId);
    const taskId = requireTaskId(input.taskId);
    const roleName = requireRoleName(input.role);
    const requestedTtl = optionalTtl(input.ttlSeconds);
    const declared = optionalSensitivity(input.sensitivity);
    const changeType: ChangeType = changeTypeOrDefault(input.changeType);
    const justification = boundedText(input.justification, 'justification', LIMITS.justification);
    const tool = boundedText(input.tool, 'tool', LIMITS.tool);
    const role = this.deps.roles.get(roleName);
    if (!role) throw invalidArgument('role', `unknown role "${roleName}"`);
    const backend = this.deps.backends.get(role.backend);
    if (!backend) throw unavailable('backend_not_configured', `backend "${role.backend}" is not configured`);

    const task = await this.ownTask(caller, taskId);
    const now = this.now();
    const remainingSeconds = Math.floor((task.expiresAt - now) / 1000);
    if (remainingSeconds < MIN_CREDENTIAL_SECONDS)
      throw failedPrecondition('task_expired', 'task has expired');
    const ttlSeconds = Math.min(requestedTtl || role.maxTtlSeconds, role.maxTtlSeconds, remainingSeconds);
    const sensitivity: Sensitivity = maxSensitivity(role.sensitivity, declared);
    await this.deps.incidents?.screenRequest(caller.spiffeId, {
      taskId: task.id,
      role: role.name,
      environment: task.environment,
      sensitivity,
    });

    // An approval is bound to what was asked (the requested TTL, not the task-bounded one, which
    // shrinks as the task ages), so the same request finds its approval and any change needs a new one.
    const digest = approvalDigest({
      agent: caller.spiffeId,
      taskId: task.id,
      role: role.name,
      environment: task.environment,
      ttlSeconds: requestedTtl || role.maxTtlSeconds,
      sensitivity,
      changeType,
      justification,
    });
    // Independent reads on the issuance path: one round trip's wait instead of three.
    const [{ count: taskCredentialCount, roles: taskRoles }, grant, open] = await Promise.all([
      this.taskLeaseSummary(taskId),
      this.deps.breakGlass.findActive(caller.spiffeId, task.id, role.name, now),
      this.deps.approvals.findOpenByDigest(digest, now),
    ]);
    const approved = open?.state === 'approved';
    const gated = decideWithApprovalGate(this.deps.policy(), {
      principal: caller.spiffeId,
      action: 'IssueCredential',
      resource: { type: 'Role', role },
      context: {
        environment: task.environment,
        ttlSeconds,
        sensitivity,
        changeType,
        tool,
        justification,
        intent: task.intent,
        authMethod: caller.authMethod,
        taskAgeSeconds: Math.max(0, Math.floor((now - task.createdAt) / 1000)),
        taskRoles,
        taskCredentialCount,
        approved,
        approvalCount: approved ? (open?.approvals.length ?? 0) : 0,
        breakGlass: grant !== undefined,
      },
    });
    const decision = gated.decision;
    const requestFields = {
      agent: caller.spiffeId,
      task: task.id,
      role: role.name,
      environment: task.environment,
      ttl_seconds: ttlSeconds,
      sensitivity,
      change_type: changeType,
      tool,
      justification,
      auth_method: caller.authMethod,
      ...(grant ? { break_glass: grant.id, severity: 'critical' } : {}),
    };
    if (gated.outcome === 'deny') {
      await this.auditDenial(
        { type: 'credential.denied', ...requestFields, ...decisionFields(decision) },
        attempt,
      );
      throw denialError(decision, `IssueCredential for "${role.name}"`);
    }
    if (gated.outcome === 'approval_required') {
      // The same request while one is open answers with that one: no duplicate approvals.
      if (open?.state === 'pending') {
        attempt.audited = true; // recorded when it was first requested
        return {
          status: 'pending_approval',
          approval: open,
          role: role.name,
          taskId: task.id,
          environment: task.environment,
        };
      }
      const approval: ApprovalRequest = {
        id: this.newId(),
        digest,
        requester: caller.spiffeId,
        taskId: task.id,
        role: role.name,
        environment: task.environment,
        ttlSeconds: requestedTtl || role.maxTtlSeconds,
        sensitivity,
        changeType,
        justification,
        tool,
        required: gated.approvalsRequired,
        policyIds: decision.policyIds,
        createdAt: now,
        // Never past the task: an approval for a dead task is worthless.
        expiresAt: Math.min(now + this.deps.approvalTtlSeconds * 1000, task.expiresAt),
        state: 'pending',
        approvals: [],
      };
      // Recorded before it exists: an approval nobody can account for is never offered to approvers.
      try {
        await this.deps.audit.write({
          type: 'approval.requested',
          ...requestFields,
          approval: approval.id,
          approvals_required: approval.required,
          approval_expires_at: new Date(approval.expiresAt).toISOString(),
          ...decisionFields(decision),
        });
      } catch (err) {
        attempt.audited = true; // the trail itself is down: nothing more can be recorded
        throw auditUnavailable(err);
      }
      attempt.audited = true;
      await this.deps.approvals.create(approval);
      return {
        status: 'pending_approval',
        approval,
        role: role.name,
        taskId: task.id,
        environment: task.environment,
      };
    }
    // Allowed. An approval that was there is spent now, whether or not this decision needed it:
    // single use means the next identical request asks again.
    let approvalUsed: ApprovalRequest | undefined;
    if (approved && open) {
      approvalUsed = await this.deps.approvals.consume(open.id, digest, now);
      if (!approvalUsed) throw failedPrecondition('approval_consumed', 'the approval was already used');
    }
    const approvalFields = approvalUsed
      ? { approval: approvalUsed.id, approvers: approvalUsed.approvals.map((a) => a.approver) }
      : {};

    const leaseId = this.newId();
    const scopes = this.budgetScopes(caller.spiffeId, task.id);
    const budget = await this.deps.budgets.reserveCredential(
      scopes.credential,
      leaseId,
      Math.min(now + ttlSeconds * 1000, task.expiresAt),
      now,
    );
    if (!budget.ok) {
      await this.auditDenial({ type: 'budget.exceeded', ...requestFields, ...budgetFields(budget) }, attempt);
      throw budgetError(budget);
    }
    const releaseBudget = (): Promise<void> =>
      this.deps.budgets
        .releaseLease(scopes.names, leaseId)
        .catch((err: unknown) =>
          this.deps.logger.warn({ err: safeErr(err), lease: leaseId }, 'budget release failed'),
        );
    let issued;
    try {
      issued = await backend.issue({
        leaseId,
        agent: caller.spiffeId,
        taskId: task.id,
        environment: task.environment,
        role,
        ttlSeconds,
        notAfter: task.expiresAt,
        now,
      });
    } catch (err) {
      this.deps.logger.error({ err: safeErr(err), lease: leaseId, role: role.name }, 'backend issue failed');
      await releaseBudget();
      await this.auditDenial(
        {
          type: 'credential.failed',
          ...requestFields,
          lease: leaseId,
          stage: 'backend',
          error: isBrokerError(err) ? err.reason : 'backend_error',
        },
        attempt,
      );
      throw isBrokerError(err)
        ? err
        : unavailable('backend_unavailable', `backend "${role.backend}" is unavailable`);
    }

    const lease: Lease = {
      id: leaseId,
      agent: caller.spiffeId,
      taskId: task.id,
      environment: task.environment,
      role: role.name,
      backend: role.backend,
      backendRef: issued.backendRef,
      issuedAt: now,
      expiresAt: Math.min(issued.expiresAt, task.expiresAt),
      state: 'active',
    };
    const undo = async (why: string): Promise<void> => {
      await releaseBudget();
      await backend
        .revoke({ leaseId, backendRef: issued.backendRef, expiresAt: lease.expiresAt })
        .catch(async (err: unknown) => {
          this.deps.logger.error({ err: safeErr(err), lease: leaseId }, `revoke after ${why} failed: queued`);
          await this.queueRevocation(
            { id: leaseId, backend: role.backend, backendRef: issued.backendRef, expiresAt: lease.expiresAt },
            why,
            safeErr(err).message,
          );
        });
    };

    let put;
    try {
      put = await this.deps.store.putLease(lease, this.now());
    } catch (err) {
      await undo('lease write failure');
      await this.auditDenial(
        {
          type: 'credential.failed',
          ...requestFields,
          lease: leaseId,
          stage: 'lease_store',
        },
        attempt,
      );
      throw isBrokerError(err) ? err : unavailable('lease_store_unavailable', 'lease store unavailable', err);
    }
    if (put === 'agent_quarantined') {
      // Quarantined while this request was in flight: its credential never leaves the broker.
      await undo('quarantine');
      await this.auditDenial(
        { type: 'credential.denied', ...requestFields, lease: leaseId, reason: 'quarantined', stage: put },
        attempt,
      );
      throw quarantinedError();
    }
    if (put !== 'ok') {
      await undo(`lease rejected (${put})`);
      await this.auditDenial(
        { type: 'credential.failed', ...requestFields, lease: leaseId, stage: put },
        attempt,
      );
      throw failedPrecondition(put, taskProblem(put));
    }

    try {
      await this.deps.audit.write({
        type: 'credential.issued',
        ...requestFields,
        ...approvalFields,
        lease: leaseId,
        backend: role.backend,
        expires_at: new Date(lease.expiresAt).toISOString(),
        ...decisionFields(decision),
      });
    } catch (err) {
      // No record, no credential: end the lease, revoke at the backend.
      await this.deps.store
        .markLeaseEnded(leaseId, 'revoked', 'audit_unavailable', this.now())
        .catch((e: unknown) =>
          this.deps.logger.error({ err: safeErr(e), lease: leaseId }, 'lease end failed'),
        );
      await undo('audit failure');
      attempt.audited = true; // the trail itself is down: nothing more can be recorded
      throw auditUnavailable(err);
    }

    // Last look before the credential leaves: a quarantine that landed after the lease was written
    // (or a feed gone stale meanwhile) still stops it; the lease is revoked like any other.
    try {
      this.deps.quarantine?.check(caller.spiffeId);
    } catch (err) {
      await this.revokeLease(lease, isBrokerError(err) ? err.reason : 'quarantined').catch((e: unknown) =>
        this.deps.logger.error({ err: safeErr(e), lease: leaseId }, 'revoke after a late quarantine failed'),
      );
      attempt.audited = true; // issued and revoked, both recorded
      throw err;
    }

    if (grant) {
      await this.deps.breakGlass
        .recordUse(grant.id)
        .catch((err: unknown) =>
          this.deps.logger.warn({ err: safeErr(err), grant: grant.id }, 'break-glass use count failed'),
        );
    }
    return {
      status: 'issued',
      breakGlass: grant !== undefined,
      leaseId,
      expiresAt: lease.expiresAt,
      // Backends round expiry down to whole seconds (JWT exp), so round up: this equals exp - iat,
      // never 0 for an issued credential, never role max - 1 when the full role max was granted.
      ttlSeconds: Math.max(0, Math.ceil((lease.expiresAt - now) / 1000)),
      credential: issued.credential,
      role: role.name,
      taskId: task.id,
      environment: task.environment,
      policyIds: decision.policyIds,
    };
  }

  /**
   * Waits for the caller's pending approval; once approved, issues the credential through the same
   * path as IssueCredential (which spends the approval). Polls the shared store, so an approval
   * decided on any replica is seen.
   */
  async awaitApproval(
    caller: Caller,
    input: { approvalId: string },
    opts: { pollMs: number; signal: AbortSignal; onProgress: (approval: ApprovalRequest) => void },
  ): Promise<Extract<IssueOutcome, { status: 'issued' }>> {
    const approvalId = requireTaskId(input.approvalId, 'approval_id');
    let lastSeen = -1;
    for (;;) {
      if (opts.signal.aborted) throw failedPrecondition('cancelled', 'the wait was cancelled');
      this.deps.quarantine?.check(caller.spiffeId);
      const approval = await this.deps.approvals.get(approvalId, this.now());
      if (!approval) throw notFound('approval_not_found', 'approval not found');
      if (approval.requester !== caller.spiffeId) {
        throw failedPrecondition('approval_not_yours', 'the approval belongs to another agent');
      }
      switch (approval.state) {
        case 'denied':
          throw permissionDenied(
            `request denied by ${approval.denial?.approver ?? 'an approver'}: ${approval.denial?.reason ?? ''}`,
            approval.policyIds,
            'approval_denied',
          );
        case 'expired':
          throw failedPrecondition(
            'approval_expired',
            'the approval request expired before enough approvals',
          );
        case 'consumed':
          throw failedPrecondition('approval_consumed', 'the approval was already used');
        case 'approved': {
          const outcome = await this.issueCredential(caller, {
            taskId: approval.taskId,
            role: approval.role,
            ttlSeconds: approval.ttlSeconds,
            sensitivity: approval.sensitivity,
            changeType: approval.changeType,
            justification: approval.justification,
            tool: approval.tool,
          });
          if (outcome.status === 'issued') return outcome;
          // Policy changed under us and wants a new approval: report it rather than loop.
          throw failedPrecondition(
            'approval_required_again',
            `a new approval is needed: ${outcome.approval.id}`,
          );
        }
        case 'pending':
          if (approval.approvals.length !== lastSeen) {
            lastSeen = approval.approvals.length;
            opts.onProgress(approval);
          }
          await sleep(opts.pollMs, opts.signal);
      }
    }
  }

  async endTask(
    caller: Caller,
    input: { taskId: string; reason: string },
  ): Promise<{ task: Task; revoked: RevokedLeaseSummary[] }> {
    const taskId = requireTaskId(input.taskId);
    const reason = boundedText(input.reason, 'reason', LIMITS.reason) || 'ended by agent';
    this.deps.quarantine?.check(caller.spiffeId);
    const task = await this.ownTask(caller, taskId);
    if (task.state !== 'active') throw failedPrecondition('task_ended', `task is already ${task.state}`);
    const ended = await this.deps.store.endTask(taskId, 'ended', reason, this.now());
    if (!ended) throw failedPrecondition('task_ended', 'task is no longer active');
    const revoked = await this.revokeTaskLeases(ended, 'task_ended');
    await this.releaseTaskBudget(ended);
    await this.auditAfterRevocation({
      type: 'task.ended',
      agent: caller.spiffeId,
      task: taskId,
      environment: ended.environment,
      reason,
      revoked_leases: revoked.map((r) => r.leaseId),
    });
    return { task: ended, revoked };
  }

  /** Reaper callback: the task was already moved to `expired` by the store. */
  async onTaskExpired(task: Task): Promise<void> {
    const revoked = await this.revokeTaskLeases(task, 'task_expired');
    await this.releaseTaskBudget(task);
    await this.auditAfterRevocation({
      type: 'task.ended',
      agent: task.agent,
      task: task.id,
      environment: task.environment,
      reason: 'expired',
      revoked_leases: revoked.map((r) => r.leaseId),
    });
  }

  /** Reaper callback: the lease was already moved to `expired` by the store; make sure the backend agrees. */
  async onLeaseExpired(lease: Lease): Promise<void> {
    await this.releaseLeaseBudget(lease);
    const backend = this.deps.backends.get(lease.backend);
    let ok = true;
    try {
      await backend?.revoke({ leaseId: lease.id, backendRef: lease.backendRef, expiresAt: lease.expiresAt });
    } catch (err) {
      ok = false;
      this.deps.logger.error(
        { err: safeErr(err), lease: lease.id },
        'backend revoke of expired lease failed: queued for retry',
      );
      await this.queueRevocation(lease, 'expired', safeErr(err).message);
    }
    await this.auditAfterRevocation({
      type: ok ? 'lease.expired' : 'lease.revoke_queued',
      agent: lease.agent,
      lease: lease.id,
      task: lease.taskId,
      role: lease.role,
      environment: lease.environment,
      reason: 'expired',
    });
  }

  /** Revokes every active lease of a task, at the backend first. */
  async revokeTaskLeases(task: Task, reason: string): Promise<RevokedLeaseSummary[]> {
    const leases = await this.deps.store.listLeases({ taskId: task.id, state: 'active' });
    const results = await Promise.all(leases.map((lease) => this.revokeLease(lease, reason)));
    return results.filter((r): r is RevokedLeaseSummary => r !== undefined);
  }

  /**
   * Revokes at the backend, then records the outcome. Backend revokes are idempotent, so two
   * replicas racing here both revoke and only the one whose state transition wins audits it.
   */
  async revokeLease(lease: Lease, reason: string): Promise<RevokedLeaseSummary | undefined> {
    const now = this.now();
    // Crash-safe order: the job is durable before the ledger moves, so a broker that dies anywhere
    // below leaves either an active lease or a queued revocation, never a forgotten credential.
    await this.deps.revocations.enqueue(
      {
        leaseId: lease.id,
        backend: lease.backend,
        backendRef: lease.backendRef,
        expiresAt: lease.expiresAt,
        reason,
        attempts: 0,
      },
      now + this.deps.revocationRetry.baseDelayMs,
    );
    const revoking = await this.deps.store.markLeaseEnded(lease.id, 'revoking', reason, now);
    if (!revoking) {
      // Someone else ended it (another replica, the reaper); their revocation stands.
      await this.deps.revocations.complete(lease.id).catch(() => false);
      return undefined;
    }
    await this.releaseLeaseBudget(lease);
    const result = await this.revokeAtBackend(lease);
    if (result.outcome !== 'pending_retry') {
      const notRevocable = result.outcome === 'not_revocable';
      await this.deps.store.markRevokeOutcome(
        lease.id,
        notRevocable ? 'revoke_failed' : 'revoked',
        notRevocable ? `not_revocable: ${reason}` : reason,
        this.now(),
      );
      await this.deps.revocations.complete(lease.id).catch(() => false);
    }
    await this.auditAfterRevocation(revocationEvent(result, reason));
    return {
      leaseId: lease.id,
      role: lease.role,
      state: result.outcome === 'pending_retry' ? 'revoking' : result.outcome,
    };
  }

  /**
   * The backend half of a bulk revocation: the store already moved `leases` to `revoking` and
   * queued a job for each (LeaseStore.revokeSelected). Revokes at each backend (bounded
   * concurrency), records every outcome in one store call, and audits each lease. A backend that
   * refuses leaves the job queued for the worker (its retries and backoff); a role whose
   * credentials cannot be revoked one by one ends `revoke_failed` as `not_revocable`.
   */
  async finishRevocations(leases: readonly Lease[], reason: string): Promise<BulkRevocationResult[]> {
    const results: BulkRevocationResult[] = [];
    for (let i = 0; i < leases.length; i += BULK_REVOKE_CONCURRENCY) {
      const chunk = leases.slice(i, i + BULK_REVOKE_CONCURRENCY);
      results.push(...(await Promise.all(chunk.map((lease) => this.revokeAtBackend(lease)))));
    }
    const at = this.now();
    const done = results.filter((r) => r.outcome !== 'pending_retry');
    await this.deps.store.completeRevocations(
      done.map((r) => ({
        id: r.lease.id,
        outcome: r.outcome === 'revoked' ? 'revoked' : 'revoke_failed',
        reason: r.outcome === 'revoked' ? reason : `not_revocable: ${reason}`,
      })),
      at,
    );
    await Promise.all(results.map((r) => this.auditAfterRevocation(revocationEvent(r, reason))));
    return results;
  }

  private async revokeAtBackend(lease: Lease): Promise<BulkRevocationResult> {
    const backend = this.deps.backends.get(lease.backend);
    const role = this.deps.roles.get(lease.role);
    try {
      if (!backend) throw new Error(`backend "${lease.backend}" is not configured`);
      await backend.revoke({ leaseId: lease.id, backendRef: lease.backendRef, expiresAt: lease.expiresAt });
    } catch (err) {
      const message = safeErr(err).message;
      this.deps.logger.error(
        { err: safeErr(err), lease: lease.id },
        'backend revoke failed: queued for retry',
      );
      await this.deps.revocations
        .retry(
          lease.id,
          this.now() + revocationBackoff(1, this.deps.revocationRetry, Math.random),
          1,
          message,
        )
        .catch(() => false);
      return { lease, outcome: 'pending_retry', error: message };
    }
    const expiresOnly = role !== undefined && backend.revocability?.(role) === 'expires_only';
    return { lease, outcome: expiresOnly ? 'not_revocable' : 'revoked' };
  }

  /** Lets the automatic quarantine triggers see a refusal; their failure never changes the answer. */
  private async noteRefusal(caller: Caller, err: unknown, request: Record<string, unknown>): Promise<void> {
    if (!this.deps.incidents || !isBrokerError(err)) return;
    await this.deps.incidents
      .onRefused(caller.spiffeId, err, request)
      .catch((e: unknown) =>
        this.deps.logger.error({ err: safeErr(e), agent: caller.spiffeId }, 'quarantine trigger failed'),
      );
  }

  /** Hands a failed backend revoke to the durable queue (it retries with backoff, resumes after restarts). */
  private async queueRevocation(
    lease: Pick<Lease, 'id' | 'backend' | 'backendRef' | 'expiresAt'>,
    reason: string,
    error: string,
  ): Promise<void> {
    await this.deps.revocations
      .enqueue(
        {
          leaseId: lease.id,
          backend: lease.backend,
          backendRef: lease.backendRef,
          expiresAt: lease.expiresAt,
          reason,
          attempts: 1,
          lastError: error,
        },
        this.now() + revocationBackoff(1, this.deps.revocationRetry, Math.random),
      )
      .catch((err: unknown) =>
        this.deps.logger.error({ err: safeErr(err), lease: lease.id }, 'revocation could not be queued'),
      );
  }

  /** What the task holds so far: the store's tally when it keeps one, else by listing its leases. */
  private async taskLeaseSummary(taskId: string): Promise<TaskLeaseSummary> {
    const tallied = await this.deps.store.taskLeaseSummary(taskId);
    if (tallied !== undefined) return tallied;
    const leases = await this.deps.store.listLeases({ taskId });
    return { count: leases.length, roles: [...new Set(leases.map((l) => l.role))].sort() };
  }

  private budgetScopes(agent: string, taskId: string): BudgetScopes {
    return budgetScopesFor(this.deps.budgetLimits, agent, this.deps.agentGroups(agent), taskId);
  }

  // Budgets also free themselves at expiry; an early release only returns the place sooner, so a
  // failure is logged, not raised.
  private async releaseLeaseBudget(lease: Lease): Promise<void> {
    await this.deps.budgets
      .releaseLease(this.budgetScopes(lease.agent, lease.taskId).names, lease.id)
      .catch((err: unknown) =>
        this.deps.logger.warn({ err: safeErr(err), lease: lease.id }, 'budget release failed'),
      );
  }

  private async releaseTaskBudget(task: Task): Promise<void> {
    await this.deps.budgets
      .releaseTask(this.budgetScopes(task.agent, task.id).taskNames, task.id)
      .catch((err: unknown) =>
        this.deps.logger.warn({ err: safeErr(err), task: task.id }, 'budget release failed'),
      );
  }

  private async ownTask(caller: Caller, taskId: string): Promise<Task> {
    const task = await this.deps.store.getTask(taskId);
    if (!task) throw notFound('task_not_found', 'task not found');
    if (task.agent !== caller.spiffeId)
      throw failedPrecondition('task_not_yours', 'task belongs to another agent');
    if (task.state !== 'active') throw failedPrecondition('task_ended', `task is ${task.state}`);
    if (task.expiresAt <= this.now()) throw failedPrecondition('task_expired', 'task has expired');
    return task;
  }

  /**
   * Revocations are never undone because the audit trail is down (revoking is the safe direction);
   * the failure is logged loudly, and issuance stays blocked while the sink is failed.
   */
  private async auditAfterRevocation(event: AuditEventInput): Promise<void> {
    try {
      await this.deps.audit.write(event);
    } catch (err) {
      this.deps.logger.error({ err: safeErr(err), event }, 'audit write failed after a revocation');
    }
  }

  /** Denials are audited too; if the audit trail is down the request is still denied. */
  private async auditDenial(event: AuditEventInput, attempt?: Attempt): Promise<void> {
    if (attempt) attempt.audited = true;
    try {
      await this.deps.audit.write(event);
    } catch (err) {
      this.deps.logger.error({ err: safeErr(err), type: event.type }, 'audit write failed for a denial');
    }
  }
}

/** The audit record of one lease's revocation at its backend. */
function revocationEvent(r: BulkRevocationResult, reason: string): AuditEventInput {
  const l = r.lease;
  return {
    type:
      r.outcome === 'revoked'
        ? 'lease.revoked'
        : r.outcome === 'not_revocable'
          ? 'lease.not_revocable'
          : 'lease.revoke_queued',
    agent: l.agent,
    lease: l.id,
    task: l.taskId,
    role: l.role,
    backend: l.backend,
    environment: l.environment,
    reason,
    ...(r.outcome === 'not_revocable' ? { valid_until: new Date(l.expiresAt).toISOString() } : {}),
    ...(r.error !== undefined ? { error: r.error } : {}),
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

interface Attempt {
  audited: boolean;
}

/** Untrusted request text in an audit record: bounded, whatever the caller sent. */
function clip(value: string, max = 256): string {
  return value.length > max ? `${value.slice(0, max)}…` : value;
}

/** Outages are failures; everything else the broker refused is a denial. */
function refusalType<D extends string, F extends string>(err: unknown, denied: D, failed: F): D | F {
  return isBrokerError(err) && err.code !== 'UNAVAILABLE' && err.code !== 'INTERNAL' ? denied : failed;
}

function refusalFields(err: unknown): Record<string, unknown> {
  if (!isBrokerError(err)) return { code: 'INTERNAL', reason: 'internal' };
  return { code: err.code, reason: err.reason, ...(err.field ? { field: err.field } : {}) };
}

function taskProblem(code: string): string {
  switch (code) {
    case 'task_not_found':
      return 'task not found';
    case 'task_not_active':
      return 'task ended while the credential was being issued';
    case 'task_expired':
      return 'task has expired';
    default:
      return 'credential would outlive its task';
  }
}

function auditUnavailable(cause: unknown): BrokerError {
  return unavailable('audit_unavailable', 'audit trail unavailable: request denied', cause);
}

/** Error fields safe to log: message and code, never a credential (backends never put secrets in errors). */
export function safeErr(err: unknown): { message: string; code?: string } {
  if (isBrokerError(err)) return { message: err.message, code: err.reason };
  if (err instanceof Error) return { message: err.message };
  return { message: String(err) };
}
