/**
 * The audit pipeline: one chain, many sinks. The chain keeper (the hash-chained file) seals every
 * record; every record it commits, its own included, is handed in order to each follower (Redis
 * Stream, webhook, SSF, ...) and to in-process watchers (WatchAudit).
 *
 * write() resolves only when the keeper has the record durably and every `required` follower
 * acknowledged it, all within one bound (audit.ackTimeoutMs, default 2 s). Past the bound, or when
 * a required sink refuses, write() rejects with UNAVAILABLE and the caller fails closed (no
 * credential leaves; a minted one is revoked). The record itself stays in the chain and still
 * reaches every follower: a refused request leaves a trail, never a gap.
 *
 * `best_effort` followers never delay or refuse a write; their failures are counted, logged once
 * per state change and raised as metrics by the follower.
 */
import { BrokerError } from '../errors.js';
import type { FollowerSink } from './follower.js';
import type { AuditEventInput, AuditRecord, AuditSinkHealth, ChainKeeper, CommitListener } from './types.js';

export interface AuditPipelineOptions {
  /** The bound on one write: keeper durable and every required follower acknowledged. Default 2000. */
  ackTimeoutMs?: number;
}

export const DEFAULT_ACK_TIMEOUT_MS = 2000;

export class AuditPipeline implements ChainKeeper {
  private readonly ackTimeoutMs: number;
  private readonly followers: FollowerSink[] = [];
  private readonly required: FollowerSink[] = [];
  private readonly unsubscribe: () => void;

  constructor(
    private readonly keeper: ChainKeeper,
    followers: readonly FollowerSink[],
    opts: AuditPipelineOptions = {},
  ) {
    this.ackTimeoutMs = opts.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS;
    for (const follower of followers) this.addFollower(follower);
    this.unsubscribe = keeper.subscribe((records) => {
      for (const follower of this.followers) follower.enqueue(records);
    });
  }

  /**
   * Adds a follower built after the pipeline (one that needs the broker's signing keys, say). It
   * receives the records committed from now on.
   */
  addFollower(follower: FollowerSink): void {
    this.followers.push(follower);
    if (follower.mode === 'required') this.required.push(follower);
  }

  async write(event: AuditEventInput): Promise<AuditRecord> {
    // The followers there when the write began: one added meanwhile never saw this record.
    const required = [...this.required];
    if (required.length === 0) return withinMs(this.keeper.write(event), this.ackTimeoutMs, 'audit trail');
    const bound = AbortSignal.timeout(this.ackTimeoutMs);
    const record = await withinBound(this.keeper.write(event), bound, 'audit trail');
    await Promise.all(
      required.map((follower) =>
        follower.acknowledged(record.seq, bound).catch((err) => refuse(follower, err)),
      ),
    );
    return record;
  }

  /** Every committed record, in chain order (WatchAudit, metrics). */
  subscribe(listener: CommitListener): () => void {
    return this.keeper.subscribe(listener);
  }

  /** Hands a signed checkpoint note to every follower that publishes them. */
  publishCheckpoint(note: string): void {
    for (const follower of this.followers) follower.publishCheckpoint?.(note);
  }

  /** Down when the keeper or any required follower is: the gate then refuses requests up front. */
  health(): AuditSinkHealth {
    const keeper = this.keeper.health?.() ?? { ok: true };
    if (!keeper.ok) return keeper;
    for (const follower of this.required) {
      const h = follower.health();
      if (!h.ok) return { ok: false, since: h.since, cause: `${follower.name}: ${h.cause}` };
    }
    return { ok: true };
  }

  /** Each follower's health, for readiness and `/v1/audit/sinks`. */
  sinks(): Array<{ name: string; mode: string; health: AuditSinkHealth }> {
    return this.followers.map((f) => ({ name: f.name, mode: f.mode, health: f.health() }));
  }

  /** The keeper first (it flushes what was accepted, and followers get it), then the followers. */
  async close(): Promise<void> {
    try {
      await this.keeper.close();
    } finally {
      this.unsubscribe();
      const results = await Promise.allSettled(this.followers.map((f) => f.close()));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    }
  }
}

/**
 * `promise`, or UNAVAILABLE after `ms`: the file alone needs no AbortSignal (one timer, cleared when
 * the record is durable; an AbortSignal.timeout per write was a quarter of a write's CPU).
 */
function withinMs<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return settledBefore(promise, what, (fire) => {
    const timer = setTimeout(fire, ms).unref();
    return () => clearTimeout(timer);
  });
}

/** `promise`, or UNAVAILABLE once `signal` fires first. */
function withinBound<T>(promise: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  return settledBefore(promise, what, (fire) => {
    if (signal.aborted) fire();
    else signal.addEventListener('abort', fire, { once: true });
    return () => signal.removeEventListener('abort', fire);
  });
}

/**
 * `promise`'s outcome, or UNAVAILABLE (`audit_timeout`) when the deadline `arm` sets up fires
 * first; `arm` returns how to disarm it once the promise settles.
 */
function settledBefore<T>(
  promise: Promise<T>,
  what: string,
  arm: (fire: () => void) => () => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const disarm = arm(() => reject(timedOut(what)));
    promise.then(
      (value) => {
        disarm();
        resolve(value);
      },
      (err: unknown) => {
        disarm();
        reject(err);
      },
    );
  });
}

function timedOut(what: string): BrokerError {
  return new BrokerError('UNAVAILABLE', `${what} did not acknowledge the record in time: request refused`, {
    reason: 'audit_timeout',
  });
}

/** A required follower did not acknowledge within the bound: the caller fails closed. */
function refuse(follower: FollowerSink, err: unknown): never {
  const timeout = err instanceof DOMException && err.name === 'TimeoutError';
  throw new BrokerError('UNAVAILABLE', 'audit trail unavailable: request refused', {
    reason: timeout ? 'audit_timeout' : 'audit_unavailable',
    cause: new Error(`audit sink ${follower.name} did not acknowledge`, { cause: err }),
  });
}
