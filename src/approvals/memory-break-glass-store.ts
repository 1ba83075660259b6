/**
 * In-process BreakGlassStore for tests and the dev stack without Redis. Same contract and the same
 * refusals as RedisBreakGlassStore (the contract tests run against both), not shared between
 * processes; each call is synchronous after validation, so it is atomic within the process.
 */
import {
  byLatestExpiry,
  byOldest,
  DEFAULT_RETENTION_SECONDS,
  grantCovers,
  grantExists,
  isGrantId,
  requireRetentionSeconds,
  validateFindActive,
  validateNewGrant,
  validateReview,
} from './approval-records.js';
import type { BreakGlassGrant, BreakGlassStore } from './types.js';

export interface MemoryBreakGlassStoreOptions {
  /** How long a reviewed grant stays readable after its expiresAt. Default 7 days. */
  retentionSeconds?: number;
  /** Wall clock that drops reviewed grants after retention, as Redis TTLs do. Default Date.now. */
  clock?: () => number;
}

export class MemoryBreakGlassStore implements BreakGlassStore {
  private readonly grants = new Map<string, BreakGlassGrant>();
  private readonly retentionMs: number;
  private readonly clock: () => number;

  constructor(opts: MemoryBreakGlassStoreOptions = {}) {
    this.retentionMs = requireRetentionSeconds(opts.retentionSeconds ?? DEFAULT_RETENTION_SECONDS) * 1000;
    this.clock = opts.clock ?? Date.now;
  }

  async grant(grant: BreakGlassGrant): Promise<void> {
    validateNewGrant(grant);
    this.dropRetired();
    if (this.grants.has(grant.id)) throw grantExists(grant.id);
    this.grants.set(grant.id, structuredClone(grant));
  }

  async get(id: string): Promise<BreakGlassGrant | undefined> {
    this.dropRetired();
    const g = isGrantId(id) ? this.grants.get(id) : undefined;
    return g && structuredClone(g);
  }

  async findActive(
    agent: string,
    taskId: string,
    role: string,
    now: number,
  ): Promise<BreakGlassGrant | undefined> {
    validateFindActive(agent, taskId, role, now);
    this.dropRetired();
    const [found] = [...this.grants.values()]
      .filter((g) => grantCovers(g, agent, taskId, role, now))
      .sort(byLatestExpiry);
    return found && structuredClone(found);
  }

  async recordUse(id: string): Promise<void> {
    this.dropRetired();
    const g = this.grants.get(id);
    if (g) g.uses += 1;
  }

  async listUnreviewed(): Promise<BreakGlassGrant[]> {
    this.dropRetired();
    return [...this.grants.values()]
      .filter((g) => !g.reviewed)
      .sort(byOldest)
      .map((g) => structuredClone(g));
  }

  async review(id: string, reviewer: string, note: string, at: number): Promise<BreakGlassGrant | undefined> {
    validateReview(id, reviewer, note, at);
    this.dropRetired();
    const g = this.grants.get(id);
    if (!g) return undefined;
    // Like review-break-glass-2.lua: a second review keeps the first one's record.
    if (!g.reviewed)
      Object.assign(g, { reviewed: true, reviewedBy: reviewer, reviewedAt: at, reviewNote: note });
    return structuredClone(g);
  }

  /** Drops reviewed grants Redis would have expired by now; unreviewed ones never go. */
  private dropRetired(): void {
    const horizon = this.clock() - this.retentionMs;
    for (const [id, g] of this.grants) if (g.reviewed && g.expiresAt <= horizon) this.grants.delete(id);
  }
}
