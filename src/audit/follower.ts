/**
 * A sink that follows the chain: it receives every record the chain keeper (the file) committed,
 * in order, and delivers them to somewhere outside the broker (a Redis Stream, a webhook, an SSF
 * receiver). The base class owns what every follower needs: an ordered queue, batches, retries
 * with backoff, acknowledgements by seq for the pipeline's bound, health, and logging once per
 * state change. A subclass only says how to send one batch.
 */
import type { AuditRecord, AuditSinkHealth } from './types.js';

/** `required`: a credential leaves only once this sink acknowledged its record. */
export type SinkMode = 'required' | 'best_effort';

export const SINK_MODES = ['required', 'best_effort'] as const;

/** What the pipeline sees of a follower. */
export interface FollowerSink {
  /** For logs and metrics, e.g. `webhook:siem` or `redis_stream`. */
  readonly name: string;
  readonly mode: SinkMode;
  /** Takes committed records in chain order; never throws, never blocks. */
  enqueue(records: readonly AuditRecord[]): void;
  /** Resolves when the record with `seq` (and every one before it) was delivered; rejects on abort. */
  acknowledged(seq: number, signal: AbortSignal): Promise<void>;
  /** A signed checkpoint note (C2SP tlog-checkpoint) to publish beside the records, if the sink can. */
  publishCheckpoint?(note: string): void;
  health(): AuditSinkHealth;
  /** Delivers what it can within its bound, then stops. */
  close(): Promise<void>;
}

/** The slice of a pino logger followers use. */
export interface FollowerLogger {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/** Counters a follower raises (the broker wires them to prom-client; tests read them directly). */
export interface FollowerMetrics {
  delivered(sink: string, records: number): void;
  failed(sink: string): void;
  dropped(sink: string, records: number): void;
  up(sink: string, up: boolean): void;
}

export interface QueuedFollowerOptions {
  name: string;
  mode: SinkMode;
  /** Most records per send. Default 100. */
  maxBatch?: number;
  /** Backoff between failed sends: base doubles up to max. Default 100 ms, 5 s. */
  retry?: { baseDelayMs: number; maxDelayMs: number };
  /**
   * Records held in memory, waiting; past it a best-effort sink drops the oldest (counted and
   * logged: a gap its receiver can see by seq). A required sink never drops. Default 100,000.
   */
  maxQueue?: number;
  /** How long close() keeps trying to deliver what is queued. Default 2 s. */
  closeTimeoutMs?: number;
  logger?: FollowerLogger;
  metrics?: FollowerMetrics;
}

const silent: FollowerLogger = { error: () => undefined, warn: () => undefined, info: () => undefined };

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export abstract class QueuedFollower implements FollowerSink {
  readonly name: string;
  readonly mode: SinkMode;
  protected readonly logger: FollowerLogger;
  private queue: AuditRecord[] = [];
  private waiters: Waiter[] = [];
  /** Highest seq delivered (0: none yet). */
  private deliveredSeq = 0;
  private running: Promise<void> | undefined;
  private down: { since: number; cause: string; attempt: number } | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly settings: Required<Omit<QueuedFollowerOptions, 'logger' | 'metrics' | 'name' | 'mode'>>;
  private readonly metrics: FollowerMetrics | undefined;

  protected constructor(opts: QueuedFollowerOptions) {
    this.name = opts.name;
    this.mode = opts.mode;
    this.logger = opts.logger ?? silent;
    this.metrics = opts.metrics;
    this.settings = {
      maxBatch: opts.maxBatch ?? 100,
      retry: opts.retry ?? { baseDelayMs: 100, maxDelayMs: 5000 },
      maxQueue: opts.maxQueue ?? 100_000,
      closeTimeoutMs: opts.closeTimeoutMs ?? 2000,
    };
  }

  /** Delivers one batch (in order, all or nothing); throws when the receiver did not take it. */
  protected abstract send(batch: readonly AuditRecord[]): Promise<void>;

  /** Records this sink delivers; others are acknowledged without being sent (e.g. SSF wants revocations only). */
  protected accepts(_record: AuditRecord): boolean {
    return true;
  }

  enqueue(records: readonly AuditRecord[]): void {
    if (this.closed) return;
    this.queue.push(...records);
    this.trimQueue();
    this.kick();
  }

  acknowledged(seq: number, signal: AbortSignal): Promise<void> {
    if (seq <= this.deliveredSeq) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { seq, resolve, reject };
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      waiter.resolve = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiters.push(waiter);
    });
  }

  health(): AuditSinkHealth {
    if (this.down === undefined) return { ok: true };
    return { ok: false, since: new Date(this.down.since).toISOString(), cause: this.down.cause };
  }

  /** Records waiting to be delivered (for tests and the metrics gauge). */
  get backlog(): number {
    return this.queue.length;
  }

  /** Keeps delivering what is queued for at most closeTimeoutMs (a hung receiver cannot hold shutdown). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    const deadline = Date.now() + this.settings.closeTimeoutMs;
    while (this.queue.length > 0 && Date.now() < deadline) {
      this.running ??= this.sendNext()
        .then((sent) => (sent ? undefined : sleep(50)))
        .finally(() => (this.running = undefined));
      await Promise.race([this.running, sleep(Math.max(0, deadline - Date.now()))]);
    }
    if (this.queue.length > 0) {
      this.logger.error(
        { sink: this.name, undelivered: this.queue.length },
        'audit sink closed with records undelivered',
      );
    }
    await this.onClose();
  }

  /** Subclasses release their connections here. */
  protected async onClose(): Promise<void> {}

  private trimQueue(): void {
    const excess = this.queue.length - this.settings.maxQueue;
    if (excess <= 0 || this.mode === 'required') return;
    this.queue.splice(0, excess);
    this.metrics?.dropped(this.name, excess);
    this.logger.error(
      { sink: this.name, dropped: excess },
      'audit sink queue full: dropped its oldest records',
    );
  }

  private kick(): void {
    if (this.running !== undefined || this.down !== undefined || this.closed) return;
    this.running = this.drain().finally(() => this.settle());
  }

  /** A run ended: records enqueued after its last look at the queue (their kick found it running) go now. */
  private settle(): void {
    this.running = undefined;
    if (this.queue.length > 0) this.kick();
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && this.down === undefined) {
      if (!(await this.sendNext())) return;
    }
  }

  /** Sends the head of the queue; false when it failed (and a retry is scheduled). */
  private async sendNext(): Promise<boolean> {
    const batch = this.queue.slice(0, this.settings.maxBatch);
    // Records this sink does not deliver are acknowledged in their place in the order.
    const wanted = batch.filter((record) => this.accepts(record));
    try {
      if (wanted.length > 0) await this.send(wanted);
    } catch (err) {
      this.noteFailure(err);
      return false;
    }
    this.queue.splice(0, batch.length);
    this.metrics?.delivered(this.name, wanted.length);
    this.noteRecovered();
    this.markDelivered((batch[batch.length - 1] as AuditRecord).seq);
    return true;
  }

  private markDelivered(seq: number): void {
    if (seq <= this.deliveredSeq) return;
    this.deliveredSeq = seq;
    const ready = this.waiters.filter((w) => w.seq <= seq);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => w.seq > seq);
    for (const waiter of ready) waiter.resolve();
  }

  private noteFailure(err: unknown): void {
    this.metrics?.failed(this.name);
    const cause = err instanceof Error ? err.message : String(err);
    if (this.down === undefined) {
      this.down = { since: Date.now(), cause, attempt: 0 };
      this.metrics?.up(this.name, false);
      const level = this.mode === 'required' ? 'error' : 'warn';
      this.logger[level](
        { sink: this.name, mode: this.mode, cause },
        'audit sink failing: records are queued and retried',
      );
    } else if (cause !== this.down.cause) {
      this.down.cause = cause;
      this.logger.warn({ sink: this.name, cause }, 'audit sink still failing, with another cause');
    }
    this.scheduleRetry();
  }

  private noteRecovered(): void {
    if (this.down === undefined) return;
    const downMs = Date.now() - this.down.since;
    this.down = undefined;
    this.metrics?.up(this.name, true);
    this.logger.info({ sink: this.name, down_ms: downMs }, 'audit sink recovered: delivering again');
  }

  private scheduleRetry(): void {
    const down = this.down;
    if (down === undefined || this.closed) return;
    const { baseDelayMs, maxDelayMs } = this.settings.retry;
    const delay = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(down.attempt, 20));
    down.attempt += 1;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.running ??= this.retry().finally(() => this.settle());
    }, delay);
    this.retryTimer.unref();
  }

  private async retry(): Promise<void> {
    if (this.closed || this.queue.length === 0) return;
    if (await this.sendNext()) await this.drain();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
