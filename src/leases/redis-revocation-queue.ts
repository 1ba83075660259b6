/**
 * RevocationQueue on Redis, shared by every broker replica and kept across restarts: a broker that
 * starts again finds the revocations still pending and its worker carries on with them. Each
 * operation is one Lua script (lua/*-revocation*.lua), so a claim is atomic across replicas.
 *
 * Keys (prefix `svb` by default, the lease store's; every key carries the `{svb}` hash tag):
 *
 * | key | type | holds | TTL |
 * | --- | --- | --- | --- |
 * | `{svb}:revoke:queue` | zset | lease ids by runAt (a claimed job: by when it becomes visible again) | none |
 * | `{svb}:revoke:job:<leaseId>` | hash | one job: backend, backendRef, expiresAt, reason, attempts, lastError, claim | none; deleted on complete |
 *
 * No TTLs: a pending revocation must not vanish; complete() is the only way out.
 *
 * A lease-based job has a queue entry and no hash: the lease store's bulk revocation and orphan
 * claim queue a lease's revocation in the same step that moves the lease to `revoking`, and that
 * lease record (`{svb}:lease:<leaseId>`, no TTL while `revoking`) carries what the hash would. Its
 * first claim or retry writes the hash, built from the lease (attempts 0 until then); get() builds
 * it the same way. So the queue shares the lease store's prefix, as main.ts wires it.
 */
import { randomUUID } from 'node:crypto';
import type { RedisClient } from '../redis/connect.js';
import { FieldReader, fieldsOf, hashTag, loadLuaScripts, ScriptRunner } from '../redis/lua-scripts.js';
import { BrokerError, invalidArgument, unavailable } from '../errors.js';
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

// Shipped with the lease store's scripts; the build copies src/leases/lua/ to dist.
const LUA_DIR = new URL('./lua/', import.meta.url);

const SCRIPT_NAMES = [
  'enqueue-revocation',
  'claim-revocations',
  'complete-revocation',
  'retry-revocation',
  'get-revocation',
] as const;
type ScriptName = (typeof SCRIPT_NAMES)[number];

export interface RedisRevocationQueueOptions {
  /** Key prefix; wrapped in `{}` to become the hash tag. Default `svb` (share it with the lease store). */
  prefix?: string;
  /** How long a claimed job stays hidden before another worker may take it. Default 60 s. */
  visibilityTimeoutMs?: number;
}

function queueUnavailable(cause: unknown): BrokerError {
  return unavailable('revocation_queue_unavailable', 'revocation queue unavailable', cause);
}

function malformed(what: string): BrokerError {
  return new BrokerError('INTERNAL', 'revocation queue returned a malformed record', {
    reason: 'revocation_queue_corrupt',
    cause: new Error(what),
  });
}

/** Named codes of complete-revocation and retry-revocation: 1 ok, -1 job_not_found, -2 stale_claim. */
function interpretUpdate(reply: unknown): boolean {
  if (reply === 1) return true;
  if (reply === -1 || reply === -2) return false;
  throw malformed(`unexpected reply ${String(reply)}`);
}

function jobToFields(job: RevocationJob): string[] {
  const fields = [
    'leaseId',
    job.leaseId,
    'backend',
    job.backend,
    'backendRef',
    job.backendRef,
    'expiresAt',
    String(job.expiresAt),
    'reason',
    job.reason,
    'attempts',
    String(job.attempts),
  ];
  if (job.lastError !== undefined) fields.push('lastError', boundedError(job.lastError));
  return fields;
}

function jobFromFields(fields: Record<string, string>): RevocationJob & { claim?: string } {
  const read = new FieldReader(fields, malformed);
  const job: RevocationJob & { claim?: string } = {
    leaseId: read.text('leaseId'),
    backend: read.text('backend'),
    backendRef: read.text('backendRef'),
    expiresAt: read.integer('expiresAt'),
    reason: read.text('reason'),
    attempts: read.integer('attempts'),
  };
  const lastError = read.optionalText('lastError');
  if (lastError !== undefined) job.lastError = lastError;
  const claim = read.optionalText('claim');
  if (claim !== undefined) job.claim = claim;
  return job;
}

export class RedisRevocationQueue implements RevocationQueue {
  readonly durable = true;
  private readonly tag: string;
  private readonly visibilityMs: number;
  private readonly scripts: ScriptRunner<ScriptName>;

  /**
   * Uses `redis` without owning it (share the lease store's client, built with createRedisConnection,
   * so calls fail fast during an outage); the caller closes it.
   */
  constructor(
    private readonly redis: RedisClient,
    opts: RedisRevocationQueueOptions = {},
  ) {
    this.tag = hashTag(opts.prefix ?? 'svb', (message) => invalidArgument('prefix', message));
    this.visibilityMs = requireVisibilityTimeout(opts.visibilityTimeoutMs ?? DEFAULT_VISIBILITY_TIMEOUT_MS);
    this.scripts = new ScriptRunner(
      redis,
      'svbRevoke',
      loadLuaScripts(LUA_DIR, SCRIPT_NAMES, 'revocation queue'),
      queueUnavailable,
    );
  }

  /** The hash tag every key of this queue starts with, e.g. `{svb}`. */
  get keyTag(): string {
    return this.tag;
  }

  async enqueue(job: RevocationJob, runAt: number): Promise<boolean> {
    validateJob(job, runAt);
    const reply = await this.scripts.run(
      'enqueue-revocation',
      [this.jobKey(job.leaseId), this.queueKey],
      [job.leaseId, runAt, ...jobToFields(job)],
    );
    if (reply !== 0 && reply !== 1) throw malformed(`unexpected reply ${String(reply)}`);
    return reply === 1;
  }

  async claimDue(now: number, limit: number): Promise<ClaimedRevocation[]> {
    validateClaim(now, limit);
    if (limit === 0) return [];
    const claim = randomUUID();
    const reply = await this.scripts.run(
      'claim-revocations',
      [this.queueKey],
      [this.tag, now, limit, now + this.visibilityMs, claim],
    );
    if (!Array.isArray(reply)) throw malformed('expected an array of jobs');
    return reply.map((r: unknown) => ({ ...jobFromFields(fieldsOf(r, malformed)), claim }));
  }

  async complete(leaseId: string, claim?: string): Promise<boolean> {
    const reply = await this.scripts.run(
      'complete-revocation',
      [this.jobKey(leaseId), this.queueKey],
      [leaseId, claim ?? ''],
    );
    return interpretUpdate(reply);
  }

  async retry(
    leaseId: string,
    runAt: number,
    attempts: number,
    lastError: string,
    claim?: string,
  ): Promise<boolean> {
    validateRetry(leaseId, runAt, attempts);
    const reply = await this.scripts.run(
      'retry-revocation',
      [this.jobKey(leaseId), this.queueKey, this.leaseKey(leaseId)],
      [leaseId, runAt, attempts, boundedError(lastError), claim ?? ''],
    );
    return interpretUpdate(reply);
  }

  async pending(): Promise<number> {
    return this.scripts.guard(() => this.redis.zcard(this.queueKey));
  }

  async get(leaseId: string): Promise<QueuedRevocation | undefined> {
    const reply = await this.scripts.run(
      'get-revocation',
      [this.jobKey(leaseId), this.queueKey, this.leaseKey(leaseId)],
      [leaseId],
    );
    if (!Array.isArray(reply)) throw malformed('expected a job reply');
    if (reply.length === 0) return undefined;
    const [score, fields] = reply as unknown[];
    const runAt = Number(score);
    if (score === '' || !Number.isSafeInteger(runAt)) throw malformed('job without a place in the queue');
    return { ...jobFromFields(fieldsOf(fields, malformed)), runAt };
  }

  private get queueKey(): string {
    return `${this.tag}:revoke:queue`;
  }

  private jobKey(leaseId: string): string {
    return `${this.tag}:revoke:job:${leaseId}`;
  }

  /** The lease store's record of the lease (RedisLeaseStore's key), which a lease-based job is built from. */
  private leaseKey(leaseId: string): string {
    return `${this.tag}:lease:${leaseId}`;
  }
}
