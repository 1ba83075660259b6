/**
 * Which budgets a request counts against: each of the agent's groups (or the agent itself when it
 * has none), and its task. Scope names are the keys the shared BudgetStore counts under.
 */
import type { BudgetCheck, BudgetLimits, ScopedLimits } from '../budgets/types.js';
import { BrokerError } from '../errors.js';

export interface BudgetConfig {
  groups: Readonly<Record<string, BudgetLimits>>;
  ungrouped?: BudgetLimits | undefined;
  task?: BudgetLimits | undefined;
}

export interface BudgetScopes {
  /** For a credential: credentialsPerMinute and activeLeases of the group/agent and task scopes. */
  credential: ScopedLimits[];
  /** For a task: openTasks of the group/agent scopes. */
  task: ScopedLimits[];
  /** Names of the credential scopes (to release a lease). */
  names: string[];
  /** Names of the task scopes (to release a task). */
  taskNames: string[];
}

const hasAny = (l: BudgetLimits | undefined): l is BudgetLimits =>
  l !== undefined &&
  (l.credentialsPerMinute !== undefined || l.activeLeases !== undefined || l.openTasks !== undefined);

export function budgetScopesFor(
  cfg: BudgetConfig,
  agent: string,
  groups: readonly string[],
  taskId: string,
): BudgetScopes {
  const owner: ScopedLimits[] = [];
  for (const g of groups) {
    const limits = cfg.groups[g];
    if (hasAny(limits)) owner.push({ scope: `group:${g}`, limits });
  }
  if (groups.length === 0 && hasAny(cfg.ungrouped))
    owner.push({ scope: `agent:${agent}`, limits: cfg.ungrouped });
  const credential = owner.map((s) => ({
    scope: s.scope,
    limits: { credentialsPerMinute: s.limits.credentialsPerMinute, activeLeases: s.limits.activeLeases },
  }));
  if (hasAny(cfg.task)) {
    credential.push({
      scope: `task:${taskId}`,
      limits: { credentialsPerMinute: cfg.task.credentialsPerMinute, activeLeases: cfg.task.activeLeases },
    });
  }
  const task = owner
    .filter((s) => s.limits.openTasks !== undefined)
    .map((s) => ({ scope: s.scope, limits: { openTasks: s.limits.openTasks } }));
  return {
    credential: credential.map(stripUndefined),
    task: task.map(stripUndefined),
    names: credential.map((s) => s.scope),
    taskNames: task.map((s) => s.scope),
  };
}

/**
 * What an approval request counts against: the credentialsPerMinute of the scopes a credential
 * would (a request parked for humans is an issuance attempt), never a place in activeLeases.
 */
export function approvalRateScopes(scopes: BudgetScopes): ScopedLimits[] {
  return scopes.credential.flatMap((s) =>
    s.limits.credentialsPerMinute === undefined
      ? []
      : [{ scope: s.scope, limits: { credentialsPerMinute: s.limits.credentialsPerMinute } }],
  );
}

/** A cap on open approval requests was reached (approvals.maxOpenPerAgent / maxOpenPerTask). */
export function openApprovalsError(per: 'agent' | 'task', max: number): BrokerError {
  return new BrokerError(
    'RESOURCE_EXHAUSTED',
    `too many open approval requests for this ${per} (at most ${max}): wait for a decision or let one expire`,
    { reason: 'too_many_open_approvals' },
  );
}

function stripUndefined(s: { scope: string; limits: BudgetLimits }): ScopedLimits {
  const limits: BudgetLimits = {};
  for (const [k, v] of Object.entries(s.limits) as Array<[keyof BudgetLimits, number | undefined]>) {
    if (v !== undefined) limits[k] = v;
  }
  return { scope: s.scope, limits };
}

export function budgetFields(check: Extract<BudgetCheck, { ok: false }>): Record<string, unknown> {
  return {
    budget_scope: check.scope,
    budget_limit: check.limit,
    budget_current: check.current,
    budget_max: check.max,
  };
}

export function budgetError(check: Extract<BudgetCheck, { ok: false }>): BrokerError {
  return new BrokerError(
    'RESOURCE_EXHAUSTED',
    `budget exceeded: ${check.limit} for ${check.scope} is ${check.max} (now ${check.current})`,
    { reason: 'budget_exceeded' },
  );
}
