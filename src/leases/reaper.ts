/**
 * Ends what has run out of time: claims expired tasks and leases from the store and hands each to
 * the broker. All state is in the store, so a reaper started after a restart picks up whatever
 * expired while nothing ran, and several replicas can reap at once: a claim is atomic, so each
 * task or lease is handed to exactly one of them.
 *
 * A claim moves the record to `expired` before its callback runs, so a callback that fails (or a
 * crash in between) is not retried. That is acceptable because the credential has reached its
 * expiresAt by then, and an expired task's leases all expire no later than the task, so they are
 * claimed on their own even if onTaskExpired never ran.
 *
 * It also reconciles orphans: `pending` leases older than `orphans.afterMs` were written by an
 * issuance that never activated them (the broker died between the lease write and the audit
 * record, or the write landed after its caller had given up). Their credential never left, but it
 * exists at the backend: the claim moves each to `revoking` and queues its backend revocation in
 * one step, so a callback that fails (or a crash) leaves the revocation to the worker.
 */
import { ORPHANED_REASON } from './lease-records.js';
import { PeriodicJob } from './periodic-job.js';
import type { Lease, LeaseStore, Task } from './types.js';
import { isStoreOutage } from '../redis/redis-health-log.js';

/** The subset of a pino logger the reaper uses. */
export interface ReaperLogger {
  debug?(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface LeaseReaperOptions {
  store: LeaseStore;
  /** Revokes an expired lease's credential at its backend. */
  revoke: (lease: Lease) => Promise<void>;
  /** Called once per expired task (the broker revokes the task's remaining leases). */
  onTaskExpired: (task: Task) => Promise<void>;
  intervalMs: number;
  /** Records claimed per store call. */
  batchSize: number;
  /** Orphan reconciliation; without it, pending leases are left alone. */
  orphans?: OrphanOptions;
  logger: ReaperLogger;
  now?: () => number;
}

export interface OrphanOptions {
  /** A `pending` lease written this long ago is an orphan (a few times the request deadline). */
  afterMs: number;
  /** When the revocation queued with each claim becomes due, if the callback does not finish it. */
  retryAfterMs: number;
  /** Revokes the claimed orphans at their backends and records them (Broker.onLeasesOrphaned). */
  onOrphaned: (leases: Lease[]) => Promise<void>;
}

export interface SweepResult {
  tasksExpired: number;
  leasesExpired: number;
  /** Pending leases claimed as orphans. */
  leasesOrphaned: number;
  /** Callbacks (onTaskExpired, revoke) that failed; logged, not retried. */
  failures: number;
}

export class LeaseReaper {
  private readonly job: PeriodicJob<SweepResult>;
  private readonly opts: LeaseReaperOptions;
  private readonly now: () => number;

  constructor(opts: LeaseReaperOptions) {
    if (!Number.isSafeInteger(opts.intervalMs) || opts.intervalMs <= 0) {
      throw new RangeError('reaper: intervalMs must be a positive integer');
    }
    if (!Number.isSafeInteger(opts.batchSize) || opts.batchSize <= 0) {
      throw new RangeError('reaper: batchSize must be a positive integer');
    }
    if (opts.orphans && !(Number.isSafeInteger(opts.orphans.afterMs) && opts.orphans.afterMs > 0)) {
      throw new RangeError('reaper: orphans.afterMs must be a positive integer');
    }
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.job = new PeriodicJob(() => this.sweep(), {
      intervalMs: opts.intervalMs,
      onResult: (result) => {
        if (result.tasksExpired + result.leasesExpired + result.leasesOrphaned + result.failures > 0) {
          this.opts.logger.info({ ...result }, 'reaper sweep');
        }
      },
      onError: (err) => {
        // The store is down: nothing was claimed, so the next sweep finds the same records. An
        // outage is logged once by the Redis health log, not on every tick.
        if (isStoreOutage(err))
          this.opts.logger.debug?.({ err: (err as Error).message }, 'reaper sweep failed');
        else this.opts.logger.error({ err }, 'reaper sweep failed');
      },
    });
  }

  /** Sweeps at once (to catch up on what expired while nothing ran), then every intervalMs. */
  start(): void {
    this.job.start();
  }

  /** Stops scheduling and waits for the run in flight, which ends after its current batch. */
  stop(): Promise<void> {
    return this.job.stop();
  }

  /** Runs now (or joins the run in flight). Rejects only if the store or queue fails. */
  sweepOnce(): Promise<SweepResult> {
    return this.job.once();
  }

  private async sweep(): Promise<SweepResult> {
    const { store, batchSize, logger } = this.opts;
    // One `now` for the whole sweep: records that expire meanwhile wait for the next one, so the
    // loops below always end.
    const now = this.now();
    const result: SweepResult = { tasksExpired: 0, leasesExpired: 0, leasesOrphaned: 0, failures: 0 };

    // Tasks first, so the broker revokes a task's leases as part of ending the task; any it
    // misses are claimed below as expired leases anyway.
    for (let full = true; full && !this.job.isStopping;) {
      const tasks = await store.claimExpiredTasks(now, batchSize);
      full = tasks.length === batchSize;
      result.tasksExpired += tasks.length;
      await this.each(tasks, this.opts.onTaskExpired, (task, err) => {
        result.failures++;
        logger.warn({ err, taskId: task.id, agent: task.agent }, 'handling an expired task failed');
      });
    }

    for (let full = true; full && !this.job.isStopping;) {
      const leases = await store.claimExpiredLeases(now, batchSize);
      full = leases.length === batchSize;
      result.leasesExpired += leases.length;
      await this.each(leases, this.opts.revoke, (lease, err) => {
        result.failures++;
        logger.warn(
          { err, leaseId: lease.id, backend: lease.backend, agent: lease.agent, taskId: lease.taskId },
          'revoking an expired lease failed',
        );
      });
    }
    await this.sweepOrphans(now, result);
    return result;
  }

  private async sweepOrphans(now: number, result: SweepResult): Promise<void> {
    const orphans = this.opts.orphans;
    if (!orphans) return;
    const claim = { reason: ORPHANED_REASON, at: now, runAt: now + orphans.retryAfterMs };
    for (let full = true; full && !this.job.isStopping;) {
      const leases = await this.opts.store.claimOrphanedLeases(
        now - orphans.afterMs,
        this.opts.batchSize,
        claim,
      );
      full = leases.length === this.opts.batchSize;
      result.leasesOrphaned += leases.length;
      if (leases.length === 0) continue;
      try {
        await orphans.onOrphaned(leases);
      } catch (err) {
        // Their revocations are queued with the claim: the revocation worker finishes them.
        result.failures += leases.length;
        this.opts.logger.warn({ err, leases: leases.map((l) => l.id) }, 'revoking orphaned leases failed');
      }
    }
  }

  /** Runs `handle` on every item concurrently; one failure does not stop the others. */
  private async each<T>(
    items: T[],
    handle: (item: T) => Promise<void>,
    onFailure: (item: T, err: unknown) => void,
  ): Promise<void> {
    const outcomes = await Promise.allSettled(items.map(async (item) => handle(item)));
    outcomes.forEach((outcome, i) => {
      if (outcome.status === 'rejected') onFailure(items[i] as T, outcome.reason);
    });
  }
}
