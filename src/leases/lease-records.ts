/**
 * Rules both lease stores apply before a write, so the Redis store and the in-process store refuse
 * the same inputs with the same errors.
 */
import { BrokerError, failedPrecondition, invalidArgument } from '../errors.js';
import { patternMatches } from '../identity/pattern-match.js';
import type {
  Lease,
  LeaseEndState,
  LeaseSelector,
  LeaseState,
  RevokeOutcome,
  Task,
  TaskState,
} from './types.js';

export const LEASE_STATES: readonly LeaseState[] = [
  'pending',
  'active',
  'revoking',
  'revoked',
  'expired',
  'revoke_failed',
];
export const LEASE_END_STATES: readonly LeaseEndState[] = ['revoking', 'revoked', 'expired', 'revoke_failed'];
export const REVOKE_OUTCOMES: readonly RevokeOutcome[] = ['revoked', 'revoke_failed'];
export const TASK_END_STATES: readonly TaskState[] = ['ended', 'expired'];

/** Reason recorded on leases and tasks that a reaper claims. */
export const EXPIRED_REASON = 'expired';

export const DEFAULT_RETENTION_SECONDS = 7 * 24 * 60 * 60;

function requireText(field: string, value: unknown): void {
  if (typeof value !== 'string' || value === '') throw invalidArgument(field, 'must be a non-empty string');
}

/** Times are epoch ms; Redis needs integers for scores and expiries, so both stores insist on them. */
export function requireTime(field: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(field, 'must be a non-negative integer (epoch ms)');
  }
}

/** Claim batch size; 0 claims nothing. */
export function requireLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 0)
    throw invalidArgument('limit', 'must be a non-negative integer');
}

export function requireRetentionSeconds(value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument('retentionSeconds', 'must be a non-negative integer');
  }
  return value;
}

export function validateNewTask(task: Task): void {
  requireText('task.id', task.id);
  requireText('task.agent', task.agent);
  requireText('task.environment', task.environment);
  if (typeof task.intent !== 'string') throw invalidArgument('task.intent', 'must be a string');
  if (
    typeof task.labels !== 'object' ||
    task.labels === null ||
    Object.values(task.labels).some((v) => typeof v !== 'string')
  ) {
    throw invalidArgument('task.labels', 'must map strings to strings');
  }
  requireTime('task.createdAt', task.createdAt);
  requireTime('task.expiresAt', task.expiresAt);
  // Ending is a transition of its own (endTask) so that it happens once and keeps the indexes.
  if (task.state !== 'active') throw invalidArgument('task.state', 'a new task must be active');
  if (task.delegation !== undefined) validateDelegation(task);
}

/** A delegated task's link and scope, as both stores keep it (one JSON field in Redis). */
function validateDelegation(task: Task): void {
  const d = task.delegation;
  if (d === undefined) return;
  requireText('task.delegation.parentTaskId', d.parentTaskId);
  if (d.parentTaskId === task.id)
    throw invalidArgument('task.delegation.parentTaskId', 'must not be the task');
  if (!Array.isArray(d.chain) || d.chain.length < 2 || d.chain.at(-1) !== task.agent) {
    throw invalidArgument('task.delegation.chain', "must run from the root agent to the task's agent");
  }
  d.chain.forEach((id, i) => requireText(`task.delegation.chain[${i}]`, id));
  if (!Array.isArray(d.roles)) throw invalidArgument('task.delegation.roles', 'must be an array');
  d.roles.forEach((r, i) => requireText(`task.delegation.roles[${i}]`, r));
  if (!Number.isSafeInteger(d.remainingDepth) || d.remainingDepth < 0) {
    throw invalidArgument('task.delegation.remainingDepth', 'must be a non-negative integer');
  }
}

/** The task's delegation from its stored JSON; undefined when the task has none. */
export function delegationFromJson(raw: string | undefined): Task['delegation'] {
  if (raw === undefined) return undefined;
  const parsed = JSON.parse(raw) as NonNullable<Task['delegation']>;
  if (typeof parsed !== 'object' || parsed === null || !Array.isArray(parsed.chain)) {
    throw new Error('delegation is not an object with a chain');
  }
  return parsed;
}

export function validateNewLease(lease: Lease): void {
  requireText('lease.id', lease.id);
  requireText('lease.agent', lease.agent);
  requireText('lease.taskId', lease.taskId);
  requireText('lease.environment', lease.environment);
  requireText('lease.role', lease.role);
  requireText('lease.backend', lease.backend);
  if (typeof lease.backendRef !== 'string') throw invalidArgument('lease.backendRef', 'must be a string');
  requireTime('lease.issuedAt', lease.issuedAt);
  requireTime('lease.expiresAt', lease.expiresAt);
  if (lease.state !== 'active' && lease.state !== 'pending')
    throw invalidArgument('lease.state', 'a new lease must be pending or active');
}

/** putLease's expected task version: a non-negative integer when given. */
export function requireVersion(version: number | undefined): void {
  if (version !== undefined && (!Number.isSafeInteger(version) || version < 0))
    throw invalidArgument('expectVersion', 'must be a non-negative integer');
}

/** Orphan claims: the backend revocation queued with each claimed lease (both stores). */
export const ORPHANED_REASON = 'orphaned';

export function validateEnd<S extends string>(allowed: readonly S[], state: S, at: number): void {
  if (!allowed.includes(state)) throw invalidArgument('state', `must be one of ${allowed.join(', ')}`);
  requireTime('at', at);
}

/** Ids are never reused: overwriting an ended record would bring it back to life. */
export const taskExists = (id: string): BrokerError =>
  failedPrecondition('task_exists', `task ${id} already exists`);

export const leaseExists = (id: string): BrokerError =>
  failedPrecondition('lease_exists', `lease ${id} already exists`);

/** Scan and revocation page size; 0 would page forever (ZRANGE 0 -1 is the whole index in Redis). */
export function requirePageSize(pageSize: number): void {
  if (!Number.isSafeInteger(pageSize) || pageSize < 1)
    throw invalidArgument('page_size', 'must be a positive integer');
}

/** What select-leases can express, so both stores refuse the same selectors (agentPatternParts). */
export function requireSelector(selector: LeaseSelector): void {
  const pattern = selector.agentPattern;
  if (pattern && !pattern.endsWith('/*') && !pattern.endsWith('/**')) {
    throw invalidArgument('agent', 'a pattern must end in /* or /**');
  }
}

/** Whether `lease` matches `selector`, exactly as select-leases-4.lua decides it. */
export function leaseMatches(selector: LeaseSelector, lease: Lease): boolean {
  if (selector.leaseId && lease.id !== selector.leaseId) return false;
  if (selector.agent && lease.agent !== selector.agent) return false;
  if (selector.agentPattern && !patternMatches(selector.agentPattern, lease.agent)) return false;
  if (selector.taskId && lease.taskId !== selector.taskId) return false;
  if (selector.environment && lease.environment !== selector.environment) return false;
  if (selector.role && lease.role !== selector.role) return false;
  if (selector.backend && lease.backend !== selector.backend) return false;
  if (selector.trustDomain && !lease.agent.startsWith(`spiffe://${selector.trustDomain}/`)) return false;
  if (selector.state && lease.state !== selector.state) return false;
  return true;
}
