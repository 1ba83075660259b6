/**
 * One JWKS for every replica. Each replica signs with its own keys, whose private halves never
 * leave its memory (they are non-extractable); their public halves are published in Redis, and
 * every replica's `/.well-known/jwks.json` serves the union. So a verifier may fetch the JWKS from
 * any replica and still verify a token another replica signed.
 *
 * `{svb}:jwks` (hash kid -> sealed entry): each entry's payload is JSON `{jwk, until}`, sealed with
 * the publishing broker's X.509-SVID (src/identity/svid-seal.ts). A key stays published until
 * `until`, which each publish pushes to now + the ring's overlap + the refresh period. A replica
 * that dies stops refreshing, and its keys drop out once the tokens they signed have expired (the
 * overlap is at least the longest token TTL).
 *
 * Only entries that open (signed by an allowed broker whose chain verifies against the trust
 * bundle) are served: anything else written into the hash is ignored and reported once. Every
 * publish re-seals this replica's own entries with its current SVID, and re-seals a live entry of
 * another replica (one that still opens) whose signature would expire before the entry does, so a
 * dead replica's keys stay served for their whole overlap. Results of opening are cached per
 * entry for one refresh period, so the unauthenticated JWKS endpoint costs a hash read, not a
 * chain verification.
 */
import type { Logger } from 'pino';
import { invalidArgument } from '../../errors.js';
import { SealRefused, type EntrySeal, type RefusedEntry } from '../../identity/svid-seal.js';
import type { RedisClient } from '../../redis/connect.js';
import { hashTag } from '../../redis/lua-scripts.js';
import type { PublicSigningJwk, SigningKeyRing } from './signing-keys.js';

export interface SharedJwksOptions {
  prefix: string;
  /** How often this replica republishes its keys (and prunes expired entries). Default 60 s. */
  refreshMs?: number;
  /** Seals this replica's entries and opens everyone's. */
  seal: EntrySeal;
  /** Called once per distinct refused entry (per process). */
  onRefused: (entry: RefusedEntry) => void;
  logger: Logger;
  now?: () => number;
}

interface Served {
  jwk: PublicSigningJwk;
  until: number;
  /** The exact signed payload, for re-sealing. */
  payload: string;
  signer: string;
  signatureExpiresAt: number;
}

type Checked = { ok: true; entry: Served } | { ok: false };

export class SharedJwks {
  private readonly key: string;
  private readonly refreshMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  /** raw entry -> what opening it gave, and when (re-opened after a refresh period). */
  private readonly checked = new Map<string, { at: number; result: Promise<Checked> }>();
  /** Raw entries already reported as refused (each is reported once while it stays in Redis). */
  private readonly reported = new Set<string>();

  constructor(
    private readonly redis: RedisClient,
    private readonly ring: SigningKeyRing,
    private readonly opts: SharedJwksOptions,
  ) {
    this.key = `${hashTag(opts.prefix, (m) => invalidArgument('prefix', m))}:jwks`;
    this.refreshMs = opts.refreshMs ?? 60_000;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Publishes this replica's public keys now (sealed with its current SVID), re-seals other
   * replicas' live entries whose signatures are about to expire, and drops entries past `until`.
   */
  async publish(): Promise<void> {
    const now = this.now();
    const until = now + this.ring.overlapSeconds * 1000 + 2 * this.refreshMs;
    const own = this.ring.jwks().keys;
    const fields: string[] = [];
    for (const jwk of own) fields.push(jwk.kid, await this.opts.seal.seal(JSON.stringify({ jwk, until })));
    const stored = await this.redis.hgetall(this.key);
    const stale: string[] = [];
    const ownKids = new Set(own.map((k) => k.kid));
    for (const [kid, raw] of Object.entries(stored)) {
      if (ownKids.has(kid)) continue;
      if ((untilOf(raw) ?? 0) <= now) {
        stale.push(kid);
        continue;
      }
      const checked = await this.check(kid, raw, true);
      // Re-sealed by us before its signature lapses, so it keeps verifying until `until`.
      if (
        checked.ok &&
        checked.entry.signatureExpiresAt < Math.min(checked.entry.until, now + 2 * this.refreshMs)
      ) {
        fields.push(kid, await this.opts.seal.seal(checked.entry.payload));
      }
    }
    const tx = this.redis.multi().hset(this.key, ...fields);
    if (stale.length) tx.hdel(this.key, ...stale);
    await tx.exec();
    this.forgetAbsent(stored);
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
   * The union of every replica's published keys that open, and this replica's own (which are
   * served even when Redis is unreachable: a JWKS without our own keys would break our own tokens).
   */
  async jwks(): Promise<{ keys: PublicSigningJwk[] }> {
    const own = this.ring.jwks().keys;
    const byKid = new Map(own.map((k) => [k.kid, k]));
    try {
      const now = this.now();
      const stored = await this.redis.hgetall(this.key);
      for (const [kid, raw] of Object.entries(stored)) {
        if (byKid.has(kid)) continue;
        const checked = await this.check(kid, raw, false);
        if (checked.ok && checked.entry.until > now && checked.entry.signatureExpiresAt > now) {
          byKid.set(kid, checked.entry.jwk);
        }
      }
      this.forgetAbsent(stored);
    } catch (err) {
      this.opts.logger.warn(
        { err: { message: (err as Error).message } },
        'shared JWKS unavailable: own keys only',
      );
    }
    return { keys: [...byKid.values()] };
  }

  /** Opens one entry, at most once per refresh period unless `fresh`; reports a refusal once. */
  private check(kid: string, raw: string, fresh: boolean): Promise<Checked> {
    const now = this.now();
    // Keyed by kid and text: the same sealed text stored under another kid is another entry
    // (and refused: its payload names a different kid).
    const key = cacheKey(kid, raw);
    const cached = this.checked.get(key);
    if (cached !== undefined && !fresh && now - cached.at < this.refreshMs) return cached.result;
    const result = this.open(kid, raw).then(
      (entry): Checked => ({ ok: true, entry }),
      (err: unknown): Checked => {
        // Reported the first time this exact entry is refused, not on every JWKS request.
        if (!this.reported.has(key)) {
          this.reported.add(key);
          this.report(kid, err);
        }
        return { ok: false };
      },
    );
    this.checked.set(key, { at: now, result });
    return result;
  }

  private async open(kid: string, raw: string): Promise<Served> {
    const opened = await this.opts.seal.open(raw);
    const entry = parsePayload(opened.payload);
    if (entry === undefined || entry.jwk.kid !== kid) {
      throw new SealRefused('malformed', 'payload is not {jwk, until} for this kid', opened.signer);
    }
    return { ...entry, payload: opened.payload, signer: opened.signer, signatureExpiresAt: opened.expiresAt };
  }

  private report(kid: string, err: unknown): void {
    const refusal = err instanceof SealRefused ? err : new SealRefused('malformed', String(err));
    this.opts.onRefused({
      kind: 'jwks',
      key: `${this.key}/${kid}`,
      reason: refusal.reason,
      ...(refusal.signer === undefined ? {} : { signer: refusal.signer }),
      message: refusal.message,
    });
  }

  /** Keeps the cache to what Redis holds now (`stored`: the hash as read). */
  private forgetAbsent(stored: Record<string, string>): void {
    const present = new Set(Object.entries(stored).map(([kid, raw]) => cacheKey(kid, raw)));
    for (const key of this.checked.keys()) if (!present.has(key)) this.checked.delete(key);
    for (const key of this.reported) if (!present.has(key)) this.reported.delete(key);
  }
}

function cacheKey(kid: string, raw: string): string {
  return `${kid}\n${raw}`;
}

/** `until` of an entry without opening it: enough to prune an expired one, never to serve it. */
function untilOf(raw: string): number | undefined {
  try {
    const envelope = JSON.parse(raw) as { payload?: unknown; until?: unknown };
    const body = typeof envelope.payload === 'string' ? (JSON.parse(envelope.payload) as unknown) : envelope;
    const until = (body as { until?: unknown } | null)?.until;
    return typeof until === 'number' ? until : undefined;
  } catch {
    return undefined;
  }
}

function parsePayload(payload: string): { jwk: PublicSigningJwk; until: number } | undefined {
  try {
    const parsed = JSON.parse(payload) as { jwk?: PublicSigningJwk; until?: number };
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
