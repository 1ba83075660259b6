/**
 * Machine-speed budgets, shared by every replica through Redis. A scope is a string such as
 * `group:ci-agents`, `agent:<spiffe id>` or `task:<task id>`; each has its own limits.
 */

export interface BudgetLimits {
  /** Credentials issued in any rolling 60 s window. */
  credentialsPerMinute?: number;
  /** Leases active at once (unexpired and not released). */
  activeLeases?: number;
  /** Tasks open at once (unexpired and not released). */
  openTasks?: number;
}

export interface ScopedLimits {
  scope: string;
  limits: BudgetLimits;
}

export type BudgetCheck =
  { ok: true } | { ok: false; scope: string; limit: keyof BudgetLimits; current: number; max: number };

/**
 * Contract: reserve* check every scope's limits and, only if none is exceeded, record the
 * reservation in all of them atomically (a refused request consumes nothing).
 */
export interface BudgetStore {
  reserveCredential(
    scopes: ScopedLimits[],
    leaseId: string,
    leaseExpiresAt: number,
    now: number,
  ): Promise<BudgetCheck>;
  /** Frees a lease's place in the activeLeases count (revoked early, or issuance failed). Idempotent. */
  releaseLease(scopes: string[], leaseId: string): Promise<void>;
  reserveTask(
    scopes: ScopedLimits[],
    taskId: string,
    taskExpiresAt: number,
    now: number,
  ): Promise<BudgetCheck>;
  releaseTask(scopes: string[], taskId: string): Promise<void>;
}
