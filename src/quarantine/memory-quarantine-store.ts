/**
 * QuarantineStore in process memory, for the dev stack without Redis: not durable, not shared.
 * Held to the same contract tests as the Redis store; `matchSync` lets the in-memory lease store
 * refuse leases to quarantined agents exactly as put-lease does on Redis.
 */
import type { MemoryInvalidationFeed } from '../feed/memory-feed.js';
import { findQuarantine, type Quarantine, type QuarantineStore } from './types.js';

export class MemoryQuarantineStore implements QuarantineStore {
  private readonly entries = new Map<string, Quarantine>();
  private readonly strikes = new Map<string, number[]>();

  constructor(private readonly feed?: MemoryInvalidationFeed) {}

  put(q: Quarantine): Promise<{ replaced: boolean }> {
    const replaced = this.entries.has(q.pattern);
    this.entries.set(q.pattern, structuredClone(q));
    this.feed?.append({ kind: 'quarantine', op: 'set', pattern: q.pattern, at: String(q.createdAt) });
    return Promise.resolve({ replaced });
  }

  release(pattern: string, at: number): Promise<Quarantine | undefined> {
    const q = this.entries.get(pattern);
    if (!q) return Promise.resolve(undefined);
    this.entries.delete(pattern);
    this.feed?.append({ kind: 'quarantine', op: 'release', pattern, at: String(at) });
    return Promise.resolve(q);
  }

  list(now: number): Promise<Quarantine[]> {
    return Promise.resolve(
      [...this.entries.values()]
        .filter((q) => q.expiresAt === 0 || q.expiresAt > now)
        .sort((a, b) => a.createdAt - b.createdAt || (a.pattern < b.pattern ? -1 : 1))
        .map((q) => structuredClone(q)),
    );
  }

  /** The quarantine in force for `agent` at `now`, synchronously (for the in-memory lease store). */
  matchSync(agent: string, now: number): Quarantine | undefined {
    return findQuarantine([...this.entries.values()], agent, now);
  }

  recordStrike(agent: string, kind: string, now: number, windowMs: number): Promise<number> {
    const key = `${kind}:${agent}`;
    const recent = (this.strikes.get(key) ?? []).filter((t) => t > now - windowMs);
    recent.push(now);
    this.strikes.set(key, recent);
    return Promise.resolve(recent.length);
  }

  ping(): Promise<void> {
    return Promise.resolve();
  }
}
