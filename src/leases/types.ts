/**
 * Lease seam. All times are epoch milliseconds.
 */
export type TaskState = 'active' | 'ended' | 'expired';
/**
 * `pending`: written (with the minted credential's backend reference) but its credential has not
 * left the broker: issuance writes every lease `pending`, writes the audit record, then activates
 * it (activateLease). A `pending` lease nobody activates (the broker died, or the write landed
 * after its caller gave up) is an orphan: the reaper claims it once it is older than
 * `reaper.orphanAfterMs` (claimOrphanedLeases) and revokes it at its backend.
 * `revoking`: the broker has ended the lease (it left the active index and is on the deny list) but
 * the backend has not yet confirmed the revocation; a durable queue finishes it, moving the lease to
 * `revoked` or, once retries are spent, `revoke_failed` (markRevokeOutcome).
 */
export type LeaseState = 'pending' | 'active' | 'revoking' | 'revoked' | 'expired' | 'revoke_failed';

/** States markLeaseEnded moves an active lease to. */
export type LeaseEndState = 'revoking' | 'revoked' | 'expired' | 'revoke_failed';

/** Final states of a lease that was `revoking`. */
export type RevokeOutcome = 'revoked' | 'revoke_failed';

export interface Task {
  id: string;
  agent: string;
  environment: string;
  intent: string;
  labels: Record<string, string>;
  createdAt: number;
  expiresAt: number;
  state: TaskState;
  endedAt?: number;
  endReason?: string;
  /** Set on a task delegated from another one (DelegateTask); root tasks have none. */
  delegation?: TaskDelegation;
}

/**
 * What narrows a delegated task: every field is at most its parent's (src/broker/delegate-task.ts
 * checks that before the store writes it). Stored with the task, read by every decision in it.
 */
export interface TaskDelegation {
  parentTaskId: string;
  /** SPIFFE IDs from the root task's agent down to this task's agent (the last entry). */
  chain: string[];
  /** The roles the delegate may request, sorted. */
  roles: string[];
  /** The highest sensitivity the delegate may touch. */
  sensitivityCeiling: 'public' | 'internal' | 'confidential' | 'restricted';
  /** The widest change type the delegate may make. */
  changeTypeCeiling: 'read' | 'write' | 'destructive' | 'admin';
  /** How many more levels may be delegated below this task (0: none). */
  remainingDepth: number;
}

/** Result codes of createChildTask, from the Lua script's named negative codes. */
export type CreateChildResult =
  'ok' | 'parent_not_found' | 'parent_not_active' | 'parent_expired' | 'child_outlives_parent';

export interface Lease {
  id: string;
  agent: string;
  taskId: string;
  environment: string;
  /** `<backend>/<name>` */
  role: string;
  backend: string;
  /** Opaque to the store: what the backend needs to revoke (a jti, a Vault lease id, an accessor). Never a secret. */
  backendRef: string;
  issuedAt: number;
  expiresAt: number;
  state: LeaseState;
  revokeReason?: string;
  revokedAt?: number;
}

export interface LeaseFilter {
  agent?: string;
  taskId?: string;
  environment?: string;
  /** Default: all states. */
  state?: LeaseState;
}

/** What a task has been issued so far, for the policy context (taskCredentialCount, taskRoles). */
export interface TaskLeaseSummary {
  /** Leases recorded for the task, in every state. */
  count: number;
  /** Their distinct roles, sorted. */
  roles: string[];
  /**
   * The task's lease version: bumped by every putLease of the task, so a decision that saw
   * version N holds at the lease write only if the write still finds N (PutLeaseOptions).
   */
  version: number;
}

/** Result codes of putLease, from the Lua script's named negative codes. */
export type PutLeaseResult =
  | 'ok'
  | 'task_not_found'
  | 'task_not_active'
  | 'task_expired'
  | 'lease_exceeds_task'
  | 'agent_quarantined'
  | 'task_changed';

export interface PutLeaseOptions {
  /**
   * The task version the decision saw (TaskLeaseSummary.version). When given, the write is refused
   * with `task_changed` if another lease of the task was written since: the decision is stale.
   */
  expectVersion?: number;
}

/** Result codes of activateLease. */
export type ActivateLeaseResult =
  'ok' | 'lease_not_found' | 'lease_not_pending' | 'task_not_found' | 'task_not_active' | 'task_expired';

/**
 * Contract: durable, shared by every broker replica. Every state transition is atomic and happens
 * once: of two concurrent callers of markLeaseEnded/endTask for the same id, exactly one gets the
 * record back. Any storage failure rejects (never resolves with a guess).
 */
export interface LeaseStore {
  /** True when a restart keeps what was written (Redis); false for the in-process store. */
  readonly durable: boolean;
  createTask(task: Task): Promise<void>;
  getTask(id: string): Promise<Task | undefined>;
  /**
   * A task and its taskLeaseSummary from one read (IssueCredential's first decision, ListRoles),
   * instead of reading the task twice. Undefined: no such task.
   */
  getTaskWithSummary(id: string): Promise<{ task: Task; summary: TaskLeaseSummary } | undefined>;
  /**
   * Writes a delegated task (task.delegation set) only if its parent is active, unexpired at `now`
   * and expires no earlier than the child, and links it under the parent (listChildTasks); all in
   * one step, so a child can never appear under a parent that has already ended.
   */
  createChildTask(task: Task, now: number): Promise<CreateChildResult>;
  /** Ids of the tasks delegated directly from `parentId` (any state). */
  listChildTasks(parentId: string): Promise<string[]>;
  /**
   * Active tasks of `agent`: an exact SPIFFE ID (its own index), or a pattern ending in `/*` or
   * `/**` (every active task is looked at: an incident action, not a hot path).
   */
  listActiveTasks(agent: string): Promise<Task[]>;
  /** Atomically moves an active task to `ended`/`expired`; returns the updated task, or undefined if it was not active. */
  endTask(id: string, state: 'ended' | 'expired', reason: string, at: number): Promise<Task | undefined>;
  /** Number of active tasks of an agent (for later budgets). */
  countActiveTasks(agent: string, now: number): Promise<number>;
  /**
   * Writes a lease only if its task is active, unexpired at `now`, lease.expiresAt <=
   * task.expiresAt, no quarantine covers its agent and (opts.expectVersion) the task version is
   * unchanged; all in one step. A new lease is `pending` (issuance: the broker activates it after
   * the audit record) or `active` (written whole). Every write bumps the task version.
   */
  putLease(lease: Lease, now: number, opts?: PutLeaseOptions): Promise<PutLeaseResult>;
  /**
   * Flips a `pending` lease to `active`, only if its task is still active and unexpired at `now`
   * (a task ended while the lease was pending never gains an active lease).
   */
  activateLease(id: string, taskId: string, now: number): Promise<ActivateLeaseResult>;
  /**
   * Claims up to `limit` `pending` leases written at or before `writtenBefore` (orphans: nobody
   * activated them), moving each to `revoking` (deny-listed) and queueing its backend revocation
   * in the same step; each is returned to exactly one caller.
   */
  claimOrphanedLeases(
    writtenBefore: number,
    limit: number,
    opts: { reason: string; at: number; runAt: number },
  ): Promise<Lease[]>;
  /** Pending leases (written, not yet activated), from the pending set: one count, no listing. */
  pendingLeaseCount(): Promise<number>;
  getLease(id: string): Promise<Lease | undefined>;
  listLeases(filter: LeaseFilter): Promise<Lease[]>;
  /**
   * A task's lease count, roles and version from a tally kept as leases are put, in O(roles)
   * instead of listing every lease (which made IssueCredential O(leases of the task)). A task
   * written before the tally existed is summarized from its leases. Undefined: no such task.
   */
  taskLeaseSummary(taskId: string): Promise<TaskLeaseSummary | undefined>;
  /**
   * Atomically moves an active (or pending) lease to `revoking`/`revoked`/`expired`/`revoke_failed`;
   * returns the updated lease, or undefined if it was neither. `revoking` and `revoked` put the lease on the
   * deny list (listRevokedUnexpired) at once.
   */
  markLeaseEnded(id: string, state: LeaseEndState, reason: string, at: number): Promise<Lease | undefined>;
  /**
   * Atomically moves a `revoking` lease to its outcome, once: `revoked` when the backend confirmed,
   * `revoke_failed` when retries were spent. `reason` and `at` replace revokeReason and revokedAt.
   * Returns the updated lease, or undefined if it was not `revoking`. The lease stays on the deny
   * list either way: a credential the broker set out to revoke is refused downstream even if the
   * backend never confirmed.
   */
  markRevokeOutcome(
    id: string,
    outcome: RevokeOutcome,
    reason: string,
    at: number,
  ): Promise<Lease | undefined>;
  /** Claims up to `limit` active leases with expiresAt <= now, moving them to `expired`; each is returned to exactly one caller. */
  claimExpiredLeases(now: number, limit: number): Promise<Lease[]>;
  /** Claims up to `limit` active tasks with expiresAt <= now, moving them to `expired`. */
  claimExpiredTasks(now: number, limit: number): Promise<Task[]>;
  /**
   * Leases on the deny list (`revoked`, `revoking`, and `revoke_failed` reached from `revoking`)
   * whose credential is still within its lifetime at `now`, optionally for one backend.
   */
  listRevokedUnexpired(now: number, backend?: string): Promise<Lease[]>;
  /**
   * One page of the token deny list (what GET /v1/revoked serves): the jtis of `token` leases that
   * went on the deny list, with expiresAt > `since`, in (expiresAt, jti) order, after `after` (the
   * previous page's last entry). Entries at or before `since` are dropped. O(log N + limit): it
   * never reads a lease, so its cost does not grow with the number of revoked leases.
   */
  listRevokedTokens(since: number, page: { after?: RevokedToken; limit: number }): Promise<RevokedToken[]>;
  /**
   * One page of leases matching `selector`, in expiresAt order, from the narrowest index it names.
   * Pages are by position: under heavy churn a page may repeat or miss a lease that moved, which
   * is fine for listing (a revocation uses revokeSelected, which cannot miss one).
   */
  scanLeases(selector: LeaseSelector, cursor: string | undefined, pageSize: number): Promise<LeasePage>;
  /**
   * Revokes every active lease matching `selector`, page by page: each page moves its matching
   * leases to `revoking` (deny-listed at once) and queues their backend revocation in one atomic
   * step. The run walks a snapshot of the index taken at the start, so leases leaving the active
   * set meanwhile cannot make it skip one; leases created after the start are not included.
   * Memory stays bounded by the page size however many leases match.
   */
  revokeSelected(
    selector: LeaseSelector,
    opts: { reason: string; at: number; runAt: number; pageSize: number },
  ): AsyncGenerator<RevocationPage>;
  /**
   * Records the outcome of many `revoking` leases at once and removes their queued jobs; returns
   * the leases it moved (those no longer `revoking` are left out).
   */
  completeRevocations(outcomes: readonly RevocationOutcome[], at: number): Promise<Lease[]>;
  /** Active leases per backend, from a count kept as leases are put and end. */
  activeLeaseCounts(): Promise<Record<string, number>>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** A broker-signed token on the deny list: its jti (the lease's backendRef) and expiry. */
export interface RevokedToken {
  jti: string;
  expiresAt: number;
}

/** The backend whose leases' backendRefs are token ids that verifiers look up at /v1/revoked. */
export const TOKEN_BACKEND = 'token';

/**
 * Which leases an incident action covers: every field given must match (an empty selector matches
 * every lease). `agentPattern` is a SPIFFE ID pattern ending in `/*` or `/**`.
 */
export interface LeaseSelector {
  leaseId?: string;
  agent?: string;
  agentPattern?: string;
  taskId?: string;
  environment?: string;
  role?: string;
  backend?: string;
  trustDomain?: string;
  /** Listing only; a revocation always takes `active` leases. Default: any state. */
  state?: LeaseState;
}

export interface LeasePage {
  leases: Lease[];
  /** Pass back to continue; undefined when the scan is complete. */
  cursor?: string;
  /** Index entries looked at for this page (a page may match none of them). */
  scanned: number;
}

/** One page of a bulk revocation: the leases it moved to `revoking` (their backend jobs are queued). */
export interface RevocationPage {
  leases: Lease[];
  scanned: number;
  /** Index entries the whole run will look at. */
  total: number;
}

export interface RevocationOutcome {
  id: string;
  outcome: RevokeOutcome;
  reason: string;
}

/** What a bulk revocation did at each backend (LeaseAdmin's report). */
export interface BackendCounts {
  revoked: number;
  pendingRetry: number;
  notRevocable: number;
}

export interface RevokeReport {
  /** Active leases the selector matched (in a dry run: would revoke). */
  matched: number;
  /** Revoked at the backend now. */
  revoked: number;
  /** The backend refused for now: `revoking`, the revocation queue retries them. */
  pendingRetry: number;
  /** Credentials the backend cannot revoke one by one (cloud STS): ended in the ledger, alive until expiry. */
  notRevocable: number;
  byBackend: Record<string, BackendCounts>;
  dryRun: boolean;
  /** Index entries looked at so far, out of `toScan`. */
  scanned: number;
  toScan: number;
  done: boolean;
  /** With denyOlderSessions: the cut-off (RFC 3339) before which the role's AWS sessions are denied. */
  olderSessionsDeniedBefore?: string;
}
