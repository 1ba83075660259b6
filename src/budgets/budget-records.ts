/**
 * What the Redis and in-process budget stores share: input rules, and the list of counters a
 * reservation checks, in the order both stores check them (so both report the same first violation).
 */
import { invalidArgument } from '../errors.js';
import { requireTime } from '../leases/lease-records.js';
import type { BudgetCheck, BudgetLimits, ScopedLimits } from './types.js';

export { requireTime };

/** credentialsPerMinute counts issuances in any rolling window of this length. */
export const RATE_WINDOW_MS = 60_000;

/**
 * How long a counter outlives the newest thing it counts, so an idle scope's keys disappear on
 * their own while a live one never loses its count.
 */
export const IDLE_SLACK_MS = 60_000;

/**
 * `rate`: members scored by reservation time; the ones within the last RATE_WINDOW_MS count.
 * `count`: members scored by expiresAt; the unexpired ones count.
 */
export type CounterKind = 'rate' | 'count';
export type CounterName = 'rate' | 'leases' | 'tasks';

export interface Counter {
  scope: string;
  name: CounterName;
  kind: CounterKind;
  limit: keyof BudgetLimits;
  max: number;
}

function requireScope(field: string, scope: unknown): void {
  if (typeof scope !== 'string' || scope === '') throw invalidArgument(field, 'must be a non-empty string');
}

function requireMax(field: string, max: unknown): number | undefined {
  if (max === undefined) return undefined;
  if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 0) {
    throw invalidArgument(field, 'must be a non-negative integer');
  }
  return max;
}

export function validateMember(field: string, id: unknown): void {
  if (typeof id !== 'string' || id === '') throw invalidArgument(field, 'must be a non-empty string');
}

/**
 * The counters a reservation checks and then records in, in order: for each scope as given,
 * credentialsPerMinute then activeLeases (or openTasks). A scope records only the counters it has a
 * limit for, so an agent with no limits costs nothing; a limit added by a config reload starts
 * counting from then on.
 */
export function planReservation(
  scopes: ScopedLimits[],
  what: 'credential' | 'task',
  member: string,
  expiresAt: number,
  now: number,
): Counter[] {
  if (!Array.isArray(scopes)) throw invalidArgument('scopes', 'must be a list');
  validateMember(what === 'credential' ? 'leaseId' : 'taskId', member);
  requireTime('now', now);
  const expiresField = what === 'credential' ? 'leaseExpiresAt' : 'taskExpiresAt';
  requireTime(expiresField, expiresAt);
  // Already expired, it would be pruned before it was ever counted.
  if (expiresAt <= now) throw invalidArgument(expiresField, 'must be after now');
  const counters: Counter[] = [];
  scopes.forEach((s, i) => {
    requireScope(`scopes[${i}].scope`, s?.scope);
    const limits: BudgetLimits = s.limits ?? {};
    if (what === 'credential') {
      const perMinute = requireMax(`scopes[${i}].limits.credentialsPerMinute`, limits.credentialsPerMinute);
      const leases = requireMax(`scopes[${i}].limits.activeLeases`, limits.activeLeases);
      if (perMinute !== undefined)
        counters.push({
          scope: s.scope,
          name: 'rate',
          kind: 'rate',
          limit: 'credentialsPerMinute',
          max: perMinute,
        });
      if (leases !== undefined)
        counters.push({ scope: s.scope, name: 'leases', kind: 'count', limit: 'activeLeases', max: leases });
    } else {
      const tasks = requireMax(`scopes[${i}].limits.openTasks`, limits.openTasks);
      if (tasks !== undefined)
        counters.push({ scope: s.scope, name: 'tasks', kind: 'count', limit: 'openTasks', max: tasks });
    }
  });
  return counters;
}

export function validateRelease(scopes: string[], field: 'leaseId' | 'taskId', member: string): void {
  if (!Array.isArray(scopes)) throw invalidArgument('scopes', 'must be a list');
  scopes.forEach((s, i) => requireScope(`scopes[${i}]`, s));
  validateMember(field, member);
}

export function overLimit(counter: Counter, current: number): BudgetCheck {
  return { ok: false, scope: counter.scope, limit: counter.limit, current, max: counter.max };
}

/** Members of a counter with a score at or below this no longer count at `now`. */
export function staleAtOrBelow(kind: CounterKind, now: number): number {
  return kind === 'rate' ? now - RATE_WINDOW_MS : now;
}

/** The score a reservation records in a counter. */
export function scoreOf(kind: CounterKind, now: number, expiresAt: number): number {
  return kind === 'rate' ? now : expiresAt;
}
