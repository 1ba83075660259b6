/**
 * What a decision knows about the task it is made in (tool chaining): its age, the roles and
 * backends it already holds and how many leases, as the IssueCredential context names them.
 */
import type { Task, TaskLeaseSummary } from '../leases/types.js';

export interface TaskHistoryContext {
  [key: string]: number | string[];
  taskAgeSeconds: number;
  taskRoles: string[];
  taskBackends: string[];
  taskCredentialCount: number;
}

export function taskHistoryContext(task: Task, summary: TaskLeaseSummary, now: number): TaskHistoryContext {
  return {
    taskAgeSeconds: Math.max(0, Math.floor((now - task.createdAt) / 1000)),
    taskRoles: summary.roles,
    // `vault/db-admin` -> `vault`: a guard over "any secrets backend" holds in either order.
    taskBackends: [...new Set(summary.roles.map((r) => r.split('/')[0] ?? r))].sort(),
    taskCredentialCount: summary.count,
  };
}
