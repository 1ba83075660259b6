/**
 * The use cases: begin task, issue credential, end task, revoke. No gRPC types in here: callers
 * arrive as verified `Caller`s, failures leave as BrokerErrors.
 *
 * Fail-closed order of IssueCredential: validate -> load task -> policy -> mint at the backend ->
 * write the lease `pending` (only if the task is as the decision saw it) -> write the audit record
 * -> activate the lease -> return. If the lease or the audit record cannot be written, or the
 * lease cannot be activated, the credential is revoked at the backend and nothing leaves the
 * broker; a `pending` lease left behind by a crash is revoked by the reaper (an orphan).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { backendIdFields, type IdentifierHmac } from '../audit/identifier-hmac.js';
import type { AuditEventInput, AuditSink } from '../audit/types.js';
import {
  agentContextFields,
  agentContextOrNothing,
  agentContextPolicy,
  validAgentContext,
  type AgentContext,
  type AgentContextInput,
} from './agent-context.js';
import type { ChangeType, Sensitivity } from '../config/schema.js';
import type {
  Credential,
  CredentialBackend,
  IssuedCredential,
  RoleDefinition,
} from '../credentials/backend.js';
import {
  alreadyReported,
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
import { ORPHANED_REASON } from '../leases/lease-records.js';
import { revocationBackoff, validUntilText } from '../leases/revocation-worker.js';
import type { ActivateLeaseResult, Lease, LeaseStore, Task, TaskLeaseSummary } from '../leases/types.js';
import type {
  ApprovalRequest,
  ApprovalStore,
  BreakGlassGrant,
  BreakGlassStore,
  CreateApprovalResult,
  OpenApprovalCaps,
} from '../approvals/types.js';
import type { BudgetStore } from '../budgets/types.js';
import { decideWithApprovalGate } from '../policy/approval-gate.js';
import type { GatedDecision, PolicyDecision, PolicyEngine, PolicyRequest } from '../policy/types.js';
import { defaultDenyTtlHint } from '../policy/ttl-hint.js';
import { timed, type StageTimer } from '../observability/stage-timer.js';
import { quarantinedError } from '../quarantine/quarantine-view.js';
import type { ScreenedRequest } from '../quarantine/quarantine-service.js';
import { approvalDigest } from './approval-digest.js';
import { backendReason, publicBackendError } from './backend-error.js';
import { roleOptions, type RoleOption } from './role-options.js';
import { delegationContext, delegationFields, taskHistoryContext } from './task-history.js';
import { checkDelegatedRequest } from './delegation-scope.js';
import { walkSubtree } from './task-tree.js';
import { decisionFields, denialError } from './decisions.js';
import {
  approvalRateScopes,
  budgetError,
  budgetFields,
  openApprovalsError,
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
  /** What the agent says about the call (recorded as asserted by it, given to policy). */
  context?: AgentContextInput | null;
}

export interface IssueCredentialInput {
  taskId: string;
  role: string;
  ttlSeconds: number;
  sensitivity: string;
  changeType: string;
  justification: string;
  tool: string;
  /** What the agent says about the call (recorded as asserted by it, given to policy). */
  context?: AgentContextInput | null;
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

/** A task ended with its tree, and what it held. */
export interface EndedTask {
  task: Task;
  revoked: RevokedLeaseSummary[];
}

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
  /** HMAC of sensitive backend identifiers (accessors, session names) for the audit trail (audit.hmacKeyFile). */
  identifierHmac?: IdentifierHmac;
  backends: ReadonlyMap<string, CredentialBackend>;
  roles: ReadonlyMap<string, RoleDefinition>;
  environments: readonly string[];
  tasks: { defaultTtlSeconds: number; maxTtlSeconds: number };
  approvals: ApprovalStore;
  /** Seconds a pending approval waits for humans. */
  approvalTtlSeconds: number;
  /** Caps on open approval requests per agent and per task (approvals.maxOpenPerAgent/PerTask). */
  approvalCaps?: OpenApprovalCaps;
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
  /**
   * For the bench only (bench/run.ts measures issuance with and without them, in the same run):
   * `versionCheck: false` writes the lease without the decision's task version (decisions can be
   * outrun by a concurrent request of the same task), `twoPhase: false` writes it `active` at once
   * (a crash between the lease and the audit record leaves an orphan the reaper cannot see).
   * Both default to true; production never turns them off.
   */
  issuance?: IssuanceSafeguards;
  /** Times each step of IssueCredential by its name (the bench's stage breakdown); none in production. */
  stageTimer?: StageTimer;
}

export interface IssuanceSafeguards {
  versionCheck: boolean;
  twoPhase: boolean;
}

/** What the automatic quarantine triggers need from the broker (src/quarantine/triggers.ts). */
export interface IncidentHooks {
  /** After a refused call was audited; never throws into the caller's path. */
  onRefused(agent: string, err: BrokerError, request: Record<string, unknown>): Promise<void>;
  /** Before policy, for each credential request; throws (quarantined) when it quarantined the agent. */
  screenRequest(agent: string, request: ScreenedRequest): Promise<void>;
}

export type { ScreenedRequest };

/** One lease of a bulk revocation and what became of it at its backend. */
export interface BulkRevocationResult {
  lease: Lease;
  outcome: 'revoked' | 'pending_retry' | 'not_revocable';
  /** not_revocable: when the credential really ends, if not at the lease's expiry (Infinity: unknown). */
  validUntil?: number;
  /** Why the backend refused (pending_retry): its reason code, never its message. */
  error?: string;
}

const MIN_CREDENTIAL_SECONDS = 1;
/** The summary of a task that holds nothing (or is gone: the lease write then refuses). */
const noLeases = (): TaskLeaseSummary => ({ count: 0, roles: [], version: 0 });
/**
 * Decisions per IssueCredential when the task keeps changing under it (each round lost to another
 * lease of the same task). Every round has a winner, so this bounds the wait, not progress.
 */
export const MAX_DECISION_ROUNDS = 4;
/** Backend revokes in flight at once during a bulk revocation. */
const BULK_REVOKE_CONCURRENCY = 64;

export class Broker {
  private readonly now: () => number;
  private readonly newId: () => string;
  private readonly issuance: IssuanceSafeguards;

  /** Runs a step of the issuance pipeline, under the stage timer when there is one. */
  private readonly step: <T>(stage: string, fn: () => Promise<T>) => Promise<T>;

  constructor(private readonly deps: BrokerDeps) {
    const timer = deps.stageTimer;
    this.step = (stage, fn) => timed(timer, stage, fn);
    this.now = deps.now ?? Date.now;
    this.newId = deps.newId ?? randomUUID;
    this.issuance = deps.issuance ?? { versionCheck: true, twoPhase: true };
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
          ...agentContextFields(agentContextOrNothing(input.context)),
          ...refusalFields(err),
        });
      }
      await this.noteRefusal(caller, err, { action: 'BeginTask', environment: clip(input.environment) });
      throw err;
    }
  }

  /** BeginTask as its steps: validate -> decide -> reserve a budget place -> create -> record. */
  private async begin(caller: Caller, input: BeginTaskInput, attempt: Attempt): Promise<Task> {
    this.deps.quarantine?.check(caller.spiffeId);
    const asked = this.validateBegin(input);
    const { environment, intent, ttlSeconds, context } = asked;
    const decision = this.deps.policy().authorize({
      principal: caller.spiffeId,
      action: 'BeginTask',
      resource: { type: 'Environment', id: environment },
      context: {
        environment,
        ttlSeconds,
        intent,
        authMethod: caller.authMethod,
        ...agentContextPolicy(context),
        ...delegationContext({ agent: caller.spiffeId }),
      },
    });
    if (decision.decision !== 'allow') {
      await this.auditDenial(
        {
          type: 'task.denied',
          agent: caller.spiffeId,
          environment,
          intent,
          ttl_seconds: ttlSeconds,
          ...agentContextFields(context),
          ...decisionFields(decision),
        },
        attempt,
      );
      throw denialError(decision, `BeginTask in "${environment}"`);
    }
    const now = this.now();
    const task: Task = {
      id: this.newId(),
      agent: caller.spiffeId,
      environment,
      intent,
      labels: asked.labels,
      createdAt: now,
      expiresAt: now + ttlSeconds * 1000,
      state: 'active',
    };
    const taskNames = await this.reserveTaskPlace(task, asked, now, attempt);
    try {
      await this.deps.store.createTask(task);
    } catch (err) {
      await this.deps.budgets.releaseTask(taskNames, task.id).catch(() => undefined);
      throw err;
    }
    await this.recordTaskBegun(caller, task, asked, decision, attempt);
    return task;
  }

  /** BeginTask's input, checked; the TTL is the requested one (or the default), capped. */
  private validateBegin(input: BeginTaskInput): BeginCall {
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
    const context = validAgentContext(input.context);
    return { environment, intent, labels, ttlSeconds, context };
  }

  /** The task's place in the openTasks budgets (audited and thrown when one is spent); its scope names. */
  private async reserveTaskPlace(
    task: Task,
    asked: BeginCall,
    now: number,
    attempt: Attempt,
  ): Promise<string[]> {
    const scopes = this.budgetScopes(task.agent, task.id);
    const budget = await this.deps.budgets.reserveTask(scopes.task, task.id, task.expiresAt, now);
    if (!budget.ok) {
      await this.auditDenial(
        {
          type: 'budget.exceeded',
          agent: task.agent,
          environment: task.environment,
          ttl_seconds: asked.ttlSeconds,
          ...agentContextFields(asked.context),
          ...budgetFields(budget),
        },
        attempt,
      );
      throw budgetError(budget);
    }
    return scopes.taskNames;
  }

  /** No record, no task: a task whose `task.begun` cannot be written is ended at once. */
  private async recordTaskBegun(
    caller: Caller,
    task: Task,
    asked: BeginCall,
    decision: PolicyDecision,
    attempt: Attempt,
  ): Promise<void> {
    try {
      await this.deps.audit.write({
        type: 'task.begun',
        agent: caller.spiffeId,
        task: task.id,
        environment: task.environment,
        intent: task.intent,
        labels: task.labels,
        ttl_seconds: asked.ttlSeconds,
        expires_at: new Date(task.expiresAt).toISOString(),
        auth_method: caller.authMethod,
        ...agentContextFields(asked.context),
        ...decisionFields(decision),
      });
    } catch (err) {
      await this.deps.store.endTask(task.id, 'ended', 'audit_unavailable', this.now()).catch(() => undefined);
      attempt.audited = true; // the trail itself is down: nothing more can be recorded
      throw auditUnavailable(err);
    }
  }

  async getTask(caller: Caller, taskId: string): Promise<Task> {
    this.deps.quarantine?.check(caller.spiffeId);
    return this.ownTask(caller, requireTaskId(taskId));
  }

  /** The roles the agent may ask for in its task now (a dry evaluation: grants nothing). */
  async listRoles(caller: Caller, input: { taskId: string }): Promise<RoleOption[]> {
    this.deps.quarantine?.check(caller.spiffeId);
    const { task, summary } = await this.ownTaskWithSummary(caller, requireTaskId(input.taskId));
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
          ...agentContextFields(agentContextOrNothing(input.context)),
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

  /**
   * IssueCredential as its steps: validate -> load task -> screen, then rounds of decide ->
   * reserve -> mint -> record lease (pending) -> record audit -> activate -> last look. The lease
   * write carries the task version the decision saw: a round whose write finds the task changed
   * (another lease of the task was written since) undoes what it minted and decides again, so a
   * decision always holds at the moment its lease is written.
   */
  private async issue(caller: Caller, input: IssueCredentialInput, attempt: Attempt): Promise<IssueOutcome> {
    const step = this.step;
    const req = await this.prepareIssue(caller, input);
    let held: ApprovalRequest | undefined;
    for (let round = 1; ; round++) {
      // The first round decides on the task as prepareIssue read it; later ones read it again.
      const known = round === 1 ? req.summary : undefined;
      const decided = await this.decideIssue(req, known, held, attempt);
      if (decided.status === 'pending_approval') return decided;
      held = decided.approvalUsed;
      const minted = await this.reserveAndMint(req, decided, attempt);
      const lease = await step('recordPendingLease', () =>
        this.recordPendingLease(req, decided, minted, attempt),
      );
      if (lease === 'task_changed') {
        if (round < MAX_DECISION_ROUNDS) continue;
        throw unavailable('task_changed', 'the task kept changing while the request was decided: retry');
      }
      await step('recordIssued', () => this.recordIssued(req, decided, minted, lease, attempt));
      await step('activate', () => this.activate(lease));
      await step('lastLook', () => this.lastLook(req, lease, attempt));
      return this.issuedOutcome(req, decided, minted, lease);
    }
  }

  /** Validate -> load task -> screen: everything a decision round needs, checked once. */
  private async prepareIssue(caller: Caller, input: IssueCredentialInput): Promise<IssueCall> {
    const asked = await this.step('validateIssue', async () => this.validateIssue(caller, input));
    const loaded = await this.step('loadTask', () => this.loadTask(caller, asked));
    checkDelegatedRequest(loaded.task, {
      role: asked.role.name,
      sensitivity: loaded.sensitivity,
      changeType: asked.changeType,
    });
    await this.step('screen', async () =>
      this.deps.incidents?.screenRequest(caller.spiffeId, {
        taskId: loaded.task.id,
        role: asked.role.name,
        environment: loaded.task.environment,
        sensitivity: loaded.sensitivity,
      }),
    );
    const { task } = loaded;
    const { role, requestedTtl, changeType, justification, tool } = asked;
    // An approval is bound to what was asked (the requested TTL, not the task-bounded one, which
    // shrinks as the task ages), so the same request finds its approval and any change needs a new one.
    const digest = approvalDigest({
      agent: caller.spiffeId,
      taskId: task.id,
      role: role.name,
      environment: task.environment,
      ttlSeconds: requestedTtl || role.maxTtlSeconds,
      sensitivity: loaded.sensitivity,
      changeType,
      justification,
      tool,
    });
    return { caller, ...asked, ...loaded, digest };
  }

  /** The request's fields, checked, and the role and backend it names. */
  private validateIssue(caller: Caller, input: IssueCredentialInput): AskedIssue {
    this.deps.quarantine?.check(caller.spiffeId);
    const taskId = requireTaskId(input.taskId);
    const roleName = requireRoleName(input.role);
    const requestedTtl = optionalTtl(input.ttlSeconds);
    const declared = optionalSensitivity(input.sensitivity);
    const changeType: ChangeType = changeTypeOrDefault(input.changeType);
    const justification = boundedText(input.justification, 'justification', LIMITS.justification);
    const tool = boundedText(input.tool, 'tool', LIMITS.tool);
    const context = validAgentContext(input.context);
    const role = this.deps.roles.get(roleName);
    if (!role) throw invalidArgument('role', `unknown role "${roleName}"`);
    const backend = this.deps.backends.get(role.backend);
    if (!backend) throw unavailable('backend_not_configured', `backend "${role.backend}" is not configured`);
    return { taskId, role, backend, requestedTtl, declared, changeType, justification, tool, context };
  }

  /**
   * The caller's own task with what it holds; the credential's TTL and sensitivity bounded by it.
   * In the same wait, what the first decision also reads that needs no task field: the
   * break-glass grant, and whether the task has any open approval request at all.
   */
  private async loadTask(caller: Caller, asked: AskedIssue): Promise<LoadedTask> {
    const now = this.now();
    // All three settle before any failure is reported, the task read's first: a missing task or
    // a lease store that is down reads as such, whichever reply came back first.
    const [{ task, summary }, grant, mayHaveApproval] = inOrder(
      await Promise.allSettled([
        this.ownTaskWithSummary(caller, asked.taskId),
        this.deps.breakGlass.findActive(caller.spiffeId, asked.taskId, asked.role.name, now),
        this.deps.approvals.mayHaveOpenForTask(asked.taskId, now),
      ]),
    );
    const remainingSeconds = Math.floor((task.expiresAt - now) / 1000);
    if (remainingSeconds < MIN_CREDENTIAL_SECONDS)
      throw failedPrecondition('task_expired', 'task has expired');
    const { role, requestedTtl } = asked;
    const ttlSeconds = Math.min(requestedTtl || role.maxTtlSeconds, role.maxTtlSeconds, remainingSeconds);
    const sensitivity: Sensitivity = maxSensitivity(role.sensitivity, asked.declared);
    return { task, summary, now, ttlSeconds, sensitivity, prefetched: { grant, mayHaveApproval } };
  }

  /**
   * One decision on the task as it is now (`known`: what it holds, when just read, else read here).
   * `held` is an approval an earlier round of this request already spent: it still counts, and is
   * not spent twice.
   */
  private async decideIssue(
    req: IssueCall,
    known: TaskLeaseSummary | undefined,
    held: ApprovalRequest | undefined,
    attempt: Attempt,
  ): Promise<Allowed | Extract<IssueOutcome, { status: 'pending_approval' }>> {
    const { role, now } = req;
    const { summary, grant, open } = await this.step('readGrants', () => this.readGrants(req, known, held));
    const approved = held !== undefined || open?.state === 'approved';
    const engine = this.deps.policy();
    const policyRequest = issuePolicyRequest(req, summary, {
      approved,
      approvalCount: approved ? (open?.approvals.length ?? 0) : 0,
      breakGlass: grant !== undefined,
    });
    const gated = await this.step('decide', async () => decideWithApprovalGate(engine, policyRequest));
    const decision = gated.decision;
    const requestFields = issueRequestFields(req, grant);
    if (gated.outcome === 'deny') {
      await this.auditDenial(
        { type: 'credential.denied', ...requestFields, ...decisionFields(decision) },
        attempt,
      );
      const defaultDeny = decision.policyIds.length === 0 && decision.errors.length === 0;
      const hint = defaultDeny ? defaultDenyTtlHint(engine, policyRequest) : '';
      throw denialError(decision, `IssueCredential for "${role.name}"`, hint);
    }
    if (gated.outcome === 'approval_required') {
      if (held)
        throw failedPrecondition('approval_required_again', 'the task changed: a new approval is needed');
      return this.requestApproval(req, gated, open, requestFields, attempt);
    }
    // Allowed. An approval that was there is spent now, whether or not this decision needed it:
    // single use means the next identical request asks again.
    let approvalUsed = held;
    if (!held && approved && open) {
      approvalUsed = await this.deps.approvals.consume(open.id, req.digest, now);
      if (!approvalUsed) throw failedPrecondition('approval_consumed', 'the approval was already used');
    }
    return {
      status: 'allowed',
      decision,
      version: summary.version,
      grant,
      ...(approvalUsed ? { approvalUsed } : {}),
      requestFields,
    };
  }

  /**
   * What the decision reads besides the request: the task's holdings, a break-glass grant, an
   * approval. The first round (`known`) takes what loadTask read and looks the approval up only
   * when the task may have one open: usually no wait at all. Later rounds read everything again.
   */
  private async readGrants(
    req: IssueCall,
    known: TaskLeaseSummary | undefined,
    held: ApprovalRequest | undefined,
  ): Promise<{ summary: TaskLeaseSummary; grant?: BreakGlassGrant; open?: ApprovalRequest }> {
    const { caller, task, role, now } = req;
    const first = known !== undefined;
    const lookUpApproval = held === undefined && (!first || req.prefetched.mayHaveApproval);
    // Independent reads on the issuance path: one round trip's wait instead of three.
    const [summary, grant, open] = await Promise.all([
      known ?? this.taskLeaseSummary(task.id),
      first
        ? req.prefetched.grant
        : this.deps.breakGlass.findActive(caller.spiffeId, task.id, role.name, now),
      lookUpApproval ? this.deps.approvals.findOpenByDigest(req.digest, now) : held,
    ]);
    return { summary, ...(grant ? { grant } : {}), ...(open ? { open } : {}) };
  }

  /**
   * The decision wants humans: park the request (or answer with the one already open). A new
   * request takes a place in the rate budgets, is recorded, then stored within the open caps.
   */
  private async requestApproval(
    req: IssueCall,
    gated: Extract<GatedDecision, { outcome: 'approval_required' }>,
    open: ApprovalRequest | undefined,
    requestFields: RequestFields,
    attempt: Attempt,
  ): Promise<Extract<IssueOutcome, { status: 'pending_approval' }>> {
    const { task, role } = req;
    const parked = {
      status: 'pending_approval',
      role: role.name,
      taskId: task.id,
      environment: task.environment,
    } as const;
    // The same request while one is open answers with that one: no duplicate approvals.
    if (open?.state === 'pending') {
      attempt.audited = true; // recorded when it was first requested
      return { ...parked, approval: open };
    }
    const approval = this.newApproval(req, gated);
    await this.reserveApprovalRate(req, approval, requestFields, attempt);
    // Recorded before it exists: an approval nobody can account for is never offered to approvers.
    try {
      await this.deps.audit.write({
        type: 'approval.requested',
        ...requestFields,
        approval: approval.id,
        // An approved request that no longer meets the gate (an @approvals raised since) is
        // never spent: it needs this new approval instead.
        ...(open?.state === 'approved' ? { supersedes: open.id } : {}),
        approvals_required: approval.required,
        approval_expires_at: new Date(approval.expiresAt).toISOString(),
        ...decisionFields(gated.decision),
      });
    } catch (err) {
      attempt.audited = true; // the trail itself is down: nothing more can be recorded
      throw auditUnavailable(err);
    }
    attempt.audited = true;
    const caps = this.deps.approvalCaps ?? {};
    const created = await this.deps.approvals.create(approval, caps);
    if (created !== 'ok') await this.refuseOverCap(req, approval, created, caps, requestFields);
    return { ...parked, approval };
  }

  /** A new pending approval request bound to what was asked (its digest and requested TTL). */
  private newApproval(
    req: IssueCall,
    gated: Extract<GatedDecision, { outcome: 'approval_required' }>,
  ): ApprovalRequest {
    const { caller, task, role, now } = req;
    return {
      id: this.newId(),
      digest: req.digest,
      requester: caller.spiffeId,
      taskId: task.id,
      role: role.name,
      environment: task.environment,
      ttlSeconds: req.requestedTtl || role.maxTtlSeconds,
      sensitivity: req.sensitivity,
      changeType: req.changeType,
      justification: req.justification,
      tool: req.tool,
      required: gated.approvalsRequired,
      policyIds: gated.decision.policyIds,
      createdAt: now,
      // Never past the task: an approval for a dead task is worthless.
      expiresAt: Math.min(now + this.deps.approvalTtlSeconds * 1000, task.expiresAt),
      state: 'pending',
      approvals: [],
      ...(task.delegation ? { delegationChain: [...task.delegation.chain] } : {}),
    };
  }

  /**
   * An approval request costs a credential's place in the rate budgets: parking requests for
   * humans must not be a way around credentialsPerMinute.
   */
  private async reserveApprovalRate(
    req: IssueCall,
    approval: ApprovalRequest,
    requestFields: RequestFields,
    attempt: Attempt,
  ): Promise<void> {
    const rate = approvalRateScopes(this.budgetScopes(req.caller.spiffeId, req.task.id));
    if (rate.length === 0) return;
    const budget = await this.deps.budgets.reserveCredential(
      rate,
      `approval:${approval.id}`,
      approval.expiresAt,
      req.now,
    );
    if (!budget.ok) {
      await this.auditDenial({ type: 'budget.exceeded', ...requestFields, ...budgetFields(budget) }, attempt);
      throw budgetError(budget);
    }
  }

  /** The trail already says the request was made: say it was never opened, and why. */
  private async refuseOverCap(
    req: IssueCall,
    approval: ApprovalRequest,
    created: Exclude<CreateApprovalResult, 'ok'>,
    caps: OpenApprovalCaps,
    requestFields: RequestFields,
  ): Promise<never> {
    const per = created === 'too_many_open_for_agent' ? 'agent' : 'task';
    const max = (per === 'agent' ? caps.perAgent : caps.perTask) ?? 0;
    await this.auditDenial({
      type: 'budget.exceeded',
      ...requestFields,
      approval: approval.id,
      budget_scope: per === 'agent' ? `agent:${req.caller.spiffeId}` : `task:${req.task.id}`,
      budget_limit: per === 'agent' ? 'openApprovalsPerAgent' : 'openApprovalsPerTask',
      budget_max: max,
    });
    throw openApprovalsError(per, max);
  }

  /** Reserve -> mint: a budget place, then the credential at its backend. */
  private async reserveAndMint(req: IssueCall, allowed: Allowed, attempt: Attempt): Promise<Minted> {
    const { caller, task, role, now } = req;
    const leaseId = this.newId();
    const scopes = this.budgetScopes(caller.spiffeId, task.id);
    const budget = await this.step('reserveBudget', () =>
      this.deps.budgets.reserveCredential(
        scopes.credential,
        leaseId,
        Math.min(now + req.ttlSeconds * 1000, task.expiresAt),
        now,
      ),
    );
    if (!budget.ok) {
      await this.auditDenial(
        { type: 'budget.exceeded', ...allowed.requestFields, ...budgetFields(budget) },
        attempt,
      );
      throw budgetError(budget);
    }
    try {
      const issued = await this.step('mint', () =>
        req.backend.issue({
          leaseId,
          agent: caller.spiffeId,
          taskId: task.id,
          environment: task.environment,
          role,
          ttlSeconds: req.ttlSeconds,
          notAfter: task.expiresAt,
          now,
          ...(task.delegation ? { delegationChain: [...task.delegation.chain] } : {}),
        }),
      );
      return { leaseId, issued, budgetNames: scopes.names };
    } catch (err) {
      this.deps.logger.error({ err: safeErr(err), lease: leaseId, role: role.name }, 'backend issue failed');
      await this.releaseBudgetPlace(scopes.names, leaseId);
      await this.auditDenial(
        {
          type: 'credential.failed',
          ...allowed.requestFields,
          lease: leaseId,
          stage: 'backend',
          error: backendReason(err),
        },
        attempt,
      );
      throw publicBackendError(role.backend, err);
    }
  }

  /**
   * Record lease (pending): one store step checks the task (active, unexpired, unchanged since the
   * decision), the quarantines, and writes the lease `pending` with the credential's backend
   * reference. `task_changed` undoes the mint and hands back to the caller to decide again.
   */
  private async recordPendingLease(
    req: IssueCall,
    allowed: Allowed,
    minted: Minted,
    attempt: Attempt,
  ): Promise<Lease | 'task_changed'> {
    const { caller, task, role } = req;
    const { leaseId, issued } = minted;
    const lease: Lease = {
      id: leaseId,
      agent: caller.spiffeId,
      taskId: task.id,
      environment: task.environment,
      role: role.name,
      backend: role.backend,
      backendRef: issued.backendRef,
      issuedAt: req.now,
      expiresAt: Math.min(issued.expiresAt, task.expiresAt),
      state: this.issuance.twoPhase ? 'pending' : 'active',
    };
    const failed = { type: 'credential.failed', ...allowed.requestFields, lease: leaseId } as const;
    let put;
    try {
      put = await this.deps.store.putLease(
        lease,
        this.now(),
        this.issuance.versionCheck ? { expectVersion: allowed.version } : {},
      );
    } catch (err) {
      await this.undoMint(req, minted, lease, 'lease write failure');
      await this.auditDenial({ ...failed, stage: 'lease_store' }, attempt);
      throw isBrokerError(err) ? err : unavailable('lease_store_unavailable', 'lease store unavailable', err);
    }
    if (put === 'ok') return lease;
    await this.undoMint(req, minted, lease, `lease rejected (${put})`);
    if (put === 'task_changed') return put;
    if (put === 'agent_quarantined') {
      // Quarantined while this request was in flight: its credential never leaves the broker.
      await this.auditDenial(
        { ...failed, type: 'credential.denied', reason: 'quarantined', stage: put },
        attempt,
      );
      throw quarantinedError();
    }
    await this.auditDenial({ ...failed, stage: put }, attempt);
    throw failedPrecondition(put, taskProblem(put));
  }

  /** Record audit: no record, no credential (the pending lease is ended, the credential revoked). */
  private async recordIssued(
    req: IssueCall,
    allowed: Allowed,
    minted: Minted,
    lease: Lease,
    attempt: Attempt,
  ): Promise<void> {
    const used = allowed.approvalUsed;
    try {
      await this.deps.audit.write({
        type: 'credential.issued',
        ...allowed.requestFields,
        ...(used ? { approval: used.id, approvers: used.approvals.map((a) => a.approver) } : {}),
        lease: lease.id,
        backend: lease.backend,
        ...backendIdFields(minted.issued.credential.metadata, this.deps.identifierHmac),
        expires_at: new Date(lease.expiresAt).toISOString(),
        // A cloud session that cannot be shorter than AWS's 900 s minimum outlives its task.
        ...(minted.issued.expiresAt > lease.expiresAt
          ? { outlives_task: true, credential_expires_at: new Date(minted.issued.expiresAt).toISOString() }
          : {}),
        ...decisionFields(allowed.decision),
      });
    } catch (err) {
      await this.deps.store
        .markLeaseEnded(lease.id, 'revoked', 'audit_unavailable', this.now())
        .catch((e: unknown) =>
          this.deps.logger.error({ err: safeErr(e), lease: lease.id }, 'lease end failed'),
        );
      await this.undoMint(req, minted, lease, 'audit failure');
      attempt.audited = true; // the trail itself is down: nothing more can be recorded
      throw auditUnavailable(err);
    }
  }

  /**
   * Activate: the record is written, so the lease becomes `active`. Refused when the task ended
   * meanwhile or the reaper already claimed the lease as an orphan; a failed or refused activation
   * revokes the lease (audited) and the credential never leaves. If even that fails, the lease is
   * still `pending` and the reaper revokes it as an orphan.
   */
  private async activate(lease: Lease): Promise<void> {
    if (!this.issuance.twoPhase) return;
    let result: ActivateLeaseResult;
    try {
      result = await this.deps.store.activateLease(lease.id, lease.taskId, this.now());
    } catch (err) {
      await this.revokeUnissued(lease, 'activation_failed');
      throw isBrokerError(err) ? err : unavailable('lease_store_unavailable', 'lease store unavailable', err);
    }
    if (result === 'ok') {
      lease.state = 'active';
      return;
    }
    if (result === 'lease_not_pending' || result === 'lease_not_found') {
      // The reaper took it as an orphan: it revokes and records it.
      throw unavailable('lease_orphaned', 'the lease was reclaimed before it was activated: retry');
    }
    await this.revokeUnissued(lease, result);
    throw failedPrecondition(result, taskProblem(result));
  }

  /**
   * Last look before the credential leaves: a quarantine that landed after the lease was written
   * (or a feed gone stale meanwhile) still stops it; the lease is revoked like any other.
   */
  private async lastLook(req: IssueCall, lease: Lease, attempt: Attempt): Promise<void> {
    try {
      this.deps.quarantine?.check(req.caller.spiffeId);
    } catch (err) {
      await this.revokeUnissued(lease, isBrokerError(err) ? err.reason : 'quarantined');
      attempt.audited = true; // issued and revoked, both recorded
      throw err;
    }
  }

  private async issuedOutcome(
    req: IssueCall,
    allowed: Allowed,
    minted: Minted,
    lease: Lease,
  ): Promise<Extract<IssueOutcome, { status: 'issued' }>> {
    const grant = allowed.grant;
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
      leaseId: lease.id,
      expiresAt: lease.expiresAt,
      // Backends round expiry down to whole seconds (JWT exp), so round up: this equals exp - iat,
      // never 0 for an issued credential, never role max - 1 when the full role max was granted.
      ttlSeconds: Math.max(0, Math.ceil((lease.expiresAt - req.now) / 1000)),
      credential: minted.issued.credential,
      role: req.role.name,
      taskId: req.task.id,
      environment: req.task.environment,
      policyIds: allowed.decision.policyIds,
    };
  }

  /** A minted credential that will not leave: free its budget place, revoke it at the backend. */
  private async undoMint(req: IssueCall, minted: Minted, lease: Lease, why: string): Promise<void> {
    await this.releaseBudgetPlace(minted.budgetNames, minted.leaseId);
    await req.backend
      .revoke({ leaseId: lease.id, backendRef: lease.backendRef, expiresAt: lease.expiresAt })
      .catch(async (err: unknown) => {
        this.deps.logger.error({ err: safeErr(err), lease: lease.id }, `revoke after ${why} failed: queued`);
        await this.queueRevocation(lease, why, safeErr(err).message);
      });
  }

  /** Revokes a recorded lease whose credential will not leave (revokeLease audits it). */
  private async revokeUnissued(lease: Lease, reason: string): Promise<void> {
    await this.revokeLease(lease, reason).catch((e: unknown) =>
      this.deps.logger.error({ err: safeErr(e), lease: lease.id }, `revoke after ${reason} failed`),
    );
  }

  // Budgets also free themselves at expiry; an early release only returns the place sooner.
  private async releaseBudgetPlace(names: string[], leaseId: string): Promise<void> {
    await this.deps.budgets
      .releaseLease(names, leaseId)
      .catch((err: unknown) =>
        this.deps.logger.warn({ err: safeErr(err), lease: leaseId }, 'budget release failed'),
      );
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
          // Said before the credential is issued, so a waiter hears it ahead of the result.
          opts.onProgress(approval);
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
    const revoked = await this.finishEndedTask(ended, 'task_ended', { reason });
    await this.endDelegatedTasks(ended, 'parent_ended');
    return { task: ended, revoked };
  }

  /** Reaper callback: the task was already moved to `expired` by the store. */
  async onTaskExpired(task: Task): Promise<void> {
    await this.finishEndedTask(task, 'task_expired', { reason: 'expired' });
    await this.endDelegatedTasks(task, 'parent_expired');
  }

  /**
   * Ends every task delegated from `task`, recursively (task-tree.ts): each is ended, its leases
   * revoked, its budget place freed, and one `task.ended` recorded per task, naming its parent.
   * `by`: the admin who revoked the tree, when one did.
   */
  async endDelegatedTasks(task: Task, reason: string, by?: string): Promise<EndedTask[]> {
    const ended: EndedTask[] = [];
    await walkSubtree(this.deps.store, task.id, async (childId, parentId) => {
      const child = await this.deps.store.endTask(childId, 'ended', reason, this.now());
      if (!child) return; // ended before (or by another replica): its own end was recorded then
      const revoked = await this.finishEndedTask(child, reason, {
        reason,
        parent_task: parentId,
        ...(by ? { ended_by: by } : {}),
      });
      ended.push({ task: child, revoked });
    });
    return ended;
  }

  /** A task the store has just ended: revoke its leases, free its budget place, record `task.ended`. */
  async finishEndedTask(
    task: Task,
    leaseReason: string,
    fields: { reason: string } & Record<string, unknown>,
  ): Promise<RevokedLeaseSummary[]> {
    const revoked = await this.revokeTaskLeases(task, leaseReason);
    await this.releaseTaskBudget(task);
    await this.auditAfterRevocation({
      type: 'task.ended',
      agent: task.agent,
      task: task.id,
      environment: task.environment,
      ...fields,
      ...delegationFields(task),
      revoked_leases: revoked.map((r) => r.leaseId),
    });
    return revoked;
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
      // Someone else ended it (another replica, a bulk revocation, the reaper); their revocation
      // stands. The job stays: it may be theirs (a bulk revocation's, whose broker may have died
      // before its backend attempt), and a job whose lease is done only costs the worker one more
      // idempotent revoke before it completes it.
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
    await this.settleRevocations(results, reason);
    await Promise.all(results.map((r) => this.auditAfterRevocation(revocationEvent(r, reason))));
    return results;
  }

  /**
   * Reaper callback for orphans: `pending` leases nobody activated (a broker died between the
   * lease write and the audit record, or a lease write landed after its caller gave up). The store
   * already moved them to `revoking` and queued their backend revocation (claimOrphanedLeases).
   * Revokes each at its backend, records the outcome, frees its budget places, and records
   * `lease.orphaned` with what was done.
   */
  async onLeasesOrphaned(leases: readonly Lease[]): Promise<void> {
    const results = await Promise.all(leases.map((lease) => this.revokeAtBackend(lease)));
    await this.settleRevocations(results, ORPHANED_REASON);
    await Promise.all(leases.map((lease) => this.releaseLeaseBudget(lease)));
    await Promise.all(results.map((r) => this.auditAfterRevocation(orphanEvent(r))));
  }

  /** Records the backend's answers in one store call; a refused revoke stays queued for the worker. */
  private async settleRevocations(results: readonly BulkRevocationResult[], reason: string): Promise<void> {
    const done = results.filter((r) => r.outcome !== 'pending_retry');
    await this.deps.store.completeRevocations(
      done.map((r) => ({
        id: r.lease.id,
        outcome: r.outcome === 'revoked' ? 'revoked' : 'revoke_failed',
        reason: r.outcome === 'revoked' ? reason : `not_revocable: ${reason}`,
      })),
      this.now(),
    );
  }

  private async revokeAtBackend(lease: Lease): Promise<BulkRevocationResult> {
    const backend = this.deps.backends.get(lease.backend);
    const role = this.deps.roles.get(lease.role);
    try {
      if (!backend) throw new Error(`backend "${lease.backend}" is not configured`);
      await backend.revoke({ leaseId: lease.id, backendRef: lease.backendRef, expiresAt: lease.expiresAt });
    } catch (err) {
      const message = safeErr(err).message; // for the log and the queue; the audit gets the reason
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
      return { lease, outcome: 'pending_retry', error: backendReason(err) };
    }
    const expiresOnly = role !== undefined && backend.revocability?.(role) === 'expires_only';
    if (!expiresOnly) return { lease, outcome: 'revoked' };
    const validUntil = backend.validUntil?.({
      leaseId: lease.id,
      backendRef: lease.backendRef,
      expiresAt: lease.expiresAt,
    });
    return { lease, outcome: 'not_revocable', ...(validUntil !== undefined ? { validUntil } : {}) };
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

  /** What the task holds so far, and its version; a task gone meanwhile is refused by the lease write. */
  private async taskLeaseSummary(taskId: string): Promise<TaskLeaseSummary> {
    return (await this.deps.store.taskLeaseSummary(taskId)) ?? noLeases();
  }

  private budgetScopes(agent: string, taskId: string): BudgetScopes {
    return budgetScopesFor(this.deps.budgetLimits, agent, this.deps.agentGroups(agent), taskId);
  }

  // Budgets also free themselves at expiry; an early release only returns the place sooner, so a
  // failure is logged, not raised.
  private async releaseLeaseBudget(lease: Lease): Promise<void> {
    await this.releaseBudgetPlace(this.budgetScopes(lease.agent, lease.taskId).names, lease.id);
  }

  private async releaseTaskBudget(task: Task): Promise<void> {
    await this.deps.budgets
      .releaseTask(this.budgetScopes(task.agent, task.id).taskNames, task.id)
      .catch((err: unknown) =>
        this.deps.logger.warn({ err: safeErr(err), task: task.id }, 'budget release failed'),
      );
  }

  private async ownTask(caller: Caller, taskId: string): Promise<Task> {
    return this.ownedTask(caller, await this.deps.store.getTask(taskId));
  }

  /** ownTask, with what the task holds so far, from one store read. */
  private async ownTaskWithSummary(
    caller: Caller,
    taskId: string,
  ): Promise<{ task: Task; summary: TaskLeaseSummary }> {
    const found = await this.deps.store.getTaskWithSummary(taskId);
    return { task: this.ownedTask(caller, found?.task), summary: found?.summary ?? noLeases() };
  }

  /** The caller's own task, active and unexpired; anything else is refused. */
  private ownedTask(caller: Caller, task: Task | undefined): Task {
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
      // A sink that is down logged its cause once; one line per refused request would bury it.
      const level = alreadyReported(err) ? 'debug' : 'error';
      this.deps.logger[level]({ err: safeErr(err), type: event.type }, 'audit write failed for a denial');
    }
  }
}

/** The audit record of one lease's revocation at its backend. */
function revocationEvent(r: BulkRevocationResult, reason: string): AuditEventInput {
  return {
    type:
      r.outcome === 'revoked'
        ? 'lease.revoked'
        : r.outcome === 'not_revocable'
          ? 'lease.not_revocable'
          : 'lease.revoke_queued',
    ...revokedLeaseFields(r),
    reason,
  };
}

/** The audit record of an orphan the reaper revoked: what it found, and what it did at the backend. */
function orphanEvent(r: BulkRevocationResult): AuditEventInput {
  return {
    type: 'lease.orphaned',
    ...revokedLeaseFields(r),
    reason: ORPHANED_REASON,
    outcome: r.outcome === 'pending_retry' ? 'revoke_queued' : r.outcome,
    written_at: new Date(r.lease.issuedAt).toISOString(),
  };
}

/** What every revocation record says about the lease and the backend's answer. */
function revokedLeaseFields(r: BulkRevocationResult): { agent: string } & Record<string, unknown> {
  const l = r.lease;
  return {
    agent: l.agent,
    lease: l.id,
    task: l.taskId,
    role: l.role,
    backend: l.backend,
    environment: l.environment,
    ...(r.outcome === 'not_revocable' ? { valid_until: validUntilText(r.validUntil ?? l.expiresAt) } : {}),
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

/** The policy request of one IssueCredential decision: the request, the task's history, its approvals. */
function issuePolicyRequest(
  req: IssueCall,
  summary: TaskLeaseSummary,
  gate: { approved: boolean; approvalCount: number; breakGlass: boolean },
): PolicyRequest {
  const { caller, task, role, now } = req;
  return {
    principal: caller.spiffeId,
    action: 'IssueCredential',
    resource: { type: 'Role', role },
    context: {
      environment: task.environment,
      ttlSeconds: req.ttlSeconds,
      sensitivity: req.sensitivity,
      changeType: req.changeType,
      tool: req.tool,
      justification: req.justification,
      intent: task.intent,
      authMethod: caller.authMethod,
      ...agentContextPolicy(req.context),
      ...taskHistoryContext(task, summary, now),
      ...gate,
    },
  };
}

/** What every audit record of one IssueCredential request carries. */
function issueRequestFields(req: IssueCall, grant: BreakGlassGrant | undefined): RequestFields {
  return {
    agent: req.caller.spiffeId,
    task: req.task.id,
    role: req.role.name,
    environment: req.task.environment,
    ttl_seconds: req.ttlSeconds,
    sensitivity: req.sensitivity,
    change_type: req.changeType,
    tool: req.tool,
    justification: req.justification,
    auth_method: req.caller.authMethod,
    ...agentContextFields(req.context),
    ...delegationFields(req.task),
    ...(grant ? { break_glass: grant.id, severity: 'critical' } : {}),
  };
}

interface Attempt {
  audited: boolean;
}

/** An IssueCredential request's fields once checked (validateIssue). */
interface AskedIssue {
  taskId: string;
  role: RoleDefinition;
  backend: CredentialBackend;
  requestedTtl: number;
  /** The sensitivity the caller declared, if any. */
  declared: Sensitivity | undefined;
  changeType: ChangeType;
  justification: string;
  tool: string;
  context: AgentContext | undefined;
}

/** The caller's task as loadTask read it, and what it bounds. */
interface LoadedTask {
  task: Task;
  /** What the task held when it was read (the first decision's history and version). */
  summary: TaskLeaseSummary;
  /** When the request arrived: the lease's issuedAt and the decision's clock. */
  now: number;
  ttlSeconds: number;
  sensitivity: Sensitivity;
  /** Read in loadTask's wait for the first decision round (readGrants). */
  prefetched: { grant: BreakGlassGrant | undefined; mayHaveApproval: boolean };
}

/** An IssueCredential request once validated, with its task and role (prepareIssue). */
interface IssueCall extends Omit<AskedIssue, 'taskId' | 'declared'>, LoadedTask {
  caller: Caller;
  digest: string;
}

/** A BeginTask request once validated; the TTL is the one the task gets. */
interface BeginCall {
  environment: string;
  intent: string;
  labels: Record<string, string>;
  ttlSeconds: number;
  context: AgentContext | undefined;
}

/** An allowed decision and the task version it saw. */
interface Allowed {
  status: 'allowed';
  decision: PolicyDecision;
  version: number;
  grant: BreakGlassGrant | undefined;
  /** The approval this request spent (in this round or an earlier one). */
  approvalUsed?: ApprovalRequest;
  requestFields: RequestFields;
}

/** What every audit record of one request carries. */
interface RequestFields extends Record<string, unknown> {
  agent: string;
  task: string;
  role: string;
  environment: string;
}

interface Minted {
  leaseId: string;
  issued: IssuedCredential;
  /** Budget scopes holding its place. */
  budgetNames: string[];
}

/** The values of settled promises, or the first failure in their order. */
function inOrder<T extends readonly unknown[]>(settled: { [K in keyof T]: PromiseSettledResult<T[K]> }): T {
  for (const r of settled) if (r.status === 'rejected') throw r.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
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
