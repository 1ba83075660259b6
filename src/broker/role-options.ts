/**
 * ListRoles: which roles an agent may ask for in its task right now, as policy answers a plain
 * request for each (the role's own sensitivity and maximum TTL bounded by the task, change type
 * `read`, no approval yet, no break-glass). It grants nothing; the real request is decided again
 * in full. A role that would need humans says so (`approval_required` with how many).
 */
import type { RoleDefinition } from '../credentials/backend.js';
import type { Caller } from '../identity/types.js';
import type { Task, TaskLeaseSummary } from '../leases/types.js';
import { decideWithApprovalGate } from '../policy/approval-gate.js';
import type { PolicyEngine } from '../policy/types.js';
import { taskHistoryContext } from './task-history.js';

export interface RoleOption {
  name: string;
  backend: string;
  description: string;
  sensitivity: RoleDefinition['sensitivity'];
  maxTtlSeconds: number;
  decision: 'allow' | 'approval_required' | 'deny';
  approvalsRequired: number;
  policyIds: string[];
}

export interface RoleOptionsInput {
  caller: Caller;
  task: Task;
  summary: TaskLeaseSummary;
  now: number;
}

export function roleOptions(
  engine: PolicyEngine,
  roles: Iterable<RoleDefinition>,
  input: RoleOptionsInput,
): RoleOption[] {
  const options: RoleOption[] = [];
  for (const role of roles) {
    if (role.environments.length > 0 && !role.environments.includes(input.task.environment)) continue;
    options.push(optionFor(engine, role, input));
  }
  return options.sort((a, b) => a.name.localeCompare(b.name));
}

function optionFor(engine: PolicyEngine, role: RoleDefinition, input: RoleOptionsInput): RoleOption {
  const { caller, task, summary, now } = input;
  const remaining = Math.max(0, Math.floor((task.expiresAt - now) / 1000));
  const gated = decideWithApprovalGate(engine, {
    principal: caller.spiffeId,
    action: 'IssueCredential',
    resource: { type: 'Role', role },
    context: {
      environment: task.environment,
      ttlSeconds: Math.min(role.maxTtlSeconds, remaining),
      sensitivity: role.sensitivity,
      changeType: 'read',
      tool: '',
      justification: '',
      intent: task.intent,
      authMethod: caller.authMethod,
      ...taskHistoryContext(task, summary, now),
      approved: false,
      approvalCount: 0,
      breakGlass: false,
    },
  });
  return {
    name: role.name,
    backend: role.backend,
    description: role.description,
    sensitivity: role.sensitivity,
    maxTtlSeconds: role.maxTtlSeconds,
    decision: gated.outcome,
    approvalsRequired: gated.outcome === 'approval_required' ? gated.approvalsRequired : 0,
    policyIds: gated.decision.policyIds,
  };
}
