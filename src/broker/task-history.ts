/**
 * What a decision knows about the task it is made in (tool chaining): its age, the roles and
 * backends it already holds and how many leases, and its delegation chain and depth, as the
 * IssueCredential context names them.
 */
import type { Task, TaskLeaseSummary } from '../leases/types.js';

export interface TaskHistoryContext {
  [key: string]: number | string[];
  taskAgeSeconds: number;
  taskRoles: string[];
  taskBackends: string[];
  taskCredentialCount: number;
  delegationChain: string[];
  delegationDepth: number;
}

export function taskHistoryContext(task: Task, summary: TaskLeaseSummary, now: number): TaskHistoryContext {
  return {
    taskAgeSeconds: Math.max(0, Math.floor((now - task.createdAt) / 1000)),
    taskRoles: summary.roles,
    // `vault/db-admin` -> `vault`: a guard over "any secrets backend" holds in either order.
    taskBackends: [...new Set(summary.roles.map((r) => r.split('/')[0] ?? r))].sort(),
    taskCredentialCount: summary.count,
    ...delegationContext(task),
  };
}

/** The delegation facts policy sees: the chain from the root agent down, and the depth. */
export function delegationContext(task: Pick<Task, 'agent' | 'delegation'>): {
  delegationChain: string[];
  delegationDepth: number;
} {
  const chain = task.delegation?.chain ?? [task.agent];
  return { delegationChain: [...chain], delegationDepth: chain.length - 1 };
}

/** The actors of a task, for any audit record about it: root agent first. */
export function delegationFields(task: Pick<Task, 'agent' | 'delegation'>): Record<string, unknown> {
  if (!task.delegation) return {};
  const chain = task.delegation.chain;
  return { delegation_chain: [...chain], delegation_depth: chain.length - 1 };
}
