/**
 * The AuthZEN decision point's use case: may this agent call this tool now? The caller is a policy
 * enforcement point (a tool gateway) that must itself be allowed `EvaluateAccess`; the question is
 * decided by the same Cedar policy set that guards credentials (`CallTool` on `Tool::"<name>"`),
 * with the agent's task, environment and history as context when the gateway names a task, and
 * every decision is written to the audit trail before it is answered.
 */
import type { AuditSink } from '../audit/types.js';
import { SENSITIVITIES, CHANGE_TYPES } from '../config/schema.js';
import { invalidArgument, permissionDenied, unavailable } from '../errors.js';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import type { Caller } from '../identity/types.js';
import type { LeaseStore, Task, TaskLeaseSummary } from '../leases/types.js';
import { decideWithApprovalGate } from '../policy/approval-gate.js';
import type { GatedDecision, PolicyEngine } from '../policy/types.js';
import { taskHistoryContext, type TaskHistoryContext } from './task-history.js';

/** One AuthZEN evaluation, after defaults were applied (subject, action, resource, context). */
export interface AccessQuestion {
  subject: { type?: unknown; id?: unknown };
  action: { name?: unknown };
  resource: { type?: unknown; id?: unknown };
  context: Record<string, unknown>;
}

export interface AccessAnswer {
  decision: boolean;
  context: Record<string, unknown>;
}

export interface AccessEvaluatorDeps {
  policy: () => PolicyEngine;
  store: Pick<LeaseStore, 'getTaskWithSummary'>;
  audit: AuditSink;
  quarantine?: { check(agent: string): void };
  now?: () => number;
}

/** The action names a gateway may ask about; all mean "call the tool". */
const CALL_ACTIONS = new Set(['call', 'call_tool', 'CallTool', 'tools/call']);
const MAX_TOOL_NAME = 256;

export class AccessEvaluator {
  private readonly now: () => number;

  constructor(private readonly deps: AccessEvaluatorDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Refuses (PERMISSION_DENIED) a caller that policy does not let ask. */
  authorizeGateway(gateway: Caller): void {
    this.deps.quarantine?.check(gateway.spiffeId);
    const decision = this.deps.policy().authorize({
      principal: gateway.spiffeId,
      action: 'EvaluateAccess',
      resource: { type: 'Broker' },
      context: {},
    });
    if (decision.decision !== 'allow') {
      throw permissionDenied(
        'this workload may not ask for access decisions (EvaluateAccess)',
        decision.policyIds,
      );
    }
  }

  async evaluate(gateway: Caller, question: AccessQuestion): Promise<AccessAnswer> {
    const q = validQuestion(question);
    const refusal = this.quarantined(q.agent);
    const task = refusal ? undefined : await this.taskOf(q.agent, q.taskId);
    const answer = refusal ?? (typeof task === 'string' ? deny(task) : this.decide(q, task));
    await this.record(gateway, q, answer);
    return answer;
  }

  private quarantined(agent: string): AccessAnswer | undefined {
    try {
      this.deps.quarantine?.check(agent);
      return undefined;
    } catch {
      return deny('quarantined');
    }
  }

  /** The named task (with its lease summary, one read) when it is the agent's and active; else a reason code. */
  private async taskOf(agent: string, taskId: string): Promise<OpenTask | string | undefined> {
    if (!taskId) return undefined;
    const found = await this.deps.store.getTaskWithSummary(taskId);
    if (!found) return 'task_not_found';
    const { task } = found;
    if (task.agent !== agent) return 'task_not_yours';
    if (task.state !== 'active' || task.expiresAt <= this.now()) return 'task_not_active';
    return found;
  }

  private decide(q: ValidQuestion, open: OpenTask | undefined): AccessAnswer {
    const gated = decideWithApprovalGate(this.deps.policy(), {
      principal: q.agent,
      action: 'CallTool',
      resource: { type: 'Tool', id: q.tool },
      context: {
        hasTask: open !== undefined,
        environment: open?.task.environment ?? '',
        ...history(open, this.now()),
        sensitivity: q.sensitivity,
        changeType: q.changeType,
        approved: false,
        approvalCount: 0,
      },
    });
    return answerOf(gated);
  }

  /** No record, no answer: a decision the trail cannot hold is not given. */
  private async record(gateway: Caller, q: ValidQuestion, answer: AccessAnswer): Promise<void> {
    try {
      await this.deps.audit.write({
        type: 'access.evaluated',
        agent: q.agent,
        gateway: gateway.spiffeId,
        tool: q.tool,
        ...(q.taskId ? { task: q.taskId } : {}),
        change_type: q.changeType,
        sensitivity: q.sensitivity,
        decision: answer.decision,
        ...answer.context,
      });
    } catch {
      throw unavailable('audit_unavailable', 'the audit trail is unavailable: no decision without a record');
    }
  }
}

interface OpenTask {
  task: Task;
  summary: TaskLeaseSummary;
}

/** The task's history as IssueCredential's context names it, less `taskBackends` (not in CallTool's). */
function history(
  open: OpenTask | undefined,
  now: number,
): Pick<TaskHistoryContext, 'taskRoles' | 'taskCredentialCount' | 'taskAgeSeconds'> {
  if (!open) return { taskRoles: [], taskCredentialCount: 0, taskAgeSeconds: 0 };
  const { taskRoles, taskCredentialCount, taskAgeSeconds } = taskHistoryContext(open.task, open.summary, now);
  return { taskRoles, taskCredentialCount, taskAgeSeconds };
}

interface ValidQuestion {
  agent: string;
  tool: string;
  taskId: string;
  sensitivity: string;
  changeType: string;
}

function validQuestion(q: AccessQuestion): ValidQuestion {
  const agent = stringField(q.subject.id, 'subject.id');
  try {
    parseSpiffeId(agent);
  } catch {
    throw invalidArgument('subject.id', "must be the agent's SPIFFE ID");
  }
  const action = stringField(q.action.name, 'action.name');
  if (!CALL_ACTIONS.has(action))
    throw invalidArgument('action.name', `must be one of ${[...CALL_ACTIONS].join(', ')}`);
  if (q.resource.type !== 'tool') throw invalidArgument('resource.type', 'must be "tool"');
  const tool = stringField(q.resource.id, 'resource.id');
  if (tool.length > MAX_TOOL_NAME || /[\p{Cc}\p{Cf}]/u.test(tool))
    throw invalidArgument('resource.id', `at most ${MAX_TOOL_NAME} printable characters`);
  const taskId = optionalString(q.context.task_id, 'context.task_id');
  const sensitivity = optionalString(q.context.sensitivity, 'context.sensitivity') || 'internal';
  if (!(SENSITIVITIES as readonly string[]).includes(sensitivity))
    throw invalidArgument('context.sensitivity', `must be one of ${SENSITIVITIES.join(', ')}`);
  const changeType = optionalString(q.context.change_type, 'context.change_type') || 'read';
  if (!(CHANGE_TYPES as readonly string[]).includes(changeType))
    throw invalidArgument('context.change_type', `must be one of ${CHANGE_TYPES.join(', ')}`);
  return { agent, tool, taskId, sensitivity, changeType };
}

function stringField(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw invalidArgument(field, 'is required (a string)');
  return v;
}

function optionalString(v: unknown, field: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw invalidArgument(field, 'must be a string');
  return v;
}

function deny(reason: string): AccessAnswer {
  return { decision: false, context: { reason } };
}

function answerOf(gated: GatedDecision): AccessAnswer {
  const { policyIds, reasons } = gated.decision;
  switch (gated.outcome) {
    case 'allow':
      return { decision: true, context: { policy_ids: policyIds } };
    case 'approval_required':
      return {
        decision: false,
        context: {
          reason: 'approval_required',
          approval_required: gated.approvalsRequired,
          policy_ids: policyIds,
          reasons,
        },
      };
    case 'deny':
      return {
        decision: false,
        context: {
          reason: policyIds.length ? 'policy_denied' : 'no_policy_permits',
          policy_ids: policyIds,
          reasons,
        },
      };
  }
}
