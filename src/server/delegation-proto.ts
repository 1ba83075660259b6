/** proto <-> domain for delegation: DelegateTask, RevokeTaskTree, a task's delegation fields. */
import type { DelegateTaskInput } from '../broker/delegate-task.js';
import type { EndedTask } from '../broker/broker.js';
import type { Task } from '../leases/types.js';
import type { DelegateTaskRequestMsg, RevokeTaskTreeResponseMsg, TaskMsg } from './broker-proto.js';

type DelegationMsgFields = Pick<
  TaskMsg,
  | 'parent_task_id'
  | 'delegation_chain'
  | 'delegation_depth'
  | 'delegated_roles'
  | 'sensitivity_ceiling'
  | 'change_type_ceiling'
  | 'remaining_depth'
>;

/** A task's delegation as Task message fields (a root task: the chain is its agent, depth 0). */
export function delegationToMsg(task: Task): DelegationMsgFields {
  const d = task.delegation;
  return {
    parent_task_id: d?.parentTaskId ?? '',
    delegation_chain: d ? [...d.chain] : [task.agent],
    delegation_depth: d ? d.chain.length - 1 : 0,
    delegated_roles: d ? [...d.roles] : [],
    sensitivity_ceiling: d?.sensitivityCeiling ?? '',
    change_type_ceiling: d?.changeTypeCeiling ?? '',
    remaining_depth: d?.remainingDepth ?? 0,
  };
}

export function delegateInputFromMsg(req: DelegateTaskRequestMsg): DelegateTaskInput {
  return {
    parentTaskId: req.parent_task_id,
    delegate: req.delegate,
    roles: req.roles ?? [],
    environment: req.environment,
    ttlSeconds: req.ttl_seconds,
    // proto3 optional: unset arrives as undefined or null.
    maxDepth: req.max_depth === undefined || req.max_depth === null ? undefined : Number(req.max_depth),
    sensitivityCeiling: req.sensitivity_ceiling,
    changeTypeCeiling: req.max_change_type,
    intent: req.intent,
    labels: req.labels ?? {},
  };
}

export function endedTasksToMsg(
  ended: readonly EndedTask[],
  taskToMsg: (task: Task) => TaskMsg,
): RevokeTaskTreeResponseMsg {
  return {
    tasks: ended.map((e) => ({
      task: taskToMsg(e.task),
      revoked: e.revoked.map((r) => ({ lease_id: r.leaseId, role: r.role, state: r.state })),
    })),
  };
}
