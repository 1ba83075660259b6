/**
 * Approval and break-glass seams. Times are epoch ms. Both stores are shared by every replica
 * (Redis); the memory versions honour the same contract for tests and the dev stack.
 */

export type ApprovalState = 'pending' | 'approved' | 'denied' | 'consumed' | 'expired';

export interface ApprovalDecisionRecord {
  approver: string;
  reason: string;
  at: number;
}

/** A credential request that policy says needs human approval, bound to its exact parameters. */
export interface ApprovalRequest {
  id: string;
  /** sha256 hex of the canonical request: agent, task, role, environment, ttl, sensitivity, change type, justification, tool. */
  digest: string;
  /** SPIFFE ID of the agent that asked. It can never approve its own request. */
  requester: string;
  taskId: string;
  role: string;
  environment: string;
  ttlSeconds: number;
  sensitivity: string;
  changeType: string;
  justification: string;
  tool: string;
  /** Distinct approvals needed (from the policy's @approvals annotation; >= 1). */
  required: number;
  /** Policies whose denial an approval lifts. */
  policyIds: string[];
  createdAt: number;
  expiresAt: number;
  state: ApprovalState;
  approvals: ApprovalDecisionRecord[];
  denial?: ApprovalDecisionRecord;
  consumedAt?: number;
  /** A request from a delegated task: the agents from the root task's owner down to the requester. */
  delegationChain?: string[];
}

export type DecideOutcome =
  /** The approval was recorded and the request now has all it needs. */
  | 'approved'
  /** The approval was recorded; more distinct approvers are needed. */
  | 'recorded'
  /** A denial was recorded; the request is closed. */
  | 'denied'
  | 'not_found'
  /** Already approved, denied, consumed or expired. */
  | 'not_pending'
  | 'expired'
  /** The approver is the requester. */
  | 'self_approval'
  /** This approver already approved it. */
  | 'duplicate_approver';

/** Caps on open requests (pending or approved, unexpired); 0 or absent: no cap. */
export interface OpenApprovalCaps {
  perAgent?: number;
  perTask?: number;
}

export type CreateApprovalResult = 'ok' | 'too_many_open_for_agent' | 'too_many_open_for_task';

export interface ApprovalStore {
  /**
   * Stores a new pending request (state 'pending', no approvals), unless its requester or its task
   * already holds `caps` open requests; the count and the write are atomic.
   */
  create(request: ApprovalRequest, caps?: OpenApprovalCaps): Promise<CreateApprovalResult>;
  get(id: string, now: number): Promise<ApprovalRequest | undefined>;
  /** The newest request with this digest that is pending or approved and unexpired at `now`. */
  findOpenByDigest(digest: string, now: number): Promise<ApprovalRequest | undefined>;
  /**
   * False only when the task has no request pending or approved and unexpired at `now` (true may
   * be a request since decided or consumed): lets issuance skip findOpenByDigest. One ZCOUNT.
   */
  mayHaveOpenForTask(taskId: string, now: number): Promise<boolean>;
  /** Requests in a state (default: pending; `any`: every state), newest first, expired ones reported as 'expired'. */
  list(
    filter: { state?: ApprovalState | 'any'; requester?: string },
    now: number,
  ): Promise<ApprovalRequest[]>;
  /** How many requests are pending and unexpired at `now` (what list() would return); cheap, for metrics. */
  countPending(now: number): Promise<number>;
  /**
   * Atomically records one approver's decision. Refuses the requester, a second approval by the
   * same approver, and anything not pending or past its expiry. N distinct approvals -> 'approved';
   * one denial -> 'denied'.
   */
  decide(
    id: string,
    decision: { approver: string; approve: boolean; reason: string; at: number },
  ): Promise<{ outcome: DecideOutcome; request?: ApprovalRequest }>;
  /** Atomically moves an approved, unexpired request with this digest to 'consumed'; exactly one caller wins. */
  consume(id: string, digest: string, at: number): Promise<ApprovalRequest | undefined>;
}

export interface BreakGlassGrant {
  id: string;
  /** SPIFFE ID of the identity that granted it. */
  grantedBy: string;
  /** The agent the override is for. */
  agent: string;
  /** When set, the override holds only inside this task. */
  taskId?: string;
  /** Roles (`<backend>/<name>`) the override covers. */
  roles: string[];
  reason: string;
  createdAt: number;
  expiresAt: number;
  uses: number;
  reviewed: boolean;
  reviewedBy?: string;
  reviewedAt?: number;
  reviewNote?: string;
}

export interface BreakGlassStore {
  grant(grant: BreakGlassGrant): Promise<void>;
  get(id: string): Promise<BreakGlassGrant | undefined>;
  /** An unexpired grant covering this agent (and task, when the grant names one) and role. */
  findActive(agent: string, taskId: string, role: string, now: number): Promise<BreakGlassGrant | undefined>;
  recordUse(id: string): Promise<void>;
  /** Grants not yet reviewed (expired ones included: they stay until someone reviews them), oldest first. */
  listUnreviewed(): Promise<BreakGlassGrant[]>;
  /** Marks a grant reviewed; undefined if unknown. Reviewing does not end an unexpired grant. */
  review(id: string, reviewer: string, note: string, at: number): Promise<BreakGlassGrant | undefined>;
}
