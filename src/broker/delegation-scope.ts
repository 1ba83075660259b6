/**
 * What a delegated task may be: never wider than its parent. Pure rules, shared by DelegateTask
 * (a child's scope against its parent's) and IssueCredential (a request against its task's scope).
 * A widening is PERMISSION_DENIED with a stable reason naming what was widened, and the field.
 */
import { BrokerError } from '../errors.js';
import { CHANGE_TYPES, SENSITIVITIES, type ChangeType, type Sensitivity } from '../config/schema.js';
import type { Task, TaskDelegation } from '../leases/types.js';

/** What the parent asked the delegate's task to be, validated (delegate-task.ts). */
export interface AskedDelegation {
  delegate: string;
  roles: string[];
  environment: string;
  /** epoch ms */
  expiresAt: number;
  sensitivityCeiling: Sensitivity;
  changeTypeCeiling: ChangeType;
  /** Levels the delegate may delegate further; undefined: as many as the parent has left. */
  maxDepth: number | undefined;
}

/** A root task's scope: every role policy allows, the widest ceilings, the configured depth. */
export function scopeOf(task: Task, configuredMaxDepth: number): Omit<TaskDelegation, 'parentTaskId'> {
  return (
    task.delegation ?? {
      chain: [task.agent],
      roles: [],
      sensitivityCeiling: 'restricted',
      changeTypeCeiling: 'admin',
      remainingDepth: configuredMaxDepth,
    }
  );
}

function widens(reason: string, field: string, message: string): BrokerError {
  return new BrokerError('PERMISSION_DENIED', message, { reason, field });
}

const rank = <T extends string>(list: readonly T[], value: T): number => list.indexOf(value);

/**
 * The child's delegation, or the reason it would be wider than `parent`. `parentMayRequest` is
 * the set of roles the parent may ask for now (its own delegated roles, or what policy allows
 * a root task), `now` the clock.
 */
export function narrowScope(
  parent: Task,
  asked: AskedDelegation,
  limits: { parentMayRequest: ReadonlySet<string>; configuredMaxDepth: number },
): TaskDelegation {
  const scope = scopeOf(parent, limits.configuredMaxDepth);
  const wider = asked.roles.filter((r) => !limits.parentMayRequest.has(r));
  if (wider.length > 0) {
    throw widens(
      'roles_exceed_parent',
      'roles',
      `roles not available to the parent task: ${wider.join(', ')}`,
    );
  }
  if (asked.environment !== parent.environment) {
    throw widens(
      'environment_differs',
      'environment',
      `a delegated task stays in its parent's environment "${parent.environment}"`,
    );
  }
  if (asked.expiresAt > parent.expiresAt) {
    throw widens('ttl_exceeds_parent', 'ttl_seconds', 'a delegated task cannot outlive its parent task');
  }
  if (rank(SENSITIVITIES, asked.sensitivityCeiling) > rank(SENSITIVITIES, scope.sensitivityCeiling)) {
    throw widens(
      'sensitivity_exceeds_parent',
      'sensitivity_ceiling',
      `sensitivity ceiling above the parent's (${scope.sensitivityCeiling})`,
    );
  }
  if (rank(CHANGE_TYPES, asked.changeTypeCeiling) > rank(CHANGE_TYPES, scope.changeTypeCeiling)) {
    throw widens(
      'change_type_exceeds_parent',
      'max_change_type',
      `change type ceiling above the parent's (${scope.changeTypeCeiling})`,
    );
  }
  return {
    parentTaskId: parent.id,
    chain: [...scope.chain, asked.delegate],
    roles: [...new Set(asked.roles)].sort(),
    sensitivityCeiling: asked.sensitivityCeiling,
    changeTypeCeiling: asked.changeTypeCeiling,
    remainingDepth: childDepth(scope.remainingDepth, asked.maxDepth),
  };
}

/** Levels left below the child: one fewer than the parent's, or fewer if the parent asks. */
function childDepth(parentRemaining: number, asked: number | undefined): number {
  if (parentRemaining < 1) {
    throw widens(
      'depth_exceeded',
      'parent_task_id',
      'the delegation depth limit is reached: no further delegation',
    );
  }
  const left = parentRemaining - 1;
  if (asked !== undefined && asked > left) {
    throw widens('depth_exceeded', 'max_depth', `max_depth above what the parent has left (${left})`);
  }
  return asked ?? left;
}

/**
 * An IssueCredential request in a delegated task stays inside the task's scope: one of its roles,
 * at most its sensitivity and change type ceilings. Root tasks are not limited here (policy is).
 */
export function checkDelegatedRequest(
  task: Task,
  req: { role: string; sensitivity: Sensitivity; changeType: ChangeType },
): void {
  const d = task.delegation;
  if (d === undefined) return;
  if (!d.roles.includes(req.role)) {
    throw widens('role_not_delegated', 'role', `role "${req.role}" was not delegated to this task`);
  }
  if (rank(SENSITIVITIES, req.sensitivity) > rank(SENSITIVITIES, d.sensitivityCeiling)) {
    throw widens(
      'sensitivity_exceeds_delegation',
      'sensitivity',
      `sensitivity ${req.sensitivity} is above the task's ceiling (${d.sensitivityCeiling})`,
    );
  }
  if (rank(CHANGE_TYPES, req.changeType) > rank(CHANGE_TYPES, d.changeTypeCeiling)) {
    throw widens(
      'change_type_exceeds_delegation',
      'change_type',
      `change type ${req.changeType} is above the task's ceiling (${d.changeTypeCeiling})`,
    );
  }
}
