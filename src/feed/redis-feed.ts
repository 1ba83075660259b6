/**
 * The invalidation feed on a Redis Stream (`{prefix}:feed`). Each replica tails it with a blocking
 * XREAD on its own connection from the last id it processed, so after a reconnect it replays what
 * it missed; if the stream was trimmed past that id meanwhile, it resyncs its caches from the
 * stores. No pub/sub: the blocking read is the wake-up.
 *
 * Every read that returns (with entries or after blocking `blockMs` with none) confirms the
 * replica was up to date when the read began; `lastConfirmedAt` is what FeedFreshness measures.
 */
import type { Logger } from 'pino';
import { Cluster } from 'ioredis';
import type { RedisClient } from '../redis/connect.js';
import { invalidArgument, isBrokerError, unavailable } from '../errors.js';
import { hashTag } from '../redis/lua-scripts.js';
import type { FeedEntry, FeedListener, InvalidationFeed } from './types.js';

/** Approximate length the feed stream is trimmed to (the quarantine store's scripts trim it too). */
export const DEFAULT_FEED_MAX_LEN = 10_000;

export interface RedisInvalidationFeedOptions {
  prefix?: string;
  /** How long one blocking read waits for entries. Default 500 ms. */
  blockMs?: number;
  /** Approximate length the stream is trimmed to on publish. Default 10000. */
  maxLen?: number;
  logger?: Logger;
  now?: () => number;
}

type StreamReply = Array<[string, Array<[string, string[]]>]> | null;

/** Compares two stream ids (`<ms>-<seq>`). */
export function compareStreamIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split('-').map((p) => BigInt(p));
  const [bm = 0n, bs = 0n] = b.split('-').map((p) => BigInt(p));
  return am === bm ? (as === bs ? 0 : as < bs ? -1 : 1) : am < bm ? -1 : 1;
}

function entryOf(id: string, flat: string[]): FeedEntry {
  const fields: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
  const { kind = '', ...rest } = fields;
  return { id, kind, fields: rest };
}

export class RedisInvalidationFeed implements InvalidationFeed {
  private readonly key: string;
  private readonly blockMs: number;
  private readonly maxLen: number;
  private readonly now: () => number;
  private readonly listeners: FeedListener[] = [];
  private reader: RedisClient | undefined;
  private lastId = '0-0';
  private confirmedAt = 0;
  private closed = false;
  private loop: Promise<void> | undefined;

  /** `redis` is shared (publish, position); the blocking reads use a duplicate this feed owns. */
  constructor(
    private readonly redis: RedisClient,
    private readonly opts: RedisInvalidationFeedOptions = {},
  ) {
    this.key = `${hashTag(opts.prefix ?? 'svb', (m) => invalidArgument('prefix', m))}:feed`;
    this.blockMs = opts.blockMs ?? 500;
    this.maxLen = opts.maxLen ?? DEFAULT_FEED_MAX_LEN;
    this.now = opts.now ?? Date.now;
  }

  async publish(kind: string, fields: Record<string, string>): Promise<string> {
    const flat = Object.entries(fields).flat();
    try {
      const id = await this.redis.xadd(this.key, 'MAXLEN', '~', this.maxLen, '*', 'kind', kind, ...flat);
      return id ?? '';
    } catch (err) {
      throw unavailable('feed_unavailable', 'invalidation feed unavailable', err);
    }
  }

  listen(listener: FeedListener): void {
    this.listeners.push(listener);
  }

  async start(): Promise<void> {
    // Position first, then resync: whatever is appended in between is replayed, never lost.
    this.lastId = await this.tailId();
    await this.resync();
    this.confirmedAt = this.now();
    this.reader = this.openReader();
    this.reader.on('error', () => undefined);
    this.loop = this.run();
  }

  lastConfirmedAt(): number {
    return this.confirmedAt;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.reader?.disconnect();
    await this.loop;
  }

  /** A connection of its own: a blocking read would hold up every other command on a shared one. */
  private openReader(): RedisClient {
    // The reader waits in BLOCK; its timeout must outlast one read.
    const override = {
      commandTimeout: this.blockMs + 2000,
      enableOfflineQueue: true,
      enableAutoPipelining: false,
    };
    if (this.redis instanceof Cluster) {
      return this.redis.duplicate(undefined, {
        enableOfflineQueue: true,
        redisOptions: { ...this.redis.options.redisOptions, ...override },
      });
    }
    return this.redis.duplicate(override);
  }

  private async run(): Promise<void> {
    let failures = 0;
    let checkGap = false;
    while (!this.closed) {
      const readStart = this.now();
      try {
        if (checkGap) {
          await this.resyncIfTrimmed();
          checkGap = false;
        }
        const reply = (await this.reader?.xread(
          'COUNT',
          500,
          'BLOCK',
          this.blockMs,
          'STREAMS',
          this.key,
          this.lastId,
        )) as StreamReply;
        for (const [, entries] of reply ?? []) {
          for (const [id, flat] of entries) {
            const entry = entryOf(id, flat);
            for (const l of this.listeners) await l.onEntry(entry);
            this.lastId = id;
          }
        }
        this.confirmedAt = readStart;
        failures = 0;
      } catch (err) {
        if (this.closed) return;
        failures++;
        checkGap = true;
        if (failures === 1 || failures % 20 === 0) {
          this.opts.logger?.warn(
            { err: { message: isBrokerError(err) ? err.message : (err as Error).message }, failures },
            'invalidation feed read failed: retrying from the last position',
          );
        }
        await new Promise((r) => setTimeout(r, Math.min(100 * failures, 1000)));
      }
    }
  }

  /** After a gap in reading: if entries after lastId were trimmed away, reload every cache. */
  private async resyncIfTrimmed(): Promise<void> {
    const first = (await this.redis.xrange(this.key, '-', '+', 'COUNT', 1))[0];
    // An empty stream may have been trimmed past us too (XTRIM MAXLEN 0 takes every entry): then
    // its last generated id tells whether anything was appended after our position. A stream that
    // is gone altogether (data lost) after we had read from it is a gap as well.
    let gap: boolean;
    if (first) {
      gap = compareStreamIds(first[0], this.lastId) > 0;
    } else {
      const last = await this.lastGeneratedId();
      gap = last === undefined ? this.lastId !== '0-0' : compareStreamIds(last, this.lastId) > 0;
    }
    if (gap) {
      this.opts.logger?.warn(
        { lastId: this.lastId, first: first?.[0] },
        'invalidation feed trimmed past our position: resyncing',
      );
      await this.resync();
    }
  }

  /** The id XADD last generated on the stream, or undefined when there is no stream. */
  private async lastGeneratedId(): Promise<string | undefined> {
    let info: unknown;
    try {
      info = await this.redis.xinfo('STREAM', this.key);
    } catch (err) {
      if (err instanceof Error && /no such key/i.test(err.message)) return undefined;
      throw err;
    }
    const fields: unknown[] = Array.isArray(info) ? info : [];
    const at = fields.indexOf('last-generated-id');
    const id = at < 0 ? undefined : fields[at + 1];
    return typeof id === 'string' ? id : undefined;
  }

  private async resync(): Promise<void> {
    for (const l of this.listeners) await l.onResync();
  }

  private async tailId(): Promise<string> {
    try {
      const last = (await this.redis.xrevrange(this.key, '+', '-', 'COUNT', 1))[0];
      return last ? last[0] : '0-0';
    } catch (err) {
      throw unavailable('feed_unavailable', 'invalidation feed unavailable', err);
    }
  }
}
