/**
 * The Redis Stream follower: each committed record becomes one stream entry
 * (`XADD <key> MAXLEN ~ <maxLen> * …`), in chain order, for consumer groups to read. A batch is
 * one MULTI/EXEC on the one key (one slot, so it works the same on a Redis Cluster). Each entry
 * carries the record's CloudEvent JSON (`event`) and, for filtering without parsing it, `source`,
 * `seq`, `type` and `hash`. A signed checkpoint is an entry `kind checkpoint`, `note <note>`, sent
 * in its place among the records.
 */
import type { RedisClient } from '../../redis/connect.js';
import { toCloudEvent } from '../cloudevent.js';
import { QueuedFollower, type FollowerLogger, type FollowerMetrics, type SinkMode } from '../follower.js';
import type { AuditRecord } from '../types.js';

export interface RedisStreamSinkOptions {
  name: string;
  mode: SinkMode;
  key: string;
  maxLen: number;
  redis: RedisClient;
  logger?: FollowerLogger;
  metrics?: FollowerMetrics;
  retry?: { baseDelayMs: number; maxDelayMs: number };
}

/** The field/value pairs of one record's stream entry. */
export function recordEntryFields(record: AuditRecord): string[] {
  return [
    'kind',
    'record',
    'event',
    JSON.stringify(toCloudEvent(record)),
    'source',
    record.source,
    'seq',
    String(record.seq),
    'type',
    record.type,
    'hash',
    record.hash,
  ];
}

/** A checkpoint travels in the record queue, after the record it covers (never sent as a record). */
interface CheckpointMarker {
  readonly checkpointNote: string;
}

type Queued = AuditRecord & Partial<CheckpointMarker>;

export class RedisStreamSink extends QueuedFollower {
  private readonly key: string;
  private readonly maxLen: string;
  private readonly redis: RedisClient;
  private lastSeq = 0;

  constructor(opts: RedisStreamSinkOptions) {
    super({
      name: opts.name,
      mode: opts.mode,
      ...(opts.logger ? { logger: opts.logger } : {}),
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
      ...(opts.retry ? { retry: opts.retry } : {}),
    });
    this.key = opts.key;
    this.maxLen = String(opts.maxLen);
    this.redis = opts.redis;
  }

  override enqueue(records: readonly AuditRecord[]): void {
    const last = records[records.length - 1];
    if (last !== undefined) this.lastSeq = last.seq;
    super.enqueue(records);
  }

  /**
   * Queues the note after the last record enqueued, so the stream holds it after the records it
   * covers. It rides the queue as a pseudo-record with that record's seq (acknowledging it
   * acknowledges nothing new).
   */
  publishCheckpoint(note: string): void {
    const marker = { seq: this.lastSeq, checkpointNote: note } as unknown as AuditRecord;
    super.enqueue([marker]);
  }

  protected async send(batch: readonly AuditRecord[]): Promise<void> {
    const multi = this.redis.multi();
    for (const item of batch as readonly Queued[]) {
      const fields =
        item.checkpointNote !== undefined
          ? ['kind', 'checkpoint', 'note', item.checkpointNote]
          : recordEntryFields(item);
      multi.xadd(this.key, 'MAXLEN', '~', this.maxLen, '*', ...fields);
    }
    const replies = await multi.exec();
    if (replies === null) throw new Error('redis stream: transaction aborted');
    const failed = replies.find(([err]) => err !== null);
    if (failed) throw failed[0] as Error;
  }
}

/** The sink `audit.sinks[]` type redis_stream describes, on the broker's own Redis connection. */
export function redisStreamFollower(
  sink: { mode: SinkMode; key: string; maxLen: number },
  name: string,
  deps: { redis: RedisClient | undefined; logger: FollowerLogger; metrics?: FollowerMetrics | undefined },
): RedisStreamSink {
  if (deps.redis === undefined) {
    throw new Error(
      `audit sink ${name}: a redis_stream sink needs Redis (redis.url, redis.sentinels or redis.cluster); the in-process dev store has none`,
    );
  }
  return new RedisStreamSink({
    name,
    mode: sink.mode,
    key: sink.key,
    maxLen: sink.maxLen,
    redis: deps.redis,
    logger: deps.logger,
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
  });
}
