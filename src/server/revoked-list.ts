/**
 * GET /v1/revoked: the jtis of revoked broker tokens that verifiers must refuse, paged from the
 * token deny list (LeaseStore.listRevokedTokens, O(log N + page) in Redis), with a short per-replica
 * cache so a crowd of unauthenticated callers costs Redis one read per page per cache period.
 */
import type { LeaseStore, RevokedToken } from '../leases/types.js';

export interface RevokedListOptions {
  store: Pick<LeaseStore, 'listRevokedTokens'>;
  /** Verifiers' maximum clock skew: an entry stays listed until its token's exp plus this. */
  clockSkewMs: number;
  /** How long one page is served from this replica's memory. */
  cacheMs: number;
  defaultPageSize: number;
  maxPageSize: number;
  now?: () => number;
}

/** The JSON body of one page. */
export interface RevokedPageBody {
  generated_at: string;
  revoked: Array<{ jti: string; exp: number }>;
  /** Pass as `?cursor=` for the next page; null on the last page. */
  next_cursor: string | null;
}

/** A query the route answers with 400, naming the parameter. */
export class RevokedQueryError extends Error {
  constructor(
    readonly param: string,
    message: string,
  ) {
    super(`${param}: ${message}`);
  }
}

interface CachedPage {
  at: number;
  body: Promise<RevokedPageBody>;
}

/** Distinct pages kept at once; a caller inventing cursors cannot grow the cache past this. */
const MAX_CACHED_PAGES = 1024;

export class RevokedList {
  private readonly cache = new Map<string, CachedPage>();
  private readonly now: () => number;

  constructor(private readonly opts: RevokedListOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** One page for `?limit=N&cursor=C`; concurrent callers of the same page share one store read. */
  page(query: URLSearchParams): Promise<RevokedPageBody> {
    const limit = this.limitOf(query.get('limit'));
    const cursor = query.get('cursor') ?? '';
    const after = cursor === '' ? undefined : decodeCursor(cursor);
    const key = `${limit}|${cursor}`;
    const now = this.now();
    const cached = this.cache.get(key);
    if (cached && now - cached.at < this.opts.cacheMs) return cached.body;
    const body = this.read(now, limit, after);
    this.remember(key, { at: now, body }, now);
    // A failed read is not served to the next caller.
    body.catch(() => {
      if (this.cache.get(key)?.body === body) this.cache.delete(key);
    });
    return body;
  }

  private async read(now: number, limit: number, after: RevokedToken | undefined): Promise<RevokedPageBody> {
    const tokens = await this.opts.store.listRevokedTokens(now - this.opts.clockSkewMs, {
      ...(after ? { after } : {}),
      limit,
    });
    const last = tokens.length === limit ? tokens[tokens.length - 1] : undefined;
    return {
      generated_at: new Date(now).toISOString(),
      revoked: tokens.map((t) => ({ jti: t.jti, exp: Math.floor(t.expiresAt / 1000) })),
      next_cursor: last ? encodeCursor(last) : null,
    };
  }

  private remember(key: string, page: CachedPage, now: number): void {
    if (this.cache.size >= MAX_CACHED_PAGES) {
      for (const [k, v] of this.cache) if (now - v.at >= this.opts.cacheMs) this.cache.delete(k);
    }
    // Still full of fresh pages: drop the oldest (a Map iterates in insertion order).
    if (this.cache.size >= MAX_CACHED_PAGES) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.delete(key);
    this.cache.set(key, page);
  }

  private limitOf(raw: string | null): number {
    if (raw === null || raw === '') return this.opts.defaultPageSize;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < 1 || n > this.opts.maxPageSize) {
      throw new RevokedQueryError('limit', `must be an integer from 1 to ${this.opts.maxPageSize}`);
    }
    return n;
  }
}

/** Opaque to callers: base64url of `<expiresAt ms>.<jti>` of a page's last entry. */
function encodeCursor(t: RevokedToken): string {
  return Buffer.from(`${t.expiresAt}.${t.jti}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): RevokedToken {
  const text = /^[A-Za-z0-9_-]{1,400}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const match = /^(\d{1,16})\.([\x21-\x7e]{1,256})$/.exec(text);
  const expiresAt = Number(match?.[1]);
  if (!match || !Number.isSafeInteger(expiresAt)) {
    throw new RevokedQueryError('cursor', 'is not a next_cursor this endpoint handed out');
  }
  return { jti: match[2] as string, expiresAt };
}
