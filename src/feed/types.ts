/**
 * The invalidation feed: how a change made on one replica (a quarantine, a policy set) reaches the
 * caches of every other replica. On Redis it is a Stream each replica tails from its last position,
 * replaying what it missed after a reconnect; when the stream was trimmed past that position, the
 * replica resyncs its caches from the stores instead. A replica that cannot confirm the feed for
 * longer than its bound is stale and must fail closed (see FeedFreshness).
 */
export interface FeedEntry {
  /** Stream id (`<ms>-<seq>`). */
  id: string;
  /** `quarantine`, `policy`, ... */
  kind: string;
  fields: Record<string, string>;
}

export interface FeedListener {
  /** One entry, in stream order. */
  onEntry(entry: FeedEntry): Promise<void> | void;
  /** The reader may have missed entries (first start, trimmed stream): reload everything. */
  onResync(): Promise<void>;
}

export interface InvalidationFeed {
  /** Appends an entry (other stores may append inside their own Lua scripts instead). */
  publish(kind: string, fields: Record<string, string>): Promise<string>;
  /** Registers a listener; call before start(). */
  listen(listener: FeedListener): void;
  /** Resyncs every listener, then tails the feed in the background. Rejects if the first resync fails. */
  start(): Promise<void>;
  /** Epoch ms of the last read that confirmed the reader was up to date (0: never). */
  lastConfirmedAt(): number;
  close(): Promise<void>;
}

/**
 * Whether this replica may still decide: true while the feed was confirmed within `staleAfterMs`.
 * Every decision that rests on a cache (quarantines) checks it; a stale replica answers UNAVAILABLE.
 */
export class FeedFreshness {
  /** `clock` must be the feed's own (wall time), whatever clock decides task and lease expiry. */
  constructor(
    private readonly feed: Pick<InvalidationFeed, 'lastConfirmedAt'>,
    readonly staleAfterMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Milliseconds since the feed was last confirmed (Infinity before the first read). */
  lagMs(): number {
    const at = this.feed.lastConfirmedAt();
    return at === 0 ? Number.POSITIVE_INFINITY : Math.max(0, this.clock() - at);
  }

  fresh(): boolean {
    return this.lagMs() <= this.staleAfterMs;
  }
}
