/**
 * Token buckets keyed by peer address: each key holds up to `burst` tokens and regains
 * `ratePerSecond` of them per second. Memory is bounded: past `maxKeys`, the key tracked longest is
 * forgotten (it starts again with a full bucket, which only ever lets a peer through).
 */
export interface TokenBucketOptions {
  ratePerSecond: number;
  burst: number;
  maxKeys: number;
  now: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly opts: TokenBucketOptions) {}

  /** Whether `key` has a token now, without taking it. */
  has(key: string): boolean {
    return this.level(key) >= 1;
  }

  /** Takes one token of `key`; false (and nothing taken) when it has none. */
  take(key: string): boolean {
    const tokens = this.level(key);
    if (tokens < 1) return false;
    if (!this.buckets.has(key) && this.buckets.size >= this.opts.maxKeys) {
      this.buckets.delete(this.buckets.keys().next().value as string);
    }
    this.buckets.set(key, { tokens: tokens - 1, at: this.opts.now() });
    return true;
  }

  /** Keys tracked now (for tests and the bound). */
  get size(): number {
    return this.buckets.size;
  }

  private level(key: string): number {
    const b = this.buckets.get(key);
    if (!b) return this.opts.burst;
    const refilled = b.tokens + ((this.opts.now() - b.at) / 1000) * this.opts.ratePerSecond;
    if (refilled >= this.opts.burst) {
      // Full again: the same as never seen, so it need not be remembered.
      this.buckets.delete(key);
      return this.opts.burst;
    }
    return refilled;
  }
}
