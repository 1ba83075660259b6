/**
 * In-process LeaseStore for the dev stack when no Redis is around. Same contract and same
 * refusals as RedisLeaseStore (the contract tests run against both), but not durable and not shared
 * between processes.
 *
 * Each transition runs synchronously between two awaits, so it is atomic with respect to every
 * other call in the process, which is what the Lua scripts give the Redis store.
 */
import { invalidArgument, unavailable } from '../errors.js';
import { patternMatches } from '../identity/pattern-match.js';
import type { RevocationQueue } from './revocation-queue.js';
import {
  DEFAULT_RETENTION_SECONDS,
  EXPIRED_REASON,
  LEASE_END_STATES,
  leaseExists,
  leaseMatches,
  REVOKE_OUTCOMES,
  requireLimit,
  requirePageSize,
  requireRetentionSeconds,
  requireSelector,
  requireTime,
  requireVersion,
  TASK_END_STATES,
  taskExists,
  validateEnd,
  validateNewLease,
  validateNewTask,
} from './lease-records.js';
import type {
  ActivateLeaseResult,
  CreateChildResult,
  Lease,
  LeaseEndState,
  LeaseFilter,
  LeasePage,
  LeaseSelector,
  LeaseStore,
  RevocationOutcome,
  RevocationPage,
  PutLeaseOptions,
  RevokedToken,
  PutLeaseResult,
  RevokeOutcome,
  Task,
  TaskLeaseSummary,
} from './types.js';
import { TOKEN_BACKEND } from './types.js';

export interface MemoryLeaseStoreOptions {
  /** How long ended records stay listable after their expiresAt. Default 7 days. */
  retentionSeconds?: number;
  /** Wall clock that drops ended records after retention, as Redis TTLs do. Default Date.now. */
  clock?: () => number;
  /** Whether a quarantine in force covers an agent (put-lease refuses it, as the Lua does). */
  quarantined?: (agent: string, now: number) => boolean;
  /** Where revokeSelected queues backend revocations (the Redis store uses the queue's keys). */
  revocations?: RevocationQueue;
}

/** The task rule of put-lease and activate-lease (includes/open-task.lua): active and unexpired at `now`. */
function openTask(
  task: Task | undefined,
  now: number,
): Task | 'task_not_found' | 'task_not_active' | 'task_expired' {
  if (!task) return 'task_not_found';
  if (task.state !== 'active') return 'task_not_active';
  if (task.expiresAt <= now) return 'task_expired';
  return task;
}

function byExpiry(a: { expiresAt: number; id: string }, b: { expiresAt: number; id: string }): number {
  return a.expiresAt - b.expiresAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export class MemoryLeaseStore implements LeaseStore {
  readonly durable = false;
  private readonly tasks = new Map<string, Task>();
  private readonly leases = new Map<string, Lease>();
  /** Parent task id -> ids of the tasks delegated from it, in creation order (task-children). */
  private readonly children = new Map<string, string[]>();
  /** Ids on the deny list (the Redis store's `revoked` zset): leases revoked or being revoked. */
  private readonly denied = new Set<string>();
  /** Task id -> lease version (put-lease's `leaseVersion`): bumped by every putLease of the task. */
  private readonly versions = new Map<string, number>();
  /** Pending lease id -> when it was written (the Redis store's pending set). */
  private readonly pending = new Map<string, number>();
  /** The token deny list (the Redis store's `revoked:tokens` zset): jti -> expiresAt. */
  private readonly deniedTokens = new Map<string, number>();
  private readonly retentionMs: number;
  private readonly clock: () => number;
  private closed = false;
  private readonly quarantined: (agent: string, now: number) => boolean;
  private readonly revocations: RevocationQueue | undefined;

  constructor(opts: MemoryLeaseStoreOptions = {}) {
    this.retentionMs = requireRetentionSeconds(opts.retentionSeconds ?? DEFAULT_RETENTION_SECONDS) * 1000;
    this.clock = opts.clock ?? Date.now;
    this.quarantined = opts.quarantined ?? (() => false);
    this.revocations = opts.revocations;
  }

  async createTask(task: Task): Promise<void> {
    this.open();
    validateNewTask(task);
    if (this.tasks.has(task.id)) throw taskExists(task.id);
    this.tasks.set(task.id, structuredClone(task));
  }

  async createChildTask(task: Task, now: number): Promise<CreateChildResult> {
    this.open();
    validateNewTask(task);
    requireTime('now', now);
    const parentId = task.delegation?.parentTaskId;
    if (parentId === undefined) throw invalidArgument('task.delegation', 'a child task needs its parent');
    // Same order of checks as create-child-task-5.lua.
    if (this.tasks.has(task.id)) throw taskExists(task.id);
    const parent = this.tasks.get(parentId);
    if (!parent) return 'parent_not_found';
    if (parent.state !== 'active') return 'parent_not_active';
    if (parent.expiresAt <= now) return 'parent_expired';
    if (task.expiresAt > parent.expiresAt) return 'child_outlives_parent';
    this.tasks.set(task.id, structuredClone(task));
    this.children.set(parentId, [...(this.children.get(parentId) ?? []), task.id]);
    return 'ok';
  }

  async listChildTasks(parentId: string): Promise<string[]> {
    this.open();
    return [...(this.children.get(parentId) ?? [])];
  }

  async listActiveTasks(agent: string): Promise<Task[]> {
    this.open();
    return [...this.tasks.values()]
      .filter((t) => t.state === 'active' && patternMatches(agent, t.agent))
      .map((t) => structuredClone(t));
  }

  async getTask(id: string): Promise<Task | undefined> {
    this.open();
    const task = this.tasks.get(id);
    return task && structuredClone(task);
  }

  async getTaskWithSummary(id: string): Promise<{ task: Task; summary: TaskLeaseSummary } | undefined> {
    this.open();
    // One synchronous step, as the Redis store's one read: no other call runs in between.
    const task = this.tasks.get(id);
    return task && { task: structuredClone(task), summary: this.summaryNow(id) };
  }

  async taskLeaseSummary(taskId: string): Promise<TaskLeaseSummary | undefined> {
    this.open();
    return this.tasks.has(taskId) ? this.summaryNow(taskId) : undefined;
  }

  private summaryNow(taskId: string): TaskLeaseSummary {
    const leases = [...this.leases.values()].filter((l) => l.taskId === taskId);
    return {
      count: leases.length,
      roles: [...new Set(leases.map((l) => l.role))].sort(),
      version: this.versions.get(taskId) ?? 0,
    };
  }

  async endTask(
    id: string,
    state: 'ended' | 'expired',
    reason: string,
    at: number,
  ): Promise<Task | undefined> {
    this.open();
    validateEnd(TASK_END_STATES, state, at);
    return this.endTaskNow(id, state, reason, at);
  }

  async countActiveTasks(agent: string, now: number): Promise<number> {
    this.open();
    requireTime('now', now);
    let count = 0;
    for (const t of this.tasks.values()) {
      if (t.agent === agent && t.state === 'active' && t.expiresAt > now) count++;
    }
    return count;
  }

  async putLease(lease: Lease, now: number, opts: PutLeaseOptions = {}): Promise<PutLeaseResult> {
    this.open();
    validateNewLease(lease);
    requireTime('now', now);
    requireVersion(opts.expectVersion);
    // Same order of checks as put-lease-8.lua, so both stores give the same answer.
    const task = openTask(this.tasks.get(lease.taskId), now);
    if (typeof task === 'string') return task;
    if (lease.expiresAt > task.expiresAt) return 'lease_exceeds_task';
    if (this.leases.has(lease.id)) throw leaseExists(lease.id);
    if (this.quarantined(lease.agent, now)) return 'agent_quarantined';
    const version = this.versions.get(task.id) ?? 0;
    if (opts.expectVersion !== undefined && opts.expectVersion !== version) return 'task_changed';
    this.versions.set(task.id, version + 1);
    this.leases.set(lease.id, structuredClone(lease));
    if (lease.state === 'pending') this.pending.set(lease.id, now);
    return 'ok';
  }

  async activateLease(id: string, taskId: string, now: number): Promise<ActivateLeaseResult> {
    this.open();
    requireTime('now', now);
    // Same order of checks as activate-lease-3.lua.
    const lease = this.leases.get(id);
    if (!lease) return 'lease_not_found';
    if (lease.state !== 'pending') return 'lease_not_pending';
    const task = openTask(this.tasks.get(taskId), now);
    if (typeof task === 'string') return task;
    lease.state = 'active';
    this.pending.delete(id);
    return 'ok';
  }

  async claimOrphanedLeases(
    writtenBefore: number,
    limit: number,
    opts: { reason: string; at: number; runAt: number },
  ): Promise<Lease[]> {
    this.open();
    requireTime('writtenBefore', writtenBefore);
    requireLimit(limit);
    requireTime('at', opts.at);
    requireTime('runAt', opts.runAt);
    const due = [...this.pending]
      .filter(([, writtenAt]) => writtenAt <= writtenBefore)
      .sort((a, b) => a[1] - b[1])
      .slice(0, limit);
    const claimed: Lease[] = [];
    for (const [id] of due) {
      const lease = this.leases.get(id);
      if (!lease) continue;
      const ended = await this.revokeWithJob(lease, opts);
      if (ended) claimed.push(ended);
    }
    return claimed;
  }

  async pendingLeaseCount(): Promise<number> {
    this.open();
    return this.pending.size;
  }

  async getLease(id: string): Promise<Lease | undefined> {
    this.open();
    const lease = this.leases.get(id);
    return lease && structuredClone(lease);
  }

  async listLeases(filter: LeaseFilter): Promise<Lease[]> {
    this.open();
    return [...this.leases.values()]
      .filter(
        (l) =>
          (!filter.agent || l.agent === filter.agent) &&
          (!filter.taskId || l.taskId === filter.taskId) &&
          (!filter.environment || l.environment === filter.environment) &&
          (!filter.state || l.state === filter.state),
      )
      .sort(byExpiry)
      .map((l) => structuredClone(l));
  }

  async markLeaseEnded(
    id: string,
    state: LeaseEndState,
    reason: string,
    at: number,
  ): Promise<Lease | undefined> {
    this.open();
    validateEnd(LEASE_END_STATES, state, at);
    return this.endLeaseNow(id, state, reason, at);
  }

  async markRevokeOutcome(
    id: string,
    outcome: RevokeOutcome,
    reason: string,
    at: number,
  ): Promise<Lease | undefined> {
    this.open();
    validateEnd(REVOKE_OUTCOMES, outcome, at);
    const lease = this.leases.get(id);
    if (!lease || lease.state !== 'revoking') return undefined;
    // Stays on the deny list, as in mark-revoke-outcome-1.lua.
    Object.assign(lease, { state: outcome, revokeReason: reason, revokedAt: at });
    return structuredClone(lease);
  }

  async claimExpiredLeases(now: number, limit: number): Promise<Lease[]> {
    this.open();
    requireTime('now', now);
    requireLimit(limit);
    const due = [...this.leases.values()]
      .filter((l) => l.state === 'active' && l.expiresAt <= now)
      .sort(byExpiry)
      .slice(0, limit);
    return due.flatMap((l) => this.endLeaseNow(l.id, 'expired', EXPIRED_REASON, now) ?? []);
  }

  async claimExpiredTasks(now: number, limit: number): Promise<Task[]> {
    this.open();
    requireTime('now', now);
    requireLimit(limit);
    const due = [...this.tasks.values()]
      .filter((t) => t.state === 'active' && t.expiresAt <= now)
      .sort(byExpiry)
      .slice(0, limit);
    return due.flatMap((t) => this.endTaskNow(t.id, 'expired', EXPIRED_REASON, now) ?? []);
  }

  async listRevokedUnexpired(now: number, backend?: string): Promise<Lease[]> {
    this.open();
    requireTime('now', now);
    return [...this.leases.values()]
      .filter((l) => this.denied.has(l.id) && l.expiresAt > now && (!backend || l.backend === backend))
      .sort(byExpiry)
      .map((l) => structuredClone(l));
  }

  async listRevokedTokens(
    since: number,
    page: { after?: RevokedToken; limit: number },
  ): Promise<RevokedToken[]> {
    this.open();
    requireTime('since', since);
    requirePageSize(page.limit);
    for (const [jti, expiresAt] of this.deniedTokens) if (expiresAt <= since) this.deniedTokens.delete(jti);
    const after = page.after;
    const afterEntry = after && this.deniedTokens.get(after.jti);
    // By (expiresAt, jti) after the cursor's entry; a cursor whose entry is gone starts after its
    // expiry, as list-revoked-tokens-1.lua does.
    const isAfter = (t: RevokedToken): boolean =>
      !after ||
      (afterEntry === undefined
        ? t.expiresAt > after.expiresAt
        : t.expiresAt > afterEntry || (t.expiresAt === afterEntry && t.jti > after.jti));
    return [...this.deniedTokens]
      .map(([jti, expiresAt]) => ({ jti, expiresAt }))
      .filter(isAfter)
      .sort((a, b) => a.expiresAt - b.expiresAt || (a.jti < b.jti ? -1 : a.jti > b.jti ? 1 : 0))
      .slice(0, page.limit);
  }

  async scanLeases(
    selector: LeaseSelector,
    cursor: string | undefined,
    pageSize: number,
  ): Promise<LeasePage> {
    this.open();
    requirePageSize(pageSize);
    requireSelector(selector);
    const offset = cursor === undefined ? 0 : Number(cursor);
    if (!Number.isSafeInteger(offset) || offset < 0) throw invalidArgument('page_token', 'is not valid');
    const all = [...this.leases.values()].sort(byExpiry);
    const slice = all.slice(offset, offset + pageSize);
    return {
      leases: slice.filter((l) => leaseMatches(selector, l)).map((l) => structuredClone(l)),
      scanned: slice.length,
      ...(offset + pageSize < all.length ? { cursor: String(offset + pageSize) } : {}),
    };
  }

  async *revokeSelected(
    selector: LeaseSelector,
    opts: { reason: string; at: number; runAt: number; pageSize: number },
  ): AsyncGenerator<RevocationPage> {
    this.open();
    requirePageSize(opts.pageSize);
    requireTime('at', opts.at);
    requireSelector(selector);
    // A revocation takes active leases whatever state the selector names, as select-leases does.
    const match: LeaseSelector = { ...selector, state: 'active' };
    // The leases active at the start, as the Redis store snapshots them.
    const snapshot = [...this.leases.values()]
      .filter((l) => l.state === 'active')
      .sort(byExpiry)
      .map((l) => l.id);
    let offset = 0;
    do {
      const ids = snapshot.slice(offset, offset + opts.pageSize);
      const moved: Lease[] = [];
      for (const id of ids) {
        const lease = this.leases.get(id);
        if (!lease || !leaseMatches(match, lease)) continue;
        const ended = await this.revokeWithJob(lease, opts);
        if (ended) moved.push(ended);
      }
      yield { leases: moved, scanned: ids.length, total: snapshot.length };
      offset += opts.pageSize;
    } while (offset < snapshot.length);
  }

  async completeRevocations(outcomes: readonly RevocationOutcome[], at: number): Promise<Lease[]> {
    this.open();
    requireTime('at', at);
    for (const o of outcomes) validateEnd(REVOKE_OUTCOMES, o.outcome, at);
    const done: Lease[] = [];
    for (const o of outcomes) {
      const lease = this.leases.get(o.id);
      if (lease?.state === 'revoking') {
        Object.assign(lease, { state: o.outcome, revokeReason: o.reason, revokedAt: at });
        done.push(structuredClone(lease));
      }
      await this.revocations?.complete(o.id);
    }
    return done;
  }

  async activeLeaseCounts(): Promise<Record<string, number>> {
    this.open();
    const counts: Record<string, number> = {};
    for (const l of this.leases.values()) {
      if (l.state === 'active') counts[l.backend] = (counts[l.backend] ?? 0) + 1;
    }
    return counts;
  }

  async ping(): Promise<void> {
    this.open();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.tasks.clear();
    this.children.clear();
    this.leases.clear();
    this.denied.clear();
    this.versions.clear();
    this.pending.clear();
    this.deniedTokens.clear();
  }

  /** Fails like a closed Redis client would, and drops what Redis would have expired by now. */
  private open(): void {
    if (this.closed) throw unavailable('lease_store_unavailable', 'lease store unavailable');
    const horizon = this.clock() - this.retentionMs;
    for (const [id, t] of this.tasks) {
      if (t.state !== 'active' && t.expiresAt <= horizon) {
        this.tasks.delete(id);
        this.versions.delete(id);
        this.children.delete(id);
      }
    }
    // A lease being revoked keeps its record until its outcome is set, as in Redis (no TTL).
    for (const [id, l] of this.leases) {
      if (l.state !== 'pending' && l.state !== 'active' && l.state !== 'revoking' && l.expiresAt <= horizon) {
        this.leases.delete(id);
        this.denied.delete(id);
      }
    }
  }

  /**
   * Moves a lease to `revoking` with its backend revocation queued. Job first, as the Redis scripts
   * write it in the same step: never a revoking lease without one.
   */
  private async revokeWithJob(
    lease: Lease,
    opts: { reason: string; at: number; runAt: number },
  ): Promise<Lease | undefined> {
    await this.revocations?.enqueue(
      {
        leaseId: lease.id,
        backend: lease.backend,
        backendRef: lease.backendRef,
        expiresAt: lease.expiresAt,
        reason: opts.reason,
        attempts: 0,
      },
      opts.runAt,
    );
    return this.endLeaseNow(lease.id, 'revoking', opts.reason, opts.at);
  }

  private endTaskNow(id: string, state: Task['state'], reason: string, at: number): Task | undefined {
    const task = this.tasks.get(id);
    if (!task || task.state !== 'active') return undefined;
    Object.assign(task, { state, endReason: reason, endedAt: at });
    return structuredClone(task);
  }

  private endLeaseNow(id: string, state: Lease['state'], reason: string, at: number): Lease | undefined {
    const lease = this.leases.get(id);
    if (!lease || (lease.state !== 'active' && lease.state !== 'pending')) return undefined;
    this.pending.delete(id);
    Object.assign(lease, { state, revokeReason: reason, revokedAt: at });
    if (state === 'revoked' || state === 'revoking') {
      this.denied.add(id);
      if (lease.backend === TOKEN_BACKEND) this.deniedTokens.set(lease.backendRef, lease.expiresAt);
    }
    return structuredClone(lease);
  }
}
