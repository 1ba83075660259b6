/**
 * `svid-broker request` and `svid-broker task end`: what an agent runs. Identity comes from the
 * Workload API at SPIFFE_ENDPOINT_SOCKET; the broker address from SVID_BROKER_ADDR.
 */
import { isBrokerError } from '../errors.js';
import {
  LIMITS,
  boundedText,
  changeTypeOrDefault,
  optionalSensitivity,
  optionalTtl,
  requireRoleName,
  requireTaskId,
} from '../broker/validate.js';
import { validAgentContext, type AgentContext } from '../broker/agent-context.js';
import type { IssueCredentialResponseMsg, TaskMsg } from '../server/broker-proto.js';
import { CONNECTION_FLAGS, bool, str, usageError, type Command, type Parsed } from './command.js';
import { brokerAddress, type Connection } from './connect.js';
import { parseDuration } from './duration.js';
import { explainError, renameFields } from './explain-error.js';
import { iso, printJson, withConnection } from './output.js';

function taskJson(task: TaskMsg): Record<string, unknown> {
  return {
    task_id: task.task_id,
    agent: task.agent,
    environment: task.environment,
    state: task.state,
    expires_at: iso(task.expires_at),
  };
}

/** IssueCredential's fields as `request`'s flags. */
const REQUEST_FIELDS = {
  ttl_seconds: '--ttl',
  task_id: '--task',
  'context.tool_name': '--tool',
  'context.tool_call_id': '--tool-call-id',
  'context.session_id': '--session',
  'context.model': '--model',
  'context.prompt_digest': '--prompt-digest',
  'context.plan': '--plan',
};

/** The broker's own input rules, checked before anything is begun: a refusal leaves nothing open. */
function checkLocally<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (isBrokerError(err) && err.code === 'INVALID_ARGUMENT') {
      throw usageError(renameFields(err.message, REQUEST_FIELDS));
    }
    throw err;
  }
}

interface RequestInput {
  env: string;
  role: string;
  task: string;
  ttl: number;
  taskTtl: number;
  sensitivity: string;
  changeType: string;
  justification: string;
  intent: string;
  tool: string;
  /** The agent's own account of the call (absent when no context flag was given). */
  context: AgentContext | undefined;
}

/** The context flags as the proto's AgentContext; --tool (when given) is also its tool_name. */
function contextFlags(p: Parsed): Record<string, string> {
  return {
    tool_name: str(p, 'tool'),
    tool_call_id: str(p, 'tool-call-id'),
    session_id: str(p, 'session'),
    model: str(p, 'model'),
    prompt_digest: str(p, 'prompt-digest'),
    plan: str(p, 'plan'),
  };
}

/** Every check the broker would make on the flags alone. */
function requestInput(p: Parsed): RequestInput {
  const role = str(p, 'role');
  const env = str(p, 'env');
  const task = str(p, 'task');
  if (!role) throw usageError('--role is required (e.g. --role token/demo)');
  if (task && env) throw usageError('--task and --env cannot be combined: a task has its environment');
  if (!task && !env) throw usageError('--env is required unless --task names an open task');
  const ttl = checkLocally(() => optionalTtl(parseDuration(str(p, 'ttl') || '0', '--ttl'), '--ttl'));
  const taskTtl = checkLocally(() =>
    optionalTtl(parseDuration(str(p, 'task-ttl') || '0', '--task-ttl'), '--task-ttl'),
  );
  checkLocally(() => {
    requireRoleName(role);
    if (task) requireTaskId(task, '--task');
    boundedText(env, '--env', 64);
    optionalSensitivity(str(p, 'sensitivity'));
    changeTypeOrDefault(str(p, 'change-type'));
    boundedText(str(p, 'justification'), '--justification', LIMITS.justification);
    boundedText(str(p, 'intent'), '--intent', LIMITS.intent);
    boundedText(str(p, 'tool'), '--tool', LIMITS.tool);
  });
  const context = checkLocally(() => validAgentContext(contextFlags(p)));
  return {
    env,
    role,
    task,
    ttl,
    taskTtl,
    sensitivity: str(p, 'sensitivity'),
    changeType: str(p, 'change-type'),
    justification: str(p, 'justification'),
    intent: str(p, 'intent') || `svid-broker request ${role}`,
    tool: str(p, 'tool') || 'svid-broker-cli',
    context,
  };
}

async function runRequest(p: Parsed): Promise<number> {
  const input = requestInput(p);
  return withConnection(p, async (conn) => {
    const task = input.task
      ? await conn.client.getTask({ task_id: input.task })
      : await conn.client.beginTask({
          environment: input.env,
          intent: input.intent,
          ttl_seconds: input.taskTtl,
          ...(input.context ? { context: input.context } : {}),
        });
    try {
      return await issue(conn, task, input, bool(p, 'wait'));
    } catch (err) {
      throw await afterFailedIssue(conn, task.task_id, err, input.task === '');
    }
  });
}

/**
 * Issuance failed inside a task: a task this run began is ended (nothing is left open, and the
 * audit trail pairs its task.begun with a task.ended); one given with --task stays open for a retry.
 */
async function afterFailedIssue(
  conn: Connection,
  taskId: string,
  err: unknown,
  begun: boolean,
): Promise<Error> {
  const why = explainError(err, { address: brokerAddress(), fields: REQUEST_FIELDS });
  if (!begun) return new Error(`${why} (task ${taskId} is still open: retry with --task ${taskId})`);
  try {
    await conn.client.endTask({ task_id: taskId, reason: `request failed: ${why}`.slice(0, LIMITS.reason) });
    return new Error(`${why} (task ${taskId} ended)`);
  } catch {
    return new Error(`${why} (task ${taskId} could not be ended: run svid-broker task end ${taskId})`);
  }
}

async function issue(conn: Connection, task: TaskMsg, input: RequestInput, wait: boolean): Promise<number> {
  let issued = await conn.client.issueCredential({
    task_id: task.task_id,
    role: input.role,
    ttl_seconds: input.ttl,
    sensitivity: input.sensitivity,
    change_type: input.changeType,
    justification: input.justification,
    tool: input.tool,
    ...(input.context ? { context: input.context } : {}),
  });
  if (issued.status === 'PENDING_APPROVAL') {
    const pending = {
      status: 'pending_approval',
      approval_id: issued.approval_id,
      approvals_required: issued.approvals_required,
      approvals_received: issued.approvals_received,
      approval_expires_at: iso(issued.approval_expires_at),
      policy_ids: issued.policy_ids,
      task: taskJson(task),
    };
    if (!wait) {
      // Exit 3: not an error, not a credential. Re-run with the same flags and --task once approved.
      printJson(pending);
      console.error(
        `pending approval ${issued.approval_id}: needs ${issued.approvals_required} approval(s); ` +
          'an approver runs `svid-broker approvals approve ' +
          issued.approval_id +
          ' --reason TEXT`; then re-run this request with --task ' +
          task.task_id,
      );
      return 3;
    }
    console.error(
      `pending approval ${issued.approval_id}: waiting for ${issued.approvals_required} approval(s) ` +
        `(until ${pending.approval_expires_at})`,
    );
    const id = issued.approval_id;
    issued = await conn.client.awaitApproval(id, (m) =>
      console.error(`approval ${id}: ${m.approvals_received}/${m.approvals_required} approvals`),
    );
  }
  printJson(credentialJson(task, issued));
  return 0;
}

function credentialJson(task: TaskMsg, issued: IssueCredentialResponseMsg): Record<string, unknown> {
  return {
    status: 'issued',
    task: taskJson(task),
    lease_id: issued.lease_id,
    role: issued.role,
    environment: issued.environment,
    expires_at: iso(issued.expires_at),
    ttl_seconds: issued.ttl_seconds,
    policy_ids: issued.policy_ids,
    ...(issued.break_glass ? { break_glass: true } : {}),
    credential: issued.credential,
  };
}

async function runTaskEnd(p: Parsed): Promise<number> {
  const taskId = p.positionals[0] as string;
  const res = await withConnection(p, (c) => c.client.endTask({ task_id: taskId, reason: str(p, 'reason') }));
  const task = res.task ? taskJson(res.task) : { task_id: taskId };
  printJson({ ...task, revoked: res.revoked });
  console.error(`ended task ${taskId}: revoked ${res.revoked.length} lease(s)`);
  return 0;
}

const text = (value: string, help: string): { type: 'string'; value: string; help: string } => ({
  type: 'string',
  value,
  help,
});

export const REQUEST_COMMANDS: Command[] = [
  {
    path: 'request',
    summary:
      'Begin a task (unless --task) and get a credential for one role; prints JSON. A request that ' +
      'fails after the task was begun ends that task, and the error names it.',
    flags: {
      env: text('ENV', 'the environment of the new task (not with --task)'),
      role: text('BACKEND/NAME', 'the role to get a credential for, e.g. token/demo (required)'),
      ttl: text('DURATION', "credential lifetime: 90, 90s, 15m, 2h; default and cap: the role's maximum"),
      'task-ttl': text('DURATION', "the new task's lifetime; default: the broker's tasks.defaultTtlSeconds"),
      task: text('TASK_ID', 'request inside an open task instead of beginning one (not with --env)'),
      intent: text('TEXT', 'what the task is for (recorded); default "svid-broker request <role>"'),
      sensitivity: text('LEVEL', 'the data the credential touches: public|internal|confidential|restricted'),
      'change-type': text('TYPE', 'read (default)|write|destructive|admin'),
      justification: text('TEXT', 'why (shown to approvers; at most 1024 characters)'),
      tool: text(
        'NAME',
        'the tool that will use the credential (default svid-broker-cli); when given, also context.tool_name',
      ),
      'tool-call-id': text('ID', "the tool call's id in the agent's conversation (context.tool_call_id)"),
      session: text('ID', "the agent's session or conversation id (context.session_id)"),
      model: text('NAME', 'the model acting (context.model)'),
      'prompt-digest': text(
        'ALG:HEX',
        'digest of the prompt or plan, e.g. sha256:<64 hex> (context.prompt_digest)',
      ),
      plan: text('TEXT', "the agent's plan (context.plan; at most 2048 characters)"),
      wait: { type: 'boolean', help: 'if approval is needed, wait for it and print the credential' },
      ...CONNECTION_FLAGS,
    },
    fields: REQUEST_FIELDS,
    notes:
      'exit codes: 0 issued, 1 error (refused, unreachable), 2 usage, 3 pending approval (without --wait;\n' +
      'prints the approval id and task; re-run with --task TASK_ID once approved)',
    run: runRequest,
  },
  {
    path: 'task end',
    args: 'TASK_ID',
    positionals: [1, 1],
    summary: 'End a task: revokes every credential issued in it; prints what it revoked (JSON).',
    flags: { reason: text('TEXT', 'why (recorded in the audit trail)'), ...CONNECTION_FLAGS },
    fields: { task_id: 'TASK_ID' },
    run: runTaskEnd,
  },
];
