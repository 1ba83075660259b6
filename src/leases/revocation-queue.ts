/**
 * The revocation queue seam: backend revocations that failed once wait here, durably, until a
 * RevocationWorker gets the backend to confirm them or gives up after a configured number of
 * attempts. Nothing is dropped silently: a job leaves the queue only through complete().
 *
 * Contract (both RedisRevocationQueue and MemoryRevocationQueue honour it; the tests run on both):
 * - enqueue is once per lease: a second enqueue for a queued lease changes nothing.
 * - claimDue hands each due job to exactly one caller, even with several workers (replicas) at
 *   once, and hides it for the visibility timeout: a job whose worker died before complete() or
 *   retry() becomes due again then.
 * - complete() and retry() with the claim token of an older claim are ignored (answer false), so a
 *   worker that outlived its visibility timeout cannot undo what the newer claim did.
 * - Any storage failure rejects (never resolves with a guess).
 * All times are epoch milliseconds.
 *
 * How the broker uses it, so that a crash at any point loses no revocation: enqueue the job first
 * (the durable intent; attempts 0, runAt a little ahead), then mark the lease `revoking`, then try
 * the backend inline; on success record `revoked` and complete() the job, on failure retry() it.
 * A worker that finds the lease still `active` (the broker died between the first two steps) ends
 * it itself. A bulk revocation and an orphan claim (LeaseStore.revokeSelected,
 * claimOrphanedLeases) queue in the same step as they move the lease to `revoking`; on Redis that
 * job is the queue entry and the lease record alone until its first claim or retry (see
 * RedisRevocationQueue), and reads back like any other job.
 */
import { invalidArgument } from '../errors.js';
import { requireLimit, requireTime } from './lease-records.js';

export interface RevocationJob {
  leaseId: string;
  /** The backend's name, as in the lease (`vault`, `token`, ...). */
  backend: string;
  /** What the backend needs to revoke (a Vault lease id, an accessor); never a secret. */
  backendRef: string;
  /** The lease's expiresAt, handed to the backend's revoke. */
  expiresAt: number;
  /** Why the lease is being revoked (`task_ended`, `expired`, ...); recorded with the outcome. */
  reason: string;
  /** Attempts made so far (the broker's inline attempt counts). */
  attempts: number;
  /** The last attempt's error message; never a secret. */
  lastError?: string;
}

export interface ClaimedRevocation extends RevocationJob {
  /** Identifies this claim; pass it to complete/retry. */
  claim: string;
}

export interface QueuedRevocation extends RevocationJob {
  runAt: number;
  /** Set while a worker holds the job. */
  claim?: string;
}

export interface RevocationQueue {
  /** True when jobs survive a restart (Redis); false for the in-process queue. */
  readonly durable: boolean;
  /** Queues a job to run at `runAt`; false when the lease already has a job (which is kept). */
  enqueue(job: RevocationJob, runAt: number): Promise<boolean>;
  /** Claims up to `limit` jobs with runAt <= now, oldest first; each goes to exactly one caller. */
  claimDue(now: number, limit: number): Promise<ClaimedRevocation[]>;
  /** Removes a finished job; false when it is gone or was claimed again since `claim`. */
  complete(leaseId: string, claim?: string): Promise<boolean>;
  /** Reschedules a job after a failed attempt, releasing the claim; false as for complete. */
  retry(
    leaseId: string,
    runAt: number,
    attempts: number,
    lastError: string,
    claim?: string,
  ): Promise<boolean>;
  /** Jobs waiting or claimed. */
  pending(): Promise<number>;
  /** One job, for inspection (ops, tests). */
  get(leaseId: string): Promise<QueuedRevocation | undefined>;
}

/** Default time a claimed job stays hidden: longer than a backend call, with its timeout, can take. */
export const DEFAULT_VISIBILITY_TIMEOUT_MS = 60_000;

/** Error messages are stored and audited; a bound keeps a runaway message from bloating either. */
export const MAX_ERROR_LENGTH = 500;

export function boundedError(message: string): string {
  return message.length > MAX_ERROR_LENGTH ? `${message.slice(0, MAX_ERROR_LENGTH)}…` : message;
}

function requireText(field: string, value: unknown): void {
  if (typeof value !== 'string' || value === '') throw invalidArgument(field, 'must be a non-empty string');
}

function requireCount(field: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(field, 'must be a non-negative integer');
  }
}

/** Rules both queues apply before a write, so they refuse the same inputs with the same errors. */
export function validateJob(job: RevocationJob, runAt: number): void {
  requireText('job.leaseId', job.leaseId);
  requireText('job.backend', job.backend);
  if (typeof job.backendRef !== 'string') throw invalidArgument('job.backendRef', 'must be a string');
  requireTime('job.expiresAt', job.expiresAt);
  if (typeof job.reason !== 'string') throw invalidArgument('job.reason', 'must be a string');
  requireCount('job.attempts', job.attempts);
  requireTime('runAt', runAt);
}

export function validateClaim(now: number, limit: number): void {
  requireTime('now', now);
  requireLimit(limit);
}

export function validateRetry(leaseId: string, runAt: number, attempts: number): void {
  requireText('leaseId', leaseId);
  requireTime('runAt', runAt);
  requireCount('attempts', attempts);
}

export function requireVisibilityTimeout(ms: number): number {
  if (!Number.isSafeInteger(ms) || ms <= 0) {
    throw invalidArgument('visibilityTimeoutMs', 'must be a positive integer');
  }
  return ms;
}
