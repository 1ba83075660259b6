/**
 * `svid-broker mcp`: an MCP server run next to an agent. It speaks to the broker with the agent's
 * own SVID (Workload API), never with a secret in its config, and keeps credential values out of
 * the model's context: request_credential writes them to files only the agent's user can read and
 * returns where they are (values in the tool result only with the explicit `returnSecrets` opt-in).
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import type { AgentContext, BrokerClient, IssueResult, IssuedCredential } from '../client/agent-client.js';
import { CredentialFiles } from './credential-files.js';

export interface McpOptions {
  client: BrokerClient;
  files: CredentialFiles;
  /** Put credential values in tool results too (off by default: they would enter the model's context). */
  returnSecrets: boolean;
  version: string;
}

type ToolResult = { content: { type: 'text'; text: string }[]; isError?: boolean };

const SENSITIVITY = z.enum(['public', 'internal', 'confidential', 'restricted']);
const CHANGE_TYPE = z.enum(['read', 'write', 'destructive', 'admin']);

/** Context the model may state itself; the server adds the tool, the call id and the session. */
const CONTEXT_INPUT = {
  plan: z
    .string()
    .optional()
    .describe('your plan for this step, in a few sentences (recorded, at most 2048)'),
  prompt_digest: z.string().optional().describe('sha256:<hex> of the prompt or plan this step follows'),
  model: z.string().optional().describe('the model acting'),
};

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/**
 * The agent context of one MCP tool call: the MCP tool called and the JSON-RPC id of that call,
 * the MCP session (when the transport has one; stdio has none), and what the model stated.
 */
function mcpContext(
  tool: string,
  extra: Extra,
  stated: { plan?: string | undefined; prompt_digest?: string | undefined; model?: string | undefined },
): AgentContext {
  return {
    toolName: tool,
    toolCallId: String(extra.requestId),
    ...(extra.sessionId ? { sessionId: extra.sessionId } : {}),
    ...(stated.plan ? { plan: stated.plan } : {}),
    ...(stated.prompt_digest ? { promptDigest: stated.prompt_digest } : {}),
    ...(stated.model ? { model: stated.model } : {}),
  };
}

export function buildMcpServer(opts: McpOptions): McpServer {
  const server = new McpServer({ name: 'svid-broker', version: opts.version });
  registerTaskTools(server, opts);
  registerCredentialTools(server, opts);
  return server;
}

function registerTaskTools(server: McpServer, { client, files }: McpOptions): void {
  server.registerTool(
    'begin_task',
    {
      description:
        'Begin a task in one environment before asking for credentials. Every credential issued in the ' +
        'task is revoked when the task ends or expires. Returns the task id.',
      inputSchema: {
        environment: z.string().describe('the environment the task works in, e.g. dev, staging, prod'),
        intent: z.string().describe('what the task is for, in a sentence (recorded in the audit trail)'),
        ttl_seconds: z.number().int().min(0).optional().describe('task lifetime; 0 or absent: the default'),
        ...CONTEXT_INPUT,
      },
    },
    (args, extra) =>
      answer(async () => {
        const task = await client.beginTask({
          environment: args.environment,
          intent: args.intent,
          ...(args.ttl_seconds ? { ttlSeconds: args.ttl_seconds } : {}),
          context: mcpContext('begin_task', extra, args),
        });
        return { task_id: task.id, environment: task.info.environment, expires_at: task.info.expiresAt };
      }),
  );
  server.registerTool(
    'task_status',
    {
      description: 'Show a task: its state, expiry, and the credential files this server wrote for it.',
      inputSchema: { task_id: z.string() },
    },
    (args) =>
      answer(async () => {
        const task = await client.getTask(args.task_id);
        return {
          task_id: task.id,
          environment: task.environment,
          state: task.state,
          expires_at: task.expiresAt,
          credential_files: files.filesOf(task.id),
        };
      }),
  );
  server.registerTool(
    'list_roles',
    {
      description:
        'List the roles you may ask for in a task now, as policy answers a plain read request for each: ' +
        'allow, approval_required (with how many approvers) or deny. Asking grants nothing.',
      inputSchema: { task_id: z.string() },
    },
    (args) => answer(async () => ({ task_id: args.task_id, roles: await client.listRoles(args.task_id) })),
  );
  server.registerTool(
    'end_task',
    {
      description:
        'End a task: revokes every credential issued in it and deletes the credential files written for it.',
      inputSchema: { task_id: z.string(), reason: z.string().optional() },
    },
    (args) =>
      answer(async () => {
        // The files go whatever the broker answers: the agent is done with them, and a task that
        // ended or expired elsewhere (the broker refuses then) must not leave them behind.
        let removed = 0;
        let ended;
        try {
          ended = await client.endTask(args.task_id, args.reason ?? 'ended by the agent (MCP)');
        } finally {
          removed = files.removeTask(args.task_id);
        }
        return {
          task_id: args.task_id,
          state: ended.task?.state,
          revoked: ended.revoked,
          files_removed: removed,
        };
      }),
  );
}

function registerCredentialTools(server: McpServer, opts: McpOptions): void {
  const { client } = opts;
  server.registerTool(
    'request_credential',
    {
      description:
        'Ask for a short-lived credential for one role inside a task. The credential is written to a ' +
        'file only your user can read; the result gives its path and an env file to source, not the value. ' +
        'A request that needs human approval returns status pending_approval and an approval_id: call ' +
        'await_approval with it.',
      inputSchema: {
        task_id: z.string(),
        role: z.string().describe('backend/name, e.g. token/demo or vault/db-readonly'),
        ttl_seconds: z.number().int().min(0).optional(),
        sensitivity: SENSITIVITY.optional().describe('the most sensitive data the call will touch'),
        change_type: CHANGE_TYPE.optional().describe('what the call will do'),
        justification: z.string().optional().describe('why, for the approver and the audit trail'),
        tool: z.string().optional().describe('the tool the credential is for'),
        ...CONTEXT_INPUT,
      },
    },
    (args, extra) =>
      answer(async () => {
        const result = await client.issueCredential(args.task_id, {
          role: args.role,
          ...(args.ttl_seconds ? { ttlSeconds: args.ttl_seconds } : {}),
          ...(args.sensitivity ? { sensitivity: args.sensitivity } : {}),
          ...(args.change_type ? { changeType: args.change_type } : {}),
          justification: args.justification ?? '',
          tool: args.tool ?? 'mcp',
          context: mcpContext('request_credential', extra, args),
        });
        return describeResult(result, opts);
      }),
  );
  server.registerTool(
    'await_approval',
    {
      description:
        'Wait for humans to decide a pending request. Sends progress notifications (pending, approved, ' +
        'denied) while waiting; once approved, the credential is written to a file as with request_credential.',
      inputSchema: {
        approval_id: z.string(),
        timeout_seconds: z.number().int().min(1).max(3600).optional(),
      },
    },
    (args, extra) =>
      answer(async () => {
        const token = extra._meta?.progressToken;
        // Returns the send, so the last notification can be awaited: it must reach the client before the result.
        const notify = async (state: string, received: number, required: number): Promise<void> => {
          if (token === undefined) return;
          await extra
            .sendNotification({
              method: 'notifications/progress',
              params: { progressToken: token, progress: received, total: required, message: state },
            })
            .catch(() => undefined);
        };
        try {
          // `approved` arrives from the broker before the credential is issued: a notification sent
          // just ahead of the result can be dropped by the MCP SDK's client (it handles notifications
          // a microtask late, after the response has removed the request's progress handler).
          const issued = await client.awaitApproval(args.approval_id, {
            onProgress: (p) =>
              void notify(
                p.state === 'approved' ? 'approved' : 'pending',
                p.approvalsReceived,
                p.approvalsRequired,
              ),
            timeoutMs: (args.timeout_seconds ?? 600) * 1000,
          });
          return describeResult(issued, opts);
        } catch (err) {
          await notify('denied', 0, 1);
          throw err;
        }
      }),
  );
}

function describeResult(result: IssueResult, opts: McpOptions): Record<string, unknown> {
  if (result.status === 'pending_approval') {
    return {
      status: 'pending_approval',
      approval_id: result.approvalId,
      approvals_required: result.approvalsRequired,
      approval_expires_at: result.approvalExpiresAt,
      next: 'call await_approval with this approval_id',
    };
  }
  return describeIssued(result, opts);
}

function describeIssued(issued: IssuedCredential, opts: McpOptions): Record<string, unknown> {
  const written = opts.files.write(issued);
  return {
    status: 'issued',
    lease_id: issued.leaseId,
    task_id: issued.taskId,
    role: issued.role,
    kind: issued.credential.kind,
    expires_at: issued.expiresAt,
    path: written.path,
    env_file: written.envPath,
    ...(opts.returnSecrets ? { credential: issued.credential } : {}),
  };
}

/** Tool results are JSON text; a refusal is an error result with the broker's message, never a stack. */
async function answer(work: () => Promise<Record<string, unknown>>): Promise<ToolResult> {
  try {
    return { content: [{ type: 'text', text: JSON.stringify(await work(), null, 2) }] };
  } catch (err) {
    return { content: [{ type: 'text', text: refusalText(err) }], isError: true };
  }
}

function refusalText(err: unknown): string {
  const e = err as { details?: string; message?: string; code?: number };
  return JSON.stringify({ error: e.details ?? e.message ?? 'request failed', grpc_code: e.code });
}
