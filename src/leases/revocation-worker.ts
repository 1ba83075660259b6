/**
 * Works the revocation queue: claims due jobs, asks each lease's backend to revoke, and records
 * the outcome in the lease store (`revoking` -> `revoked`, or `revoke_failed` once `maxAttempts`
 * are spent, with an audit event). Failed attempts are rescheduled with exponential backoff and
 * jitter. All state lives in the queue, so a worker started after a restart resumes whatever was
 * pending, and several replicas can run workers at once (a claim goes to exactly one of them).
 *
 * Order of the final steps, chosen so that a crash at any point loses nothing: audit, then the
 * lease transition, then complete(). A crash in between leaves the job claimed; it comes back after
 * the visibility timeout and runs again (revokes are idempotent, the transition happens once; at
 * worst the audit event is written twice, never not at all).
 */
import { PeriodicJob } from './periodic-job.js';
import type { CredentialBackend, RoleDefinition } from '../credentials/backend.js';
import { isBrokerError } from '../errors.js';
import { boundedError, type ClaimedRevocation, type RevocationQueue } from './revocation-queue.js';
import type { Lease, LeaseStore, RevokeOutcome } from './types.js';
import { isStoreOutage } from '../redis/redis-health-log.js';

/** The subset of a pino logger the worker uses. */
export interface RevocationWorkerLogger {
  debug?(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** What the worker reports to the audit trail; shaped to be handed to AuditSink.write as is. */
export type RevocationAuditEvent = {
  type: 'lease.revoked' | 'lease.revoke_failed' | 'lease.not_revocable';
  /** The lease's agent, or '' when the lease record is gone. */
  agent: string;
  lease: string;
  task?: string;
  role?: string;
  environment?: string;
  backend: string;
  reason: string;
  attempts: number;
  /** The last attempt's reason code, for revoke_failed. */
  error?: string;
  /** not_revocable: until when the credential lives (RFC 3339), null when the backend cannot say. */
  valid_until?: string | null;
};

export interface BackoffOptions {
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface RevocationWorkerOptions extends BackoffOptions {
  queue: RevocationQueue;
  backends: ReadonlyMap<string, CredentialBackend>;
  /**
   * The role catalog, so a retried revoke of a credential its backend can only let expire (AWS STS,
   * a wrapped Vault dynamic secret) ends `not_revocable`, never `revoked`.
   */
  roles?: ReadonlyMap<string, RoleDefinition>;
  store: LeaseStore;
  /**
   * Records an outcome the queue reached: `lease.revoked` after a retry succeeded,
   * `lease.revoke_failed` when attempts ran out. A rejection leaves the job to come back after the
   * visibility timeout, so the event is not lost.
   */
  audit?: (event: RevocationAuditEvent) => Promise<void>;
  /** Attempts in all (the broker's inline one included) before a lease is marked revoke_failed. */
  maxAttempts: number;
  /** How often the worker looks for due jobs. */
  intervalMs: number;
  /** Jobs claimed per queue call. Default 50. */
  batchSize?: number;
  logger: RevocationWorkerLogger;
  now?: () => number;
  /** Source of jitter in [0, 1). Default Math.random. */
  random?: () => number;
}

export interface DrainResult {
  revoked: number;
  /** Revoked at the backend, but the credential lives until it expires (reported, not revoked). */
  notRevocable: number;
  retried: number;
  failed: number;
  /** Jobs left claimed because the store, the queue or the audit trail failed; they come back. */
  deferred: number;
}

/**
 * Delay before the attempt after `attempts` failed ones: base * 2^(attempts-1), capped at max,
 * with "equal jitter" (half fixed, half random), so retries from many leases spread out while the
 * delay still grows with every failure.
 */
export function revocationBackoff(attempts: number, opts: BackoffOptions, random: () => number): number {
  const exponent = Math.max(0, attempts - 1);
  const ceiling = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** Math.min(exponent, 52));
  const half = ceiling / 2;
  return Math.round(half + random() * half);
}

function positiveInteger(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(`revocation worker: ${name} must be a positive integer`);
  }
}

/** An error's message, safe to store and audit: backends keep secrets out of their errors. */
function errorMessage(err: unknown): string {
  if (isBrokerError(err)) return boundedError(`${err.reason}: ${err.message}`);
  return boundedError(err instanceof Error ? err.message : String(err));
}

/** One claimed job's attempt: the job, this attempt's number, and its backend (if configured). */
interface Attempt {
  job: ClaimedRevocation;
  attempts: number;
  backend: CredentialBackend | undefined;
}

/** What a backend needs to revoke (or date) the credential of a job. */
function target(job: ClaimedRevocation): { leaseId: string; backendRef: string; expiresAt: number } {
  return { leaseId: job.leaseId, backendRef: job.backendRef, expiresAt: job.expiresAt };
}

/**
 * `valid_until` of a not_revocable record (the worker's and the broker's): RFC 3339, or null when
 * the backend cannot say when the credential ends (Infinity).
 */
export function validUntilText(ms: number): string | null {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
}

export class RevocationWorker {
  private readonly job: PeriodicJob<DrainResult>;
  private readonly opts: RevocationWorkerOptions;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly batchSize: number;

  constructor(opts: RevocationWorkerOptions) {
    positiveInteger('maxAttempts', opts.maxAttempts);
    positiveInteger('baseDelayMs', opts.baseDelayMs);
    positiveInteger('maxDelayMs', opts.maxDelayMs);
    positiveInteger('intervalMs', opts.intervalMs);
    positiveInteger('batchSize', opts.batchSize ?? 50);
    if (opts.maxDelayMs < opts.baseDelayMs) {
      throw new RangeError('revocation worker: maxDelayMs must be >= baseDelayMs');
    }
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.job = new PeriodicJob(() => this.drain(), {
      intervalMs: opts.intervalMs,
      onResult: (result) => {
        if (result.revoked + result.retried + result.failed + result.deferred > 0) {
          this.opts.logger.info({ ...result }, 'revocation queue drained');
        }
      },
      onError: (err) => {
        // The queue is down: nothing was claimed, so the next drain finds the same jobs. An
        // outage is logged once by the Redis health log, not on every tick.
        if (isStoreOutage(err))
          this.opts.logger.debug?.({ err: errorMessage(err) }, 'revocation queue drain failed');
        else this.opts.logger.error({ err: errorMessage(err) }, 'revocation queue drain failed');
      },
    });
    this.random = opts.random ?? Math.random;
    this.batchSize = opts.batchSize ?? 50;
  }

  /** Drains at once (to resume what was pending before a restart), then every intervalMs. */
  start(): void {
    this.job.start();
  }

  /** Stops scheduling and waits for the run in flight, which ends after its current batch. */
  stop(): Promise<void> {
    return this.job.stop();
  }

  /** Runs now (or joins the run in flight). Rejects only if the store or queue fails. */
  drainOnce(): Promise<DrainResult> {
    return this.job.once();
  }

  private async drain(): Promise<DrainResult> {
    // One `now` per drain: retries rescheduled meanwhile land after it, so the loop always ends.
    const now = this.now();
    const result: DrainResult = { revoked: 0, notRevocable: 0, retried: 0, failed: 0, deferred: 0 };
    for (let full = true; full && !this.job.isStopping;) {
      const jobs = await this.opts.queue.claimDue(now, this.batchSize);
      full = jobs.length === this.batchSize;
      const outcomes = await Promise.all(jobs.map((job) => this.work(job, now)));
      for (const outcome of outcomes) result[outcome]++;
    }
    return result;
  }

  /** One attempt at one job; never throws. */
  private async work(job: ClaimedRevocation, now: number): Promise<keyof DrainResult> {
    const attempt: Attempt = {
      job,
      attempts: job.attempts + 1,
      backend: this.opts.backends.get(job.backend),
    };
    let error: string | undefined;
    // The audit record gets the reason code only: a backend's message names its paths and quotes
    // its own error text (kept in the queue and the log).
    let reason = 'backend_error';
    try {
      if (!attempt.backend) throw new Error(`backend "${job.backend}" is not configured`);
      await attempt.backend.revoke(target(job));
    } catch (err) {
      error = errorMessage(err);
      if (isBrokerError(err)) reason = err.reason;
    }
    try {
      if (error === undefined) return await this.succeeded(attempt);
      if (attempt.attempts < this.opts.maxAttempts) return await this.retryLater(attempt, now, error);
      return await this.giveUp(attempt, error, reason);
    } catch (err) {
      this.opts.logger.error(
        { leaseId: job.leaseId, backend: job.backend, err: errorMessage(err) },
        'recording a revocation outcome failed; the job comes back after its visibility timeout',
      );
      return 'deferred';
    }
  }

  /** The backend revoked it: `revoked`, or `revoke_failed` as not revocable when it can only expire. */
  private async succeeded({ job, attempts, backend }: Attempt): Promise<'revoked' | 'notRevocable'> {
    // A credential its backend can only let expire is reported, never counted as revoked.
    const notRevocable = backend !== undefined && (await this.expiresOnly(backend, job.leaseId));
    const lease = await this.recordOutcome(
      notRevocable ? { ...job, reason: `not_revocable: ${job.reason}` } : job,
      notRevocable ? 'revoke_failed' : 'revoked',
    );
    // Undefined: another worker (or the broker) already recorded the outcome; nothing to add.
    if (lease) {
      const until = notRevocable ? (backend?.validUntil?.(target(job)) ?? lease.expiresAt) : undefined;
      await this.audit({
        type: notRevocable ? 'lease.not_revocable' : 'lease.revoked',
        agent: lease.agent,
        lease: lease.id,
        task: lease.taskId,
        role: lease.role,
        environment: lease.environment,
        backend: job.backend,
        reason: job.reason,
        attempts,
        ...(until !== undefined ? { valid_until: validUntilText(until) } : {}),
      });
    }
    await this.opts.queue.complete(job.leaseId, job.claim);
    this.opts.logger.info(
      { leaseId: job.leaseId, backend: job.backend, attempts, notRevocable },
      'queued revocation succeeded',
    );
    return notRevocable ? 'notRevocable' : 'revoked';
  }

  /** The backend refused, attempts remain: back in the queue after the backoff. */
  private async retryLater({ job, attempts }: Attempt, now: number, error: string): Promise<'retried'> {
    const runAt = now + revocationBackoff(attempts, this.opts, this.random);
    await this.opts.queue.retry(job.leaseId, runAt, attempts, error, job.claim);
    this.opts.logger.warn(
      { leaseId: job.leaseId, backend: job.backend, attempts, runAt, err: error },
      'revocation failed; retry scheduled',
    );
    return 'retried';
  }

  /** The last attempt failed too: audited, the lease marked `revoke_failed`, the job done. */
  private async giveUp({ job, attempts }: Attempt, error: string, reason: string): Promise<'failed'> {
    const lease = await this.opts.store.getLease(job.leaseId);
    await this.audit({
      type: 'lease.revoke_failed',
      agent: lease?.agent ?? '',
      lease: job.leaseId,
      ...(lease ? { task: lease.taskId, role: lease.role, environment: lease.environment } : {}),
      backend: job.backend,
      reason: job.reason,
      attempts,
      error: reason,
    });
    await this.recordOutcome(job, 'revoke_failed');
    await this.opts.queue.complete(job.leaseId, job.claim);
    this.opts.logger.error(
      { leaseId: job.leaseId, backend: job.backend, attempts, err: error },
      'revocation failed for good: lease marked revoke_failed',
    );
    return 'failed';
  }

  /**
   * Moves the lease to the outcome. A job is the durable intent to revoke, so a lease still
   * `active` (the broker queued the job, then died before marking the lease `revoking`) is ended
   * here too, going through `revoking` so it lands on the deny list. Undefined when the lease had
   * already reached an end state some other way (expired, or another worker recorded it).
   */
  private async recordOutcome(job: ClaimedRevocation, outcome: RevokeOutcome): Promise<Lease | undefined> {
    const { store } = this.opts;
    const at = this.now();
    const lease = await store.markRevokeOutcome(job.leaseId, outcome, job.reason, at);
    if (lease) return lease;
    if (!(await store.markLeaseEnded(job.leaseId, 'revoking', job.reason, at))) return undefined;
    return store.markRevokeOutcome(job.leaseId, outcome, job.reason, at);
  }

  /** Whether the lease's role is one whose credentials its backend can only let expire. */
  private async expiresOnly(backend: CredentialBackend, leaseId: string): Promise<boolean> {
    if (!backend.revocability || !this.opts.roles) return false;
    const lease = await this.opts.store.getLease(leaseId);
    const role = lease && this.opts.roles.get(lease.role);
    return role !== undefined && backend.revocability(role) === 'expires_only';
  }

  private async audit(event: RevocationAuditEvent): Promise<void> {
    await this.opts.audit?.(event);
  }
}
