/**
 * The webhook sink: every committed record, in chain order, POSTed to an HTTP receiver as
 * CloudEvents (batch or structured mode, or Splunk HEC's shape), each body HMAC-signed.
 *
 * Records are appended to the sink's spool before they are sent and leave it once the receiver
 * answered 2xx, so a receiver that is down, or a broker restart while it is, loses nothing: the
 * spool is replayed first, in order. Delivery is at least once (a crash between the receiver's 2xx
 * and the spool's update sends a record again); each record's `id` lets a receiver de-duplicate.
 *
 * Every non-2xx answer is a failure, retried with backoff (QueuedFollower): 3xx (redirects are not
 * followed), 408, 429, 5xx, and 4xx too: a receiver that rejects a batch must not lose it silently,
 * so it stays queued and spooled, every attempt is counted (`failed`), and the sink's health names
 * the status until the receiver takes it.
 */
import { readFileSync } from 'node:fs';
import type { AuditSinkConfig } from '../../config/audit-schema.js';
import { QueuedFollower, type FollowerLogger, type FollowerMetrics } from '../follower.js';
import type { AuditRecord } from '../types.js';
import { closeWithin, httpReceiver, postBody, type HttpReceiver } from './http-post.js';
import { SIGNATURE_HEADER, signBody, webhookBodies, type WebhookFormat } from './webhook-body.js';
import { WebhookSpool } from './webhook-spool.js';

export type WebhookSinkConfig = Extract<AuditSinkConfig, { type: 'webhook' }>;

export interface WebhookSinkOptions {
  name: string;
  mode: WebhookSinkConfig['mode'];
  receiver: HttpReceiver;
  format: WebhookFormat;
  hmacKey: Buffer;
  /** Format splunk_hec: sent as `Authorization: Splunk <token>`. */
  splunkToken?: string;
  spoolDir: string;
  batchMaxRecords: number;
  batchMaxWaitMs: number;
  timeoutMs: number;
  logger?: FollowerLogger;
  metrics?: FollowerMetrics;
  /** Backoff between failed POSTs (tests shorten it). */
  retry?: { baseDelayMs: number; maxDelayMs: number };
  /** How long close() keeps delivering (default 2 s); what is left stays spooled. */
  closeTimeoutMs?: number;
  /** epoch ms, for the signature's timestamp */
  now?: () => number;
}

export class WebhookSink extends QueuedFollower {
  private readonly spool: WebhookSpool;
  /** Records waiting for a fuller batch (at most batchMaxWaitMs). */
  private lingering: AuditRecord[] = [];
  private lingerTimer: NodeJS.Timeout | undefined;
  /** Highest seq the receiver took (a structured batch that failed half-way resumes after it). */
  private postedSeq = 0;
  /** 4xx answers other than 408 and 429: the receiver refused what it got (counted, retried). */
  private rejected = 0;
  /** Fired when close() has waited long enough: a POST still in flight is abandoned (it stays spooled). */
  private readonly cancel = new AbortController();

  constructor(private readonly opts: WebhookSinkOptions) {
    super({
      name: opts.name,
      mode: opts.mode,
      maxBatch: opts.batchMaxRecords,
      ...(opts.retry ? { retry: opts.retry } : {}),
      ...(opts.closeTimeoutMs !== undefined ? { closeTimeoutMs: opts.closeTimeoutMs } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
    });
    this.spool = new WebhookSpool(opts.spoolDir);
    const { records, tornBytes } = this.spool.open();
    if (tornBytes > 0) {
      this.logger.warn({ sink: opts.name, torn_bytes: tornBytes }, 'webhook spool: dropped a torn last line');
    }
    if (records.length > 0) {
      this.logger.info({ sink: opts.name, records: records.length }, 'webhook spool: replaying');
      super.enqueue(records);
    }
  }

  /** Spooled first (synchronously), then sent once a batch is full or has waited batchMaxWaitMs. */
  override enqueue(records: readonly AuditRecord[]): void {
    try {
      this.spool.append(records);
    } catch (err) {
      // Still sent from memory; only a restart before delivery would lose them.
      this.logger.error(
        { sink: this.name, err: { message: (err as Error).message } },
        'webhook spool: append failed',
      );
    }
    this.lingering.push(...records);
    if (this.lingering.length >= this.opts.batchMaxRecords || this.opts.batchMaxWaitMs === 0) {
      this.flushLingering();
    } else {
      this.lingerTimer ??= setTimeout(() => this.flushLingering(), this.opts.batchMaxWaitMs).unref();
    }
  }

  /** Records spooled and not yet acknowledged by the receiver. */
  get spooled(): number {
    return this.spool.size;
  }

  /** POSTs the receiver refused with a 4xx other than 408 and 429 (each was retried). */
  get rejections(): number {
    return this.rejected;
  }

  protected override async send(batch: readonly AuditRecord[]): Promise<void> {
    const unsent = batch.filter((r) => r.seq > this.postedSeq);
    for (const { body, contentType, last } of this.bodies(unsent)) {
      await this.post(body, contentType);
      this.postedSeq = Math.max(this.postedSeq, last);
      this.acknowledgeSpooled(last);
    }
  }

  /** The receiver has them: they leave the spool (if that fails, a restart sends them again). */
  private acknowledgeSpooled(seq: number): void {
    try {
      this.spool.acknowledge(seq);
    } catch (err) {
      this.logger.error(
        { sink: this.name, err: { message: (err as Error).message } },
        'webhook spool: acknowledgement not saved: a restart sends these records again',
      );
    }
  }

  protected override async onClose(): Promise<void> {
    clearTimeout(this.lingerTimer);
    this.spool.close();
  }

  override async close(): Promise<void> {
    this.flushLingering();
    await closeWithin(this.opts.closeTimeoutMs ?? 2000, this.cancel, () => super.close());
  }

  private flushLingering(): void {
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (this.lingering.length === 0) return;
    const records = this.lingering;
    this.lingering = [];
    super.enqueue(records);
  }

  /** The bodies for `records`, each with the last seq it carries. */
  private bodies(
    records: readonly AuditRecord[],
  ): Array<{ body: string; contentType: string; last: number }> {
    if (records.length === 0) return [];
    const bodies = webhookBodies(this.opts.format, records);
    // structured: one body per record; otherwise one body for all of them.
    return bodies.map((b, i) => ({
      ...b,
      last: (records[bodies.length === 1 ? records.length - 1 : i] as AuditRecord).seq,
    }));
  }

  private async post(body: string, contentType: string): Promise<void> {
    const now = Math.floor((this.opts.now ?? Date.now)() / 1000);
    const headers: Record<string, string> = {
      'content-type': contentType,
      [SIGNATURE_HEADER]: signBody(this.opts.hmacKey, body, now),
      ...(this.opts.splunkToken !== undefined ? { authorization: `Splunk ${this.opts.splunkToken}` } : {}),
    };
    const answer = await postBody(this.opts.receiver, body, headers, this.opts.timeoutMs, this.cancel.signal);
    if (answer.status >= 200 && answer.status < 300) return;
    if (isRejection(answer.status)) this.rejected += 1;
    throw new Error(`receiver answered HTTP ${answer.status}${describeStatus(answer.status)}`);
  }
}

/** 4xx other than 408 and 429: the receiver refuses the batch itself (retrying may not help). */
function isRejection(status: number): boolean {
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

function describeStatus(status: number): string {
  if (status >= 300 && status < 400) return ' (a redirect: not followed)';
  if (isRejection(status)) return ' (rejected: kept and retried until the receiver takes it)';
  return '';
}

/** Builds the sink `audit.sinks[i]` describes; reads its key files now (a missing one stops startup). */
export function createWebhookSink(
  config: WebhookSinkConfig,
  name: string,
  auditFile: string,
  deps: { logger: FollowerLogger; metrics?: FollowerMetrics },
): WebhookSink {
  const what = `audit sink ${name}`;
  if (config.format === 'splunk_hec' && config.splunkTokenFile === undefined) {
    throw new Error(`${what}: format splunk_hec needs splunkTokenFile`);
  }
  return new WebhookSink({
    name,
    mode: config.mode,
    receiver: httpReceiver(config.url, config.caFile, what),
    format: config.format,
    hmacKey: readKeyFile(config.hmacKeyFile, `${what}: hmacKeyFile`),
    ...(config.splunkTokenFile !== undefined
      ? { splunkToken: readKeyFile(config.splunkTokenFile, `${what}: splunkTokenFile`).toString('utf8') }
      : {}),
    spoolDir: config.spoolDir ?? `${auditFile}.spool/${name.replace(/[^a-z0-9_-]/g, '-')}`,
    batchMaxRecords: config.batchMaxRecords,
    batchMaxWaitMs: config.batchMaxWaitMs,
    timeoutMs: config.timeoutMs,
    logger: deps.logger,
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
  });
}

/** A secret file's content, trailing whitespace removed; at least 16 bytes. */
function readKeyFile(file: string, what: string): Buffer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trimEnd();
  } catch (err) {
    throw new Error(`${what}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (Buffer.byteLength(text) < 16) throw new Error(`${what}: ${file} holds fewer than 16 bytes`);
  return Buffer.from(text, 'utf8');
}
