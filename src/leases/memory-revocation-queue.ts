/**
 * In-process RevocationQueue for the dev stack and tests: same contract and same answers as
 * RedisRevocationQueue, but jobs die with the process (durable = false). Each call runs
 * synchronously between two awaits, which is what the Lua scripts give the Redis queue.
 */
import { randomUUID } from 'node:crypto';
import { unavailable } from '../errors.js';
import {
  boundedError,
  DEFAULT_VISIBILITY_TIMEOUT_MS,
  requireVisibilityTimeout,
  validateClaim,
  validateJob,
  validateRetry,
  type ClaimedRevocation,
  type QueuedRevocation,
  type RevocationJob,
  type RevocationQueue,
} from './revocation-queue.js';

export interface MemoryRevocationQueueOptions {
  visibilityTimeoutMs?: number;
}

function byRunAt(a: QueuedRevocation, b: QueuedRevocation): number {
  return a.runAt - b.runAt || (a.leaseId < b.leaseId ? -1 : a.leaseId > b.leaseId ? 1 : 0);
}

export class MemoryRevocationQueue implements RevocationQueue {
  readonly durable = false;
  private readonly jobs = new Map<string, QueuedRevocation>();
  private readonly visibilityMs: number;
  private closed = false;

  constructor(opts: MemoryRevocationQueueOptions = {}) {
    this.visibilityMs = requireVisibilityTimeout(opts.visibilityTimeoutMs ?? DEFAULT_VISIBILITY_TIMEOUT_MS);
  }

  async enqueue(job: RevocationJob, runAt: number): Promise<boolean> {
    this.open();
    validateJob(job, runAt);
    if (this.jobs.has(job.leaseId)) return false;
    const queued: QueuedRevocation = { ...structuredClone(job), runAt };
    if (job.lastError !== undefined) queued.lastError = boundedError(job.lastError);
    this.jobs.set(job.leaseId, queued);
    return true;
  }

  async claimDue(now: number, limit: number): Promise<ClaimedRevocation[]> {
    this.open();
    validateClaim(now, limit);
    const claim = randomUUID();
    const due = [...this.jobs.values()]
      .filter((j) => j.runAt <= now)
      .sort(byRunAt)
      .slice(0, limit);
    return due.map((job) => {
      Object.assign(job, { runAt: now + this.visibilityMs, claim });
      const { runAt: _runAt, ...claimed } = structuredClone(job);
      return { ...claimed, claim };
    });
  }

  async complete(leaseId: string, claim?: string): Promise<boolean> {
    this.open();
    const job = this.jobs.get(leaseId);
    if (!job || (claim !== undefined && job.claim !== claim)) return false;
    this.jobs.delete(leaseId);
    return true;
  }

  async retry(
    leaseId: string,
    runAt: number,
    attempts: number,
    lastError: string,
    claim?: string,
  ): Promise<boolean> {
    this.open();
    validateRetry(leaseId, runAt, attempts);
    const job = this.jobs.get(leaseId);
    if (!job || (claim !== undefined && job.claim !== claim)) return false;
    Object.assign(job, { runAt, attempts, lastError: boundedError(lastError) });
    delete job.claim;
    return true;
  }

  async pending(): Promise<number> {
    this.open();
    return this.jobs.size;
  }

  async get(leaseId: string): Promise<QueuedRevocation | undefined> {
    this.open();
    const job = this.jobs.get(leaseId);
    return job && structuredClone(job);
  }

  /** Drops every job (as a process exit would) and fails later calls. */
  async close(): Promise<void> {
    this.closed = true;
    this.jobs.clear();
  }

  private open(): void {
    if (this.closed) throw unavailable('revocation_queue_unavailable', 'revocation queue unavailable');
  }
}
