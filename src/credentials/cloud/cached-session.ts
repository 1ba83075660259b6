/**
 * The broker's own federated session with a cloud (the AWS web-identity session; Google's federated
 * token is cached by google-auth-library): fetched once, shared by every request, refreshed shortly
 * before it expires (or when the cloud says it expired), never per request. Concurrent callers
 * share one refresh.
 */
export interface Expiring<T> {
  value: T;
  /** epoch ms */
  expiresAt: number;
}

export interface CachedSessionOptions<T> {
  fetch: () => Promise<Expiring<T>>;
  /** Refresh this long before expiry (default 5 min, at most half the session's life). */
  refreshMarginMs?: number;
  now?: () => number;
}

export class CachedSession<T> {
  private current: Expiring<T> | undefined;
  private issuedAt = 0;
  private inflight: Promise<Expiring<T>> | undefined;
  private readonly now: () => number;

  constructor(private readonly opts: CachedSessionOptions<T>) {
    this.now = opts.now ?? Date.now;
  }

  async get(): Promise<T> {
    const c = this.current;
    if (c && this.now() < c.expiresAt - this.margin(c)) return c.value;
    return (await this.refresh()).value;
  }

  /** Drops the session (the cloud rejected it as expired); the next get() fetches a new one. */
  invalidate(stale?: T): void {
    if (stale === undefined || this.current?.value === stale) this.current = undefined;
  }

  private margin(c: Expiring<T>): number {
    const life = c.expiresAt - this.issuedAt;
    return Math.min(this.opts.refreshMarginMs ?? 300_000, Math.floor(life / 2));
  }

  private refresh(): Promise<Expiring<T>> {
    this.inflight ??= (async () => {
      try {
        const startedAt = this.now();
        const fresh = await this.opts.fetch();
        this.current = fresh;
        this.issuedAt = startedAt;
        return fresh;
      } finally {
        this.inflight = undefined;
      }
    })();
    return this.inflight;
  }
}
