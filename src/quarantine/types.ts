/**
 * Quarantine seam. A quarantine names an agent (exact SPIFFE ID) or a pattern (`.../*`, `.../**`);
 * while it lasts, every call of a matching agent is refused with PERMISSION_DENIED "quarantined",
 * and the lease store refuses to record a lease for it, so a request already in flight cannot
 * hand out its credential. History (tasks, leases, audit) is kept for forensics. Times are epoch ms.
 */
import { patternMatches } from '../identity/pattern-match.js';

export interface Quarantine {
  /** Exact SPIFFE ID or a pattern ending in `/*` or `/**`; one quarantine per pattern. */
  pattern: string;
  reason: string;
  /** Who set it: an admin's SPIFFE ID, or `broker` for an automatic trigger. */
  by: string;
  /** `manual`, or the name of the automatic trigger (`denials`, `budget_exceeded`, `restricted_data`). */
  trigger: string;
  createdAt: number;
  /** 0: until released. */
  expiresAt: number;
  /** What the trigger saw (counts, windows, the request); never a secret. */
  evidence?: Record<string, unknown>;
}

export interface QuarantineStore {
  /** Sets (or replaces) the quarantine of `q.pattern`; `replaced` when one was already there. */
  put(q: Quarantine): Promise<{ replaced: boolean }>;
  /** Ends the quarantine of `pattern`; the record it ended, or undefined if there was none. */
  release(pattern: string, at: number): Promise<Quarantine | undefined>;
  /** Quarantines in force at `now` (expired ones are left out). */
  list(now: number): Promise<Quarantine[]>;
  /**
   * Adds a strike of `kind` against `agent` and returns how many fall within the last `windowMs`:
   * the sliding window behind the automatic triggers, shared by every replica.
   */
  recordStrike(agent: string, kind: string, now: number, windowMs: number): Promise<number>;
  ping(): Promise<void>;
}

/**
 * The quarantine of `agent` in force at `now` among `list`, the most specific first: an exact ID
 * before `/*` before `/**`, then the longer pattern.
 */
export function findQuarantine(
  list: readonly Quarantine[],
  agent: string,
  now: number,
): Quarantine | undefined {
  let found: Quarantine | undefined;
  for (const q of list) {
    if (q.expiresAt !== 0 && q.expiresAt <= now) continue;
    if (!patternMatches(q.pattern, agent)) continue;
    if (!found || specificity(q.pattern) > specificity(found.pattern)) found = q;
  }
  return found;
}

function specificity(pattern: string): number {
  const rank = pattern.endsWith('/**') ? 0 : pattern.endsWith('/*') ? 1 : 2;
  return rank * 1_000_000 + pattern.length;
}
