/**
 * DelegateTask: an agent hands part of its task to another agent (a sub-agent) as a child task the
 * delegate owns and works on with its own SVID. The child is never wider than its parent
 * (delegation-scope.ts), the store writes it only under an active parent (createChildTask), and
 * policy decides as for a BeginTask of the delegate, with the delegation chain in the context.
 *
 * As its steps: validate -> load the parent (the caller's own) -> narrow -> decide -> reserve a
 * budget place -> create under the parent -> record `task.delegated` (no record, no task).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AuditEventInput, AuditSink } from '../audit/types.js';
import { CHANGE_TYPES, SENSITIVITIES } from '../config/schema.js';
import type { RoleDefinition } from '../credentials/backend.js';
import {
  alreadyReported,
  failedPrecondition,
  invalidArgument,
  isBrokerError,
  notFound,
  unavailable,
  type BrokerError,
} from '../errors.js';
import { requireWorkloadId } from '../identity/spiffe-id.js';
import type { Caller } from '../identity/types.js';
import type { CreateChildResult, LeaseStore, Task, TaskLeaseSummary } from '../leases/types.js';
import type { BudgetStore } from '../budgets/types.js';
import type { PolicyDecision, PolicyEngine } from '../policy/types.js';
import { budgetError, budgetFields, budgetScopesFor, type BudgetConfig } from './budget-scopes.js';
import { decisionFields, denialError } from './decisions.js';
import { narrowScope, type AskedDelegation } from './delegation-scope.js';
import { roleOptions } from './role-options.js';
import { delegationContext, delegationFields } from './task-history.js';
import { boundedText, LIMITS, optionalTtl, requireRoleName, requireTaskId, validLabels } from './validate.js';

export interface DelegateTaskInput {
  parentTaskId: string;
  /** SPIFFE ID of the agent that will own the child task. */
  delegate: string;
  roles: string[];
  /** Empty: the parent's. Anything else must be the parent's. */
  environment: string;
  /** 0: until the parent task expires. */
  ttlSeconds: number;
  /** Levels the delegate may delegate further; undefined: one fewer than the parent has left. */
  maxDepth: number | undefined;
  /** Empty: the parent's ceiling. */
  sensitivityCeiling: string;
  /** Empty: the parent's ceiling. */
  changeTypeCeiling: string;
  intent: string;
  labels: Record<string, string>;
}

export interface TaskDelegatorDeps {
  store: LeaseStore;
  policy: () => PolicyEngine;
  audit: AuditSink;
  roles: ReadonlyMap<string, RoleDefinition>;
  budgets: BudgetStore;
  budgetLimits: BudgetConfig;
  agentGroups: (spiffeId: string) => readonly string[];
  /** The broker's quarantine check (also refuses while the audit sink is down). */
  quarantine?: { check(agent: string): void };
  /** delegation.maxDepth: levels of delegation below a root task. */
  maxDepth: number;
  logger: Logger;
  now?: () => number;
  newId?: () => string;
}

interface Attempt {
  audited: boolean;
}

export class TaskDelegator {
  private readonly now: () => number;
  private readonly newId: () => string;

  constructor(private readonly deps: TaskDelegatorDeps) {
    this.now = deps.now ?? Date.now;
    this.newId = deps.newId ?? randomUUID;
  }

  /** Every attempt leaves an audit record: refusals the steps did not record are recorded here. */
  async delegateTask(caller: Caller, input: DelegateTaskInput): Promise<Task> {
    const attempt: Attempt = { audited: false };
    try {
      return await this.delegate(caller, input, attempt);
    } catch (err) {
      if (!attempt.audited) await this.auditRefusal(caller, input, err);
      throw err;
    }
  }

  private async delegate(caller: Caller, input: DelegateTaskInput, attempt: Attempt): Promise<Task> {
    this.deps.quarantine?.check(caller.spiffeId);
    const parentTaskId = requireTaskId(input.parentTaskId, 'parent_task_id');
    const { parent, summary } = await this.ownActiveParent(caller, parentTaskId);
    const asked = this.validate(caller, input, parent);
    this.deps.quarantine?.check(asked.delegate);
    const delegation = narrowScope(parent, asked, {
      parentMayRequest: this.parentMayRequest(caller, parent, summary),
      configuredMaxDepth: this.deps.maxDepth,
    });
    const now = this.now();
    const child: Task = {
      id: this.newId(),
      agent: asked.delegate,
      environment: parent.environment,
      intent: boundedText(input.intent, 'intent', LIMITS.intent) || parent.intent,
      labels: validLabels(input.labels),
      createdAt: now,
      expiresAt: asked.expiresAt,
      state: 'active',
      delegation,
    };
    const decision = this.decide(caller, child);
    if (decision.decision !== 'allow') {
      await this.auditDenial(
        { type: 'task.delegation_denied', ...delegatedFields(caller, child), ...decisionFields(decision) },
        attempt,
      );
      throw denialError(decision, `DelegateTask to "${child.agent}" (BeginTask in "${child.environment}")`);
    }
    const taskNames = await this.reservePlace(caller, child, attempt);
    await this.create(child, taskNames, now);
    await this.record(caller, child, decision, taskNames, attempt);
    return child;
  }

  /** The parent must be the caller's own task, active and unexpired. */
  private async ownActiveParent(
    caller: Caller,
    id: string,
  ): Promise<{ parent: Task; summary: TaskLeaseSummary }> {
    const found = await this.deps.store.getTaskWithSummary(id);
    if (!found) throw notFound('task_not_found', 'parent task not found');
    const parent = found.task;
    if (parent.agent !== caller.spiffeId) {
      throw failedPrecondition('task_not_yours', 'only the parent task owner may delegate from it');
    }
    if (parent.state !== 'active') throw failedPrecondition('task_ended', `parent task is ${parent.state}`);
    if (parent.expiresAt <= this.now()) throw failedPrecondition('task_expired', 'parent task has expired');
    return { parent, summary: found.summary };
  }

  /** Field syntax, with empty fields taking the parent's value. */
  private validate(caller: Caller, input: DelegateTaskInput, parent: Task): AskedDelegation {
    const delegate = requireWorkloadId(input.delegate ?? '', 'delegate').toString();
    if (delegate === caller.spiffeId)
      throw invalidArgument('delegate', 'must be another agent than the caller');
    if (!Array.isArray(input.roles) || input.roles.length === 0) {
      throw invalidArgument('roles', 'name at least one role to delegate');
    }
    const roles = input.roles.map((r) => requireRoleName(r));
    const unknown = roles.filter((r) => !this.deps.roles.has(r));
    if (unknown.length > 0) throw invalidArgument('roles', `unknown role(s): ${unknown.join(', ')}`);
    const ttlSeconds = optionalTtl(input.ttlSeconds);
    const now = this.now();
    if (input.maxDepth !== undefined && (!Number.isSafeInteger(input.maxDepth) || input.maxDepth < 0)) {
      throw invalidArgument('max_depth', 'must be a non-negative integer');
    }
    const scope = parent.delegation;
    return {
      delegate,
      roles,
      environment: input.environment || parent.environment,
      expiresAt: ttlSeconds === 0 ? parent.expiresAt : now + ttlSeconds * 1000,
      sensitivityCeiling:
        oneOf(SENSITIVITIES, input.sensitivityCeiling, 'sensitivity_ceiling') ??
        scope?.sensitivityCeiling ??
        'restricted',
      changeTypeCeiling:
        oneOf(CHANGE_TYPES, input.changeTypeCeiling, 'max_change_type') ??
        scope?.changeTypeCeiling ??
        'admin',
      maxDepth: input.maxDepth,
    };
  }

  /** A delegated parent may pass on its own roles; a root task what policy lets its owner ask for now. */
  private parentMayRequest(caller: Caller, parent: Task, summary: TaskLeaseSummary): Set<string> {
    if (parent.delegation) return new Set(parent.delegation.roles);
    const options = roleOptions(this.deps.policy(), this.deps.roles.values(), {
      caller,
      task: parent,
      summary,
      now: this.now(),
    });
    return new Set(options.filter((o) => o.decision !== 'deny').map((o) => o.name));
  }

  /** Policy decides as for a BeginTask of the delegate, seeing the whole chain. */
  private decide(caller: Caller, child: Task): PolicyDecision {
    return this.deps.policy().authorize({
      principal: child.agent,
      action: 'BeginTask',
      resource: { type: 'Environment', id: child.environment },
      context: {
        environment: child.environment,
        ttlSeconds: Math.max(0, Math.floor((child.expiresAt - child.createdAt) / 1000)),
        intent: child.intent,
        authMethod: caller.authMethod,
        ...delegationContext(child),
      },
    });
  }

  /** The delegate's place in its openTasks budgets. */
  private async reservePlace(caller: Caller, child: Task, attempt: Attempt): Promise<string[]> {
    const scopes = budgetScopesFor(
      this.deps.budgetLimits,
      child.agent,
      this.deps.agentGroups(child.agent),
      child.id,
    );
    const budget = await this.deps.budgets.reserveTask(
      scopes.task,
      child.id,
      child.expiresAt,
      child.createdAt,
    );
    if (!budget.ok) {
      await this.auditDenial(
        { type: 'budget.exceeded', ...delegatedFields(caller, child), ...budgetFields(budget) },
        attempt,
      );
      throw budgetError(budget);
    }
    return scopes.taskNames;
  }

  private async create(child: Task, taskNames: string[], now: number): Promise<void> {
    let result: CreateChildResult;
    try {
      result = await this.deps.store.createChildTask(child, now);
    } catch (err) {
      await this.releasePlace(taskNames, child.id);
      throw isBrokerError(err) ? err : unavailable('lease_store_unavailable', 'lease store unavailable', err);
    }
    if (result === 'ok') return;
    await this.releasePlace(taskNames, child.id);
    throw failedPrecondition(result, parentProblem(result));
  }

  /** No record, no task: a child whose `task.delegated` cannot be written is ended at once. */
  private async record(
    caller: Caller,
    child: Task,
    decision: PolicyDecision,
    taskNames: string[],
    attempt: Attempt,
  ): Promise<void> {
    try {
      await this.deps.audit.write({
        type: 'task.delegated',
        ...delegatedFields(caller, child),
        intent: child.intent,
        expires_at: new Date(child.expiresAt).toISOString(),
        ...decisionFields(decision),
      });
    } catch (err) {
      await this.deps.store
        .endTask(child.id, 'ended', 'audit_unavailable', this.now())
        .catch(() => undefined);
      await this.releasePlace(taskNames, child.id);
      attempt.audited = true; // the trail itself is down: nothing more can be recorded
      throw unavailable('audit_unavailable', 'audit trail unavailable: request denied', err);
    }
  }

  private async releasePlace(names: string[], taskId: string): Promise<void> {
    await this.deps.budgets.releaseTask(names, taskId).catch(() => undefined);
  }

  private async auditDenial(event: AuditEventInput, attempt: Attempt): Promise<void> {
    attempt.audited = true;
    await this.deps.audit.write(event).catch((err: unknown) => {
      const level = alreadyReported(err) ? 'debug' : 'error';
      this.deps.logger[level]({ type: event.type }, 'audit write failed for a denial');
    });
  }

  private async auditRefusal(caller: Caller, input: DelegateTaskInput, err: unknown): Promise<void> {
    const outage = !isBrokerError(err) || err.code === 'UNAVAILABLE' || err.code === 'INTERNAL';
    await this.auditDenial(
      {
        type: outage ? 'task.delegation_failed' : 'task.delegation_denied',
        agent: caller.spiffeId,
        parent_task: clip(String(input.parentTaskId ?? '')),
        delegate: clip(String(input.delegate ?? '')),
        ...refusalFields(err),
      },
      { audited: false },
    );
  }
}

interface DelegatedFields extends Record<string, unknown> {
  agent: string;
  task: string;
  delegate: string;
}

interface DelegatedFields extends Record<string, unknown> {
  agent: string;
  task: string;
  delegate: string;
}

/** What every record of a delegation says: who delegated what to whom, and the whole chain. */
function delegatedFields(caller: Caller, child: Task): DelegatedFields {
  const d = child.delegation;
  return {
    agent: caller.spiffeId,
    task: child.id,
    parent_task: d?.parentTaskId,
    delegate: child.agent,
    environment: child.environment,
    roles: d?.roles,
    sensitivity_ceiling: d?.sensitivityCeiling,
    change_type_ceiling: d?.changeTypeCeiling,
    remaining_depth: d?.remainingDepth,
    ...delegationFields(child),
  };
}

function oneOf<T extends string>(list: readonly T[], value: string, field: string): T | undefined {
  if (value === '' || value === undefined) return undefined;
  if (!(list as readonly string[]).includes(value))
    throw invalidArgument(field, `must be one of ${list.join(', ')}`);
  return value as T;
}

function parentProblem(code: Exclude<CreateChildResult, 'ok'>): string {
  switch (code) {
    case 'parent_not_found':
      return 'parent task not found';
    case 'parent_not_active':
      return 'the parent task ended while the delegation was decided';
    case 'parent_expired':
      return 'the parent task has expired';
    default:
      return 'a delegated task cannot outlive its parent task';
  }
}

function refusalFields(err: unknown): Record<string, unknown> {
  if (!isBrokerError(err)) return { code: 'INTERNAL', reason: 'internal' };
  const e: BrokerError = err;
  return { code: e.code, reason: e.reason, ...(e.field ? { field: e.field } : {}) };
}

function clip(value: string, max = 256): string {
  return value.length > max ? `${value.slice(0, max)}…` : value;
}
