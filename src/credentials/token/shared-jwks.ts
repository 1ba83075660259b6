/**
 * One JWKS for every replica. Each replica signs with its own keys, whose private halves never
 * leave its memory (they are non-extractable); their public halves are published in Redis, and
 * every replica's `/.well-known/jwks.json` serves the union. So a verifier may fetch the JWKS from
 * any replica and still verify a token another replica signed.
 *
 * `{svb}:jwks` (hash kid -> JSON {jwk, until}): a key stays published until `until`, which each
 * publish pushes to now + the ring's overlap + the refresh period. A replica that dies stops
 * refreshing, and its keys drop out once the tokens they signed have expired (the overlap is at
 * least the longest token TTL).
 */
import type { Logger } from 'pino';
import { invalidArgument } from '../../errors.js';
import type { RedisClient } from '../../redis/connect.js';
import { hashTag } from '../../redis/lua-scripts.js';
import type { PublicSigningJwk, SigningKeyRing } from './signing-keys.js';

export interface SharedJwksOptions {
  prefix: string;
  /** How often this replica republishes its keys (and prunes expired entries). Default 60 s. */
  refreshMs?: number;
  logger: Logger;
  now?: () => number;
}

export class SharedJwks {
  private readonly key: string;
  private readonly refreshMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly ring: SigningKeyRing,
    private readonly opts: SharedJwksOptions,
  ) {
    this.key = `${hashTag(opts.prefix, (m) => invalidArgument('prefix', m))}:jwks`;
    this.refreshMs = opts.refreshMs ?? 60_000;
    this.now = opts.now ?? Date.now;
  }

  /** Publishes this replica's public keys now and drops entries past their `until`. */
  async publish(): Promise<void> {
    const now = this.now();
    const until = now + this.ring.overlapSeconds * 1000 + 2 * this.refreshMs;
    const fields = this.ring.jwks().keys.flatMap((jwk) => [jwk.kid, JSON.stringify({ jwk, until })]);
    const stale = Object.entries(await this.redis.hgetall(this.key))
      .filter(([, raw]) => (parseEntry(raw)?.until ?? 0) <= now)
      .map(([kid]) => kid);
    const tx = this.redis.multi().hset(this.key, ...fields);
    if (stale.length) tx.hdel(this.key, ...stale);
    await tx.exec();
  }

  /** Republishes every refreshMs until stop(); failures are logged and retried on the next tick. */
  start(): void {
    this.stop();
    this.timer = setInterval(() => {
      this.publish().catch((err: unknown) =>
        this.opts.logger.warn({ err: { message: (err as Error).message } }, 'JWKS publish failed'),
      );
    }, this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * The union of every replica's published keys and this replica's own (which are served even
   * when Redis is unreachable: a JWKS without our own keys would break our own tokens).
   */
  async jwks(): Promise<{ keys: PublicSigningJwk[] }> {
    const own = this.ring.jwks().keys;
    const byKid = new Map(own.map((k) => [k.kid, k]));
    try {
      const now = this.now();
      for (const raw of Object.values(await this.redis.hgetall(this.key))) {
        const entry = parseEntry(raw);
        if (entry && entry.until > now && !byKid.has(entry.jwk.kid)) byKid.set(entry.jwk.kid, entry.jwk);
      }
    } catch (err) {
      this.opts.logger.warn(
        { err: { message: (err as Error).message } },
        'shared JWKS unavailable: own keys only',
      );
    }
    return { keys: [...byKid.values()] };
  }
}

function parseEntry(raw: string): { jwk: PublicSigningJwk; until: number } | undefined {
  try {
    const parsed = JSON.parse(raw) as { jwk?: PublicSigningJwk; until?: number };
    const jwk = parsed.jwk;
    if (!jwk || typeof jwk.kid !== 'string' || typeof parsed.until !== 'number') return undefined;
    // Only the public members of an EC P-256 key: nothing else is ever served.
    if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.x !== 'string' || typeof jwk.y !== 'string') {
      return undefined;
    }
    return {
      jwk: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid: jwk.kid, alg: 'ES256', use: 'sig' },
      until: parsed.until,
    };
  } catch {
    return undefined;
  }
}
