/**
 * The public TypeScript SDK for agents (`import { BrokerClient } from 'svid-broker/client'`):
 * typed results instead of wire messages, a task handle that ends its task when disposed
 * (`await using task = await client.beginTask(...)`), and retries only where a call is idempotent
 * (GetTask, EndTask): BeginTask and IssueCredential are never repeated behind the caller's back.
 */
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import {
  fromTimestamp,
  type AgentContextMsg,
  type AwaitApprovalResponseMsg,
  type CredentialMsg,
  type IssueCredentialResponseMsg,
  type TaskMsg,
} from '../server/broker-proto.js';
import { WorkloadChannel, type WorkloadChannelOptions } from './workload-channel.js';

export type ConnectOptions = WorkloadChannelOptions & {
  /** Retries of idempotent calls on UNAVAILABLE (default 3, with 100 ms doubling backoff). */
  retries?: number;
};

export interface TaskInfo {
  id: string;
  agent: string;
  environment: string;
  intent: string;
  labels: Record<string, string>;
  state: string;
  createdAt: Date;
  expiresAt: Date;
}

export interface Credential {
  /** `jwt` (bearer token), `vault_token`, `vault_secret`, ... (see the README's credential kinds). */
  kind: string;
  token: string;
  data: Record<string, string>;
  metadata: Record<string, string>;
}

export interface IssuedCredential {
  status: 'issued';
  leaseId: string;
  taskId: string;
  role: string;
  environment: string;
  expiresAt: Date;
  ttlSeconds: number;
  policyIds: string[];
  breakGlass: boolean;
  credential: Credential;
}

export interface PendingApproval {
  status: 'pending_approval';
  approvalId: string;
  taskId: string;
  role: string;
  environment: string;
  approvalsRequired: number;
  approvalsReceived: number;
  approvalExpiresAt: Date;
  policyIds: string[];
}

export type IssueResult = IssuedCredential | PendingApproval;

/**
 * What the agent says about the call: recorded on the audit records as given (marked
 * `asserted_by: "agent"`) and given to policy as `context.agentContext`. Ids and the model at most
 * 128 characters, the plan 2048; no control or bidi characters; promptDigest `sha256:<64 hex>`.
 */
export interface AgentContext {
  toolName?: string;
  toolCallId?: string;
  sessionId?: string;
  model?: string;
  promptDigest?: string;
  plan?: string;
}

/** The wire form of an AgentContext, or undefined when none was given. */
function contextMsg(ctx: AgentContext | undefined): AgentContextMsg | undefined {
  if (!ctx) return undefined;
  return {
    tool_name: ctx.toolName ?? '',
    tool_call_id: ctx.toolCallId ?? '',
    session_id: ctx.sessionId ?? '',
    model: ctx.model ?? '',
    prompt_digest: ctx.promptDigest ?? '',
    plan: ctx.plan ?? '',
  };
}

export interface CredentialRequest {
  role: string;
  ttlSeconds?: number;
  sensitivity?: 'public' | 'internal' | 'confidential' | 'restricted';
  changeType?: 'read' | 'write' | 'destructive' | 'admin';
  justification?: string;
  tool?: string;
  context?: AgentContext;
}

export interface RoleOption {
  name: string;
  backend: string;
  description: string;
  sensitivity: string;
  maxTtlSeconds: number;
  decision: 'allow' | 'approval_required' | 'deny';
  approvalsRequired: number;
  policyIds: string[];
}

export interface ApprovalProgress {
  state: string;
  approvalsReceived: number;
  approvalsRequired: number;
}

export interface AwaitOptions {
  onProgress?: (progress: ApprovalProgress) => void;
  timeoutMs?: number;
}

export interface EndedTask {
  task: TaskInfo | undefined;
  revoked: { leaseId: string; role: string; state: string }[];
}

export class BrokerClient implements AsyncDisposable {
  private constructor(
    private readonly channel: WorkloadChannel,
    private readonly retries: number,
  ) {}

  /** Connects with the agent's SVID from the Workload API; resolves once the first SVID arrived. */
  static async connect(opts: ConnectOptions = {}): Promise<BrokerClient> {
    return new BrokerClient(await WorkloadChannel.open(opts), opts.retries ?? 3);
  }

  /** This agent's SPIFFE ID. */
  get spiffeId(): string {
    return this.channel.spiffeId;
  }

  async beginTask(input: {
    environment: string;
    intent?: string;
    ttlSeconds?: number;
    labels?: Record<string, string>;
    context?: AgentContext;
  }): Promise<TaskHandle> {
    const context = contextMsg(input.context);
    const msg = await this.channel.client().beginTask({
      environment: input.environment,
      intent: input.intent ?? '',
      ttl_seconds: input.ttlSeconds ?? 0,
      labels: input.labels ?? {},
      ...(context ? { context } : {}),
    });
    return new TaskHandle(this, toTask(msg));
  }

  /** Idempotent: retried on UNAVAILABLE. */
  async getTask(taskId: string): Promise<TaskInfo> {
    return toTask(await this.retrying(() => this.channel.client().getTask({ task_id: taskId })));
  }

  /** The roles this agent may ask for in the task now (policy's answer to a plain read request). */
  async listRoles(taskId: string): Promise<RoleOption[]> {
    const res = await this.retrying(() => this.channel.client().listRoles(taskId));
    return res.roles.map((r) => ({
      name: r.name,
      backend: r.backend,
      description: r.description,
      sensitivity: r.sensitivity,
      maxTtlSeconds: r.max_ttl_seconds,
      decision: r.decision as RoleOption['decision'],
      approvalsRequired: r.approvals_required,
      policyIds: r.policy_ids,
    }));
  }

  async issueCredential(taskId: string, req: CredentialRequest): Promise<IssueResult> {
    const msg = await this.channel.client().issueCredential({
      task_id: taskId,
      role: req.role,
      ttl_seconds: req.ttlSeconds ?? 0,
      sensitivity: req.sensitivity ?? '',
      change_type: req.changeType ?? '',
      justification: req.justification ?? '',
      tool: req.tool ?? '',
      ...(req.context ? { context: contextMsg(req.context) } : {}),
    });
    return toIssueResult(msg);
  }

  /** Waits for humans to decide; resolves with the credential once approved. */
  async awaitApproval(approvalId: string, opts: AwaitOptions = {}): Promise<IssuedCredential> {
    const progress = (msg: AwaitApprovalResponseMsg): void =>
      opts.onProgress?.({
        state: msg.state,
        approvalsReceived: msg.approvals_received,
        approvalsRequired: msg.approvals_required,
      });
    const msg = await this.channel.client().awaitApproval(approvalId, progress, opts.timeoutMs);
    return toIssued(msg);
  }

  /**
   * Ends a task and revokes what it holds. Idempotent: retried on UNAVAILABLE, and a retry that
   * finds the task already ended (the first attempt went through) resolves with `task` undefined.
   */
  async endTask(taskId: string, reason = ''): Promise<EndedTask> {
    let attempt = 0;
    return this.retrying(async () => {
      attempt++;
      try {
        const res = await this.channel.client().endTask({ task_id: taskId, reason });
        return {
          task: res.task ? toTask(res.task) : undefined,
          revoked: res.revoked.map((r) => ({ leaseId: r.lease_id, role: r.role, state: r.state })),
        };
      } catch (err) {
        if (attempt > 1 && isTaskEnded(err)) return { task: undefined, revoked: [] };
        throw err;
      }
    });
  }

  close(): void {
    this.channel.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  private async retrying<T>(call: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        if (attempt >= this.retries || (err as ServiceError).code !== GrpcStatus.UNAVAILABLE) throw err;
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
  }
}

/** One task: issue credentials in it, and end it (on dispose too, unless already ended). */
export class TaskHandle implements AsyncDisposable {
  private ended = false;

  constructor(
    private readonly client: BrokerClient,
    readonly info: TaskInfo,
  ) {}

  get id(): string {
    return this.info.id;
  }

  issue(req: CredentialRequest): Promise<IssueResult> {
    return this.client.issueCredential(this.info.id, req);
  }

  awaitApproval(approvalId: string, opts?: AwaitOptions): Promise<IssuedCredential> {
    return this.client.awaitApproval(approvalId, opts);
  }

  async end(reason = ''): Promise<EndedTask> {
    const res = await this.client.endTask(this.info.id, reason);
    this.ended = true;
    return res;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.ended) return;
    try {
      await this.end('task scope closed');
    } catch (err) {
      // Already ended or expired elsewhere: nothing left to revoke.
      if (!isTaskEnded(err)) throw err;
      this.ended = true;
    }
  }
}

function isTaskEnded(err: unknown): boolean {
  const e = err as ServiceError;
  return e?.code === GrpcStatus.FAILED_PRECONDITION && /task is (already|no longer)/.test(e.details ?? '');
}

function toTask(msg: TaskMsg): TaskInfo {
  return {
    id: msg.task_id,
    agent: msg.agent,
    environment: msg.environment,
    intent: msg.intent,
    labels: msg.labels,
    state: msg.state,
    createdAt: new Date(fromTimestamp(msg.created_at)),
    expiresAt: new Date(fromTimestamp(msg.expires_at)),
  };
}

function toCredential(msg: CredentialMsg | null): Credential {
  return {
    kind: msg?.kind ?? '',
    token: msg?.token ?? '',
    data: msg?.data ?? {},
    metadata: msg?.metadata ?? {},
  };
}

function toIssued(msg: IssueCredentialResponseMsg): IssuedCredential {
  return {
    status: 'issued',
    leaseId: msg.lease_id,
    taskId: msg.task_id,
    role: msg.role,
    environment: msg.environment,
    expiresAt: new Date(fromTimestamp(msg.expires_at)),
    ttlSeconds: msg.ttl_seconds,
    policyIds: msg.policy_ids,
    breakGlass: msg.break_glass,
    credential: toCredential(msg.credential),
  };
}

function toIssueResult(msg: IssueCredentialResponseMsg): IssueResult {
  if (msg.status !== 'PENDING_APPROVAL') return toIssued(msg);
  return {
    status: 'pending_approval',
    approvalId: msg.approval_id,
    taskId: msg.task_id,
    role: msg.role,
    environment: msg.environment,
    approvalsRequired: msg.approvals_required,
    approvalsReceived: msg.approvals_received,
    approvalExpiresAt: new Date(fromTimestamp(msg.approval_expires_at)),
    policyIds: msg.policy_ids,
  };
}
