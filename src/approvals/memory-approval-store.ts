/**
 * In-process ApprovalStore for tests and the dev stack without Redis. Same contract and the same
 * refusals as RedisApprovalStore (the contract tests run against both), but not shared between
 * processes. Each call runs synchronously after its validation, so it is atomic with respect to
 * every other call in the process, which is what the Lua scripts give the Redis store.
 */
import {
  approvalExists,
  byNewest,
  decisionRecord,
  DEFAULT_RETENTION_SECONDS,
  isOpen,
  listFilter,
  requireCaps,
  requireRetentionSeconds,
  requireTime,
  validateDecision,
  validateNewApproval,
  withEffectiveState,
} from './approval-records.js';
import { invalidArgument } from '../errors.js';
import type {
  ApprovalRequest,
  ApprovalState,
  ApprovalStore,
  CreateApprovalResult,
  DecideOutcome,
  OpenApprovalCaps,
} from './types.js';

export interface MemoryApprovalStoreOptions {
  /** How long a request stays readable after its expiresAt. Default 7 days. */
  retentionSeconds?: number;
  /** Wall clock that drops records after retention, as Redis TTLs do. Default Date.now. */
  clock?: () => number;
}

export class MemoryApprovalStore implements ApprovalStore {
  private readonly requests = new Map<string, ApprovalRequest>();
  private readonly retentionMs: number;
  private readonly clock: () => number;

  constructor(opts: MemoryApprovalStoreOptions = {}) {
    this.retentionMs = requireRetentionSeconds(opts.retentionSeconds ?? DEFAULT_RETENTION_SECONDS) * 1000;
    this.clock = opts.clock ?? Date.now;
  }

  async create(request: ApprovalRequest, caps: OpenApprovalCaps = {}): Promise<CreateApprovalResult> {
    validateNewApproval(request);
    requireCaps(caps);
    this.dropRetired();
    if (this.requests.has(request.id)) throw approvalExists(request.id);
    // Same order of checks as create-approval-6.lua.
    const open = [...this.requests.values()].filter((r) => isOpen(r, request.createdAt));
    const over = (cap: number | undefined, mine: (r: ApprovalRequest) => boolean): boolean =>
      (cap ?? 0) > 0 && open.filter(mine).length >= (cap ?? 0);
    if (over(caps.perAgent, (r) => r.requester === request.requester)) return 'too_many_open_for_agent';
    if (over(caps.perTask, (r) => r.taskId === request.taskId)) return 'too_many_open_for_task';
    this.requests.set(request.id, structuredClone(request));
    return 'ok';
  }

  async get(id: string, now: number): Promise<ApprovalRequest | undefined> {
    requireTime('now', now);
    this.dropRetired();
    const r = this.requests.get(id);
    return r && withEffectiveState(structuredClone(r), now);
  }

  async findOpenByDigest(digest: string, now: number): Promise<ApprovalRequest | undefined> {
    requireTime('now', now);
    this.dropRetired();
    const open = [...this.requests.values()]
      .filter((r) => r.digest === digest && isOpen(r, now))
      .sort(byNewest);
    return open[0] && structuredClone(open[0]);
  }

  async mayHaveOpenForTask(taskId: string, now: number): Promise<boolean> {
    requireTime('now', now);
    this.dropRetired();
    for (const r of this.requests.values()) if (r.taskId === taskId && isOpen(r, now)) return true;
    return false;
  }

  async list(
    filter: { state?: ApprovalState | 'any'; requester?: string },
    now: number,
  ): Promise<ApprovalRequest[]> {
    requireTime('now', now);
    this.dropRetired();
    return [...this.requests.values()]
      .map((r) => withEffectiveState(structuredClone(r), now))
      .filter(listFilter(filter))
      .sort(byNewest);
  }

  async countPending(now: number): Promise<number> {
    requireTime('now', now);
    this.dropRetired();
    let count = 0;
    for (const r of this.requests.values()) if (r.state === 'pending' && r.expiresAt > now) count++;
    return count;
  }

  async decide(
    id: string,
    decision: { approver: string; approve: boolean; reason: string; at: number },
  ): Promise<{ outcome: DecideOutcome; request?: ApprovalRequest }> {
    validateDecision(id, decision);
    this.dropRetired();
    const r = this.requests.get(id);
    if (!r) return { outcome: 'not_found' };
    const answer = (outcome: DecideOutcome): { outcome: DecideOutcome; request: ApprovalRequest } => ({
      outcome,
      request: withEffectiveState(structuredClone(r), decision.at),
    });
    // Same rules in the same order as decide-approval-2.lua.
    if (r.requester === decision.approver) return answer('self_approval');
    if (r.state !== 'pending') return answer('not_pending');
    if (r.expiresAt <= decision.at) {
      r.state = 'expired';
      return answer('expired');
    }
    if (!decision.approve) {
      r.state = 'denied';
      r.denial = decisionRecord(decision);
      return answer('denied');
    }
    if (r.approvals.some((a) => a.approver === decision.approver)) return answer('duplicate_approver');
    r.approvals.push(decisionRecord(decision));
    if (r.approvals.length >= r.required) {
      r.state = 'approved';
      return answer('approved');
    }
    return answer('recorded');
  }

  async consume(id: string, digest: string, at: number): Promise<ApprovalRequest | undefined> {
    requireTime('at', at);
    if (typeof digest !== 'string' || digest === '') throw invalidArgument('digest', 'must be non-empty');
    this.dropRetired();
    const r = this.requests.get(id);
    // Same checks in the same order as consume-approval-1.lua.
    if (!r || r.digest !== digest || r.state !== 'approved') return undefined;
    if (r.expiresAt <= at) {
      r.state = 'expired';
      return undefined;
    }
    r.state = 'consumed';
    r.consumedAt = at;
    return structuredClone(r);
  }

  /** Drops what Redis would have expired by now (expiresAt + retention). */
  private dropRetired(): void {
    const horizon = this.clock() - this.retentionMs;
    for (const [id, r] of this.requests) if (r.expiresAt <= horizon) this.requests.delete(id);
  }
}
