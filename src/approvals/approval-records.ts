/**
 * Rules the Redis and in-process approval and break-glass stores share, so both refuse the same
 * inputs with the same errors and read state the same way.
 */
import { BrokerError, failedPrecondition, invalidArgument } from '../errors.js';
import { requireTime } from '../leases/lease-records.js';
import type {
  ApprovalDecisionRecord,
  ApprovalRequest,
  ApprovalState,
  BreakGlassGrant,
  CreateApprovalResult,
  OpenApprovalCaps,
} from './types.js';

export { DEFAULT_RETENTION_SECONDS, requireRetentionSeconds, requireTime } from '../leases/lease-records.js';

export const APPROVAL_STATES: readonly ApprovalState[] = [
  'pending',
  'approved',
  'denied',
  'consumed',
  'expired',
];

function requireText(field: string, value: unknown): void {
  if (typeof value !== 'string' || value === '') throw invalidArgument(field, 'must be a non-empty string');
}

function requireString(field: string, value: unknown): void {
  if (typeof value !== 'string') throw invalidArgument(field, 'must be a string');
}

export function validateNewApproval(r: ApprovalRequest): void {
  requireText('request.id', r.id);
  requireText('request.digest', r.digest);
  requireText('request.requester', r.requester);
  requireText('request.taskId', r.taskId);
  requireText('request.role', r.role);
  requireText('request.environment', r.environment);
  requireString('request.sensitivity', r.sensitivity);
  requireString('request.changeType', r.changeType);
  requireString('request.justification', r.justification);
  requireString('request.tool', r.tool);
  if (!Number.isSafeInteger(r.ttlSeconds) || r.ttlSeconds < 1) {
    throw invalidArgument('request.ttlSeconds', 'must be a positive integer');
  }
  // A gate that needs zero approvals passes by itself (OpenBao shipped exactly that); fail closed.
  if (!Number.isSafeInteger(r.required) || r.required < 1) {
    throw invalidArgument('request.required', 'must be an integer >= 1: a zero-approver gate never passes');
  }
  if (!Array.isArray(r.policyIds) || r.policyIds.some((p) => typeof p !== 'string')) {
    throw invalidArgument('request.policyIds', 'must be a list of strings');
  }
  requireTime('request.createdAt', r.createdAt);
  requireTime('request.expiresAt', r.expiresAt);
  if (r.expiresAt <= r.createdAt) throw invalidArgument('request.expiresAt', 'must be after createdAt');
  // Decisions are transitions of their own (decide, consume), each atomic and checked.
  if (r.state !== 'pending') throw invalidArgument('request.state', 'a new request must be pending');
  if (!Array.isArray(r.approvals) || r.approvals.length > 0) {
    throw invalidArgument('request.approvals', 'a new request has no approvals');
  }
  if (r.denial !== undefined) throw invalidArgument('request.denial', 'a new request has no denial');
  if (r.consumedAt !== undefined)
    throw invalidArgument('request.consumedAt', 'a new request is not consumed');
}

export interface Decision {
  approver: string;
  approve: boolean;
  reason: string;
  at: number;
}

export function validateDecision(id: string, d: Decision): void {
  requireText('id', id);
  requireText('decision.approver', d.approver);
  if (typeof d.approve !== 'boolean') throw invalidArgument('decision.approve', 'must be a boolean');
  requireString('decision.reason', d.reason);
  requireTime('decision.at', d.at);
}

export function decisionRecord(d: Decision): ApprovalDecisionRecord {
  return { approver: d.approver, reason: d.reason, at: d.at };
}

/** Pending and approved requests stop being usable at expiresAt, whether or not anyone wrote that down. */
export function effectiveState(r: ApprovalRequest, now: number): ApprovalState {
  return (r.state === 'pending' || r.state === 'approved') && r.expiresAt <= now ? 'expired' : r.state;
}

/** Pending or approved, and unexpired: a request findOpenByDigest may hand out. */
export function isOpen(r: ApprovalRequest, now: number): boolean {
  return (r.state === 'pending' || r.state === 'approved') && r.expiresAt > now;
}

export function withEffectiveState(r: ApprovalRequest, now: number): ApprovalRequest {
  return { ...r, state: effectiveState(r, now) };
}

/** ApprovalStore.list's filter over requests in their effective state (state default: pending). */
export function listFilter(filter: {
  state?: ApprovalState | 'any';
  requester?: string;
}): (r: ApprovalRequest) => boolean {
  const state = filter.state ?? 'pending';
  return (r) =>
    (state === 'any' || r.state === state) && (!filter.requester || r.requester === filter.requester);
}

/** Newest first: createdAt, then id, both descending (Redis ZREVRANGE order for equal scores). */
export function byNewest(a: ApprovalRequest, b: ApprovalRequest): number {
  return b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

/** Open-request caps are non-negative integers (0: no cap). */
export function requireCaps(caps: OpenApprovalCaps): void {
  for (const [name, value] of Object.entries(caps)) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 0))
      throw invalidArgument(`caps.${name}`, 'must be a non-negative integer');
  }
}

const CREATE_RESULTS: readonly CreateApprovalResult[] = [
  'ok',
  'too_many_open_for_agent',
  'too_many_open_for_task',
];
export const isCreateResult = (code: string): code is CreateApprovalResult =>
  (CREATE_RESULTS as readonly string[]).includes(code);

/** Ids are never reused: overwriting a decided request would reopen it. */
export const approvalExists = (id: string): BrokerError =>
  failedPrecondition('approval_exists', `approval ${id} already exists`);

/**
 * `{prefix}:breakglass:<id>` shares its namespace with `breakglass:agent:<spiffeId>` and
 * `breakglass:unreviewed`; an id with a colon, or `unreviewed`, could land on one of them, so no
 * grant has such an id and lookups by one find nothing.
 */
export function isGrantId(id: string): boolean {
  return typeof id === 'string' && id !== '' && !id.includes(':') && id !== 'unreviewed';
}

export function validateNewGrant(g: BreakGlassGrant): void {
  requireText('grant.id', g.id);
  if (!isGrantId(g.id)) throw invalidArgument('grant.id', "must not contain ':' or be 'unreviewed'");
  requireText('grant.grantedBy', g.grantedBy);
  requireText('grant.agent', g.agent);
  if (g.taskId !== undefined) requireText('grant.taskId', g.taskId);
  if (
    !Array.isArray(g.roles) ||
    g.roles.length === 0 ||
    g.roles.some((r) => typeof r !== 'string' || r === '')
  ) {
    throw invalidArgument('grant.roles', 'must name at least one role');
  }
  requireText('grant.reason', g.reason);
  requireTime('grant.createdAt', g.createdAt);
  requireTime('grant.expiresAt', g.expiresAt);
  if (g.expiresAt <= g.createdAt) throw invalidArgument('grant.expiresAt', 'must be after createdAt');
  if (g.uses !== 0) throw invalidArgument('grant.uses', 'a new grant has no uses');
  if (g.reviewed !== false) throw invalidArgument('grant.reviewed', 'a new grant is unreviewed');
  if (g.reviewedBy !== undefined || g.reviewedAt !== undefined || g.reviewNote !== undefined) {
    throw invalidArgument('grant.reviewedBy', 'a new grant is unreviewed');
  }
}

export function validateFindActive(agent: string, taskId: string, role: string, now: number): void {
  requireText('agent', agent);
  requireString('taskId', taskId);
  requireText('role', role);
  requireTime('now', now);
}

export function validateReview(id: string, reviewer: string, note: string, at: number): void {
  requireText('id', id);
  requireText('reviewer', reviewer);
  requireString('note', note);
  requireTime('at', at);
}

/** Whether a grant is in force for this agent's request at `now`. */
export function grantCovers(
  g: BreakGlassGrant,
  agent: string,
  taskId: string,
  role: string,
  now: number,
): boolean {
  return (
    g.agent === agent &&
    g.expiresAt > now &&
    g.roles.includes(role) &&
    (g.taskId === undefined || g.taskId === taskId)
  );
}

/** Of several grants in force, the one that lasts longest (then the greatest id), as the Redis store picks. */
export function byLatestExpiry(a: BreakGlassGrant, b: BreakGlassGrant): number {
  return b.expiresAt - a.expiresAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

/** Oldest first: createdAt, then id (Redis ZRANGE order for equal scores). */
export function byOldest(a: BreakGlassGrant, b: BreakGlassGrant): number {
  return a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export const grantExists = (id: string): BrokerError =>
  failedPrecondition('break_glass_exists', `break-glass grant ${id} already exists`);
