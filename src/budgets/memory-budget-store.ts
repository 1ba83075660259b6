/**
 * In-process BudgetStore for tests and the dev stack without Redis: the same counters and the same
 * answers as RedisBudgetStore (the contract tests run against both), but one process's budgets
 * only. Each reservation runs synchronously after validation, so it is atomic within the process.
 */
import {
  overLimit,
  planReservation,
  scoreOf,
  staleAtOrBelow,
  validateRelease,
  type Counter,
  type CounterName,
} from './budget-records.js';
import type { BudgetCheck, BudgetStore, ScopedLimits } from './types.js';

/** member -> score, as in the Redis zsets. */
type Members = Map<string, number>;

export class MemoryBudgetStore implements BudgetStore {
  /** Keyed by scope, then counter name; an emptied counter is deleted, as Redis drops empty keys. */
  private readonly counters = new Map<string, Map<CounterName, Members>>();

  async reserveCredential(
    scopes: ScopedLimits[],
    leaseId: string,
    leaseExpiresAt: number,
    now: number,
  ): Promise<BudgetCheck> {
    return this.reserve(
      planReservation(scopes, 'credential', leaseId, leaseExpiresAt, now),
      leaseId,
      leaseExpiresAt,
      now,
    );
  }

  async releaseLease(scopes: string[], leaseId: string): Promise<void> {
    validateRelease(scopes, 'leaseId', leaseId);
    for (const s of scopes) this.remove(s, 'leases', leaseId);
  }

  async reserveTask(
    scopes: ScopedLimits[],
    taskId: string,
    taskExpiresAt: number,
    now: number,
  ): Promise<BudgetCheck> {
    return this.reserve(
      planReservation(scopes, 'task', taskId, taskExpiresAt, now),
      taskId,
      taskExpiresAt,
      now,
    );
  }

  async releaseTask(scopes: string[], taskId: string): Promise<void> {
    validateRelease(scopes, 'taskId', taskId);
    for (const s of scopes) this.remove(s, 'tasks', taskId);
  }

  /** Same two passes as reserve-budget-n.lua: prune and check every counter, then record in all. */
  private reserve(counters: Counter[], member: string, expiresAt: number, now: number): BudgetCheck {
    for (const c of counters) {
      const members = this.members(c.scope, c.name);
      const stale = staleAtOrBelow(c.kind, now);
      for (const [m, score] of members) if (score <= stale) members.delete(m);
      this.dropIfEmpty(c.scope, c.name);
      if (members.size >= c.max) return overLimit(c, members.size);
    }
    for (const c of counters) this.members(c.scope, c.name).set(member, scoreOf(c.kind, now, expiresAt));
    return { ok: true };
  }

  private members(scope: string, name: CounterName): Members {
    let byName = this.counters.get(scope);
    if (!byName) this.counters.set(scope, (byName = new Map()));
    let members = byName.get(name);
    if (!members) byName.set(name, (members = new Map()));
    return members;
  }

  private remove(scope: string, name: CounterName, member: string): void {
    this.counters.get(scope)?.get(name)?.delete(member);
    this.dropIfEmpty(scope, name);
  }

  private dropIfEmpty(scope: string, name: CounterName): void {
    const byName = this.counters.get(scope);
    if (byName?.get(name)?.size === 0) byName.delete(name);
    if (byName?.size === 0) this.counters.delete(scope);
  }
}
