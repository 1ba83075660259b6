/**
 * Watches pending approvals for the two moments people are told about after the request itself:
 * half the lifetime gone undecided (`approval.reminder`) and expiry (`approval.expired`). Each is
 * an audit record, and the chat notifier turns records into messages, so a reminder is on the
 * trail like everything else.
 *
 * Every replica watches; a claim in shared state (Redis SET NX, or memory in dev) makes exactly
 * one of them write each record. Expiry is seen for approvals this replica saw pending: one that
 * expires while every replica is down is not announced (its state says `expired` all the same).
 */
import type { ApprovalRequest, ApprovalStore } from '../approvals/types.js';
import type { AuditSink } from '../audit/types.js';
import type { RedisClient } from '../redis/connect.js';

/** Exactly-once across replicas: the first to claim a key wins it until it expires. */
export interface NotificationClaims {
  claim(key: string, ttlSeconds: number): Promise<boolean>;
}

export class RedisNotificationClaims implements NotificationClaims {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  async claim(key: string, ttlSeconds: number): Promise<boolean> {
    return (await this.redis.set(`${this.prefix}notify:${key}`, '1', 'EX', ttlSeconds, 'NX')) === 'OK';
  }
}

export class MemoryNotificationClaims implements NotificationClaims {
  private readonly claims = new Map<string, number>();

  constructor(private readonly now: () => number) {}

  async claim(key: string, ttlSeconds: number): Promise<boolean> {
    const now = this.now();
    for (const [k, until] of this.claims) if (until <= now) this.claims.delete(k);
    if (this.claims.has(key)) return false;
    this.claims.set(key, now + ttlSeconds * 1000);
    return true;
  }
}

export interface ApprovalWatchDeps {
  approvals: Pick<ApprovalStore, 'list' | 'get'>;
  audit: Pick<AuditSink, 'write'>;
  claims: NotificationClaims;
  now: () => number;
  intervalMs: number;
  logger: { warn(obj: object, msg: string): void };
}

/** A claim outlives the approval by a day, so a late replica cannot announce it again. */
const CLAIM_GRACE_SECONDS = 86_400;

export class ApprovalWatch {
  /** Approvals seen pending at the last scan: the ones whose expiry this replica can see. */
  private pending = new Map<string, ApprovalRequest>();
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;

  constructor(private readonly deps: ApprovalWatchDeps) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.deps.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.scanning;
  }

  /** One scan: reminders for pending approvals past half their lifetime, records for those that expired. */
  async scan(): Promise<void> {
    const now = this.deps.now();
    const pending = await this.deps.approvals.list({ state: 'pending' }, now);
    for (const approval of pending) {
      if (now >= approval.createdAt + (approval.expiresAt - approval.createdAt) / 2)
        await this.remind(approval, now);
    }
    const current = new Map(pending.map((a) => [a.id, a]));
    for (const [id, seen] of this.pending) {
      if (!current.has(id)) await this.announceIfExpired(seen, now);
    }
    this.pending = current;
  }

  private tick(): void {
    if (this.scanning !== undefined) return;
    this.scanning = this.scan()
      .catch((err: unknown) =>
        this.deps.logger.warn({ err: (err as Error).message }, 'approval watch: scan failed'),
      )
      .finally(() => (this.scanning = undefined));
  }

  private async remind(approval: ApprovalRequest, now: number): Promise<void> {
    if (!(await this.claim(approval, 'reminder', now))) return;
    await this.deps.audit.write({
      type: 'approval.reminder',
      ...approvalFields(approval),
      approvals_received: approval.approvals.length,
      expires_at: new Date(approval.expiresAt).toISOString(),
    });
  }

  private async announceIfExpired(seen: ApprovalRequest, now: number): Promise<void> {
    const latest = await this.deps.approvals.get(seen.id, now);
    if (latest?.state !== 'expired') return;
    if (!(await this.claim(latest, 'expired', now))) return;
    await this.deps.audit.write({
      type: 'approval.expired',
      ...approvalFields(latest),
      approvals_received: latest.approvals.length,
      expired_at: new Date(latest.expiresAt).toISOString(),
    });
  }

  private claim(approval: ApprovalRequest, what: string, now: number): Promise<boolean> {
    const ttl = Math.max(1, Math.ceil((approval.expiresAt - now) / 1000)) + CLAIM_GRACE_SECONDS;
    return this.deps.claims.claim(`${approval.id}:${what}`, ttl);
  }
}

function approvalFields(a: ApprovalRequest): Record<string, unknown> & { agent: string } {
  return {
    agent: a.requester,
    approval: a.id,
    task: a.taskId,
    role: a.role,
    environment: a.environment,
    change_type: a.changeType,
    approvals_required: a.required,
  };
}
