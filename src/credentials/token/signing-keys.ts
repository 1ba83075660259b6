/**
 * The broker's own token-signing keys: one current ES256 key plus recently replaced ones, which
 * stay published in the JWKS until every token they signed has expired.
 *
 * Private keys are generated non-extractable: WebCrypto itself then refuses to export them, so no
 * code path (a debug log, a serialiser, an exportJWK call) can leak key material. The public half
 * is always exportable, which is all the JWKS needs. The cost is that keys live and die with the
 * process: after a restart, tokens signed before it no longer verify.
 */
import { KeyObject, sign } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey } from 'jose';

/** A type alias, not an interface, so it is assignable to `Record<string, unknown>` (JSON-shaped) consumers. */
export type PublicSigningJwk = {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
  kid: string;
  alg: 'ES256';
  use: 'sig';
};

/** What a signer needs. `privateKey` is a non-extractable CryptoKey: usable, never exportable. */
export interface SigningKey {
  readonly kid: string;
  readonly alg: 'ES256';
  readonly privateKey: CryptoKey;
  /**
   * An ES256 signature (IEEE P1363, r || s, as JWS wants) over `input` with node's crypto and the
   * key's KeyObject, cached once: WebCrypto costs about three times as much per token. The
   * KeyObject lives only in this closure (a KeyObject would export), never on an object a
   * serialiser or a log could reach.
   */
  readonly sign: (input: Buffer) => Buffer;
}

export interface SigningKeyRingOptions {
  /**
   * How long a replaced key stays published. Must be at least the longest token TTL plus the
   * clock skew verifiers allow, or tokens outlive the key that verifies them.
   */
  overlapSeconds: number;
  /** epoch ms */
  now?: () => number;
}

interface RingEntry {
  key: SigningKey;
  publicJwk: PublicSigningJwk;
  createdAt: number;
  /** When a newer key replaced this one (epoch ms). */
  retiredAt?: number;
}

export class SigningKeyRing {
  readonly overlapSeconds: number;
  readonly #now: () => number;
  /** Oldest first; the last entry is the current key. */
  #entries: RingEntry[];
  #timer: NodeJS.Timeout | undefined;

  private constructor(first: RingEntry, overlapSeconds: number, now: () => number) {
    this.#entries = [first];
    this.overlapSeconds = overlapSeconds;
    this.#now = now;
  }

  static async create(opts: SigningKeyRingOptions): Promise<SigningKeyRing> {
    if (!Number.isFinite(opts.overlapSeconds) || opts.overlapSeconds <= 0) {
      throw new Error(`signing-keys: overlapSeconds must be a positive number, got ${opts.overlapSeconds}`);
    }
    const now = opts.now ?? Date.now;
    return new SigningKeyRing(await generateEntry(now()), opts.overlapSeconds, now);
  }

  current(): SigningKey {
    const entry = this.#entries.at(-1);
    if (entry === undefined) throw new Error('signing-keys: ring is empty'); // unreachable: never emptied
    return entry.key;
  }

  /** The public JWKS: the current key and every replaced key still within its overlap. */
  jwks(): { keys: PublicSigningJwk[] } {
    this.#prune();
    return { keys: this.#entries.map((entry) => ({ ...entry.publicJwk })) };
  }

  /** Makes a fresh key current; the previous one keeps verifying for overlapSeconds. */
  async rotate(): Promise<SigningKey> {
    const entry = await generateEntry(this.#now());
    const previous = this.#entries.at(-1);
    if (previous !== undefined) previous.retiredAt = entry.createdAt;
    this.#entries.push(entry);
    this.#prune();
    return entry.key;
  }

  /**
   * Rotates every intervalSeconds until stop(). A failed rotation keeps the current key (still
   * valid) and is handed to onError; without one it surfaces as an unhandled rejection rather than
   * passing silently.
   */
  startAutoRotation(
    intervalSeconds: number,
    onError?: (err: unknown) => void,
    /** After each successful rotation (e.g. to publish the new public key). */
    onRotated?: () => void,
  ): void {
    if (!Number.isFinite(intervalSeconds) || intervalSeconds <= 0) {
      throw new Error(`signing-keys: rotation interval must be a positive number, got ${intervalSeconds}`);
    }
    this.stop();
    this.#timer = setInterval(() => {
      const rotation = this.rotate().then(() => onRotated?.());
      if (onError !== undefined) rotation.catch(onError);
    }, intervalSeconds * 1000);
    // Rotation alone must not keep the process alive at shutdown.
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Public facts only, so a ring that ends up in a log or a debug dump reveals nothing secret. */
  toJSON(): { overlapSeconds: number; keys: Array<{ kid: string; createdAt: string; retiredAt?: string }> } {
    this.#prune();
    return {
      overlapSeconds: this.overlapSeconds,
      keys: this.#entries.map((entry) => ({
        kid: entry.key.kid,
        createdAt: new Date(entry.createdAt).toISOString(),
        ...(entry.retiredAt === undefined ? {} : { retiredAt: new Date(entry.retiredAt).toISOString() }),
      })),
    };
  }

  #prune(): void {
    const cutoff = this.#now() - this.overlapSeconds * 1000;
    this.#entries = this.#entries.filter(
      (entry) => entry.retiredAt === undefined || entry.retiredAt > cutoff,
    );
  }
}

async function generateEntry(createdAt: number): Promise<RingEntry> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: false });
  const jwk = await exportJWK(publicKey);
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || jwk.x === undefined || jwk.y === undefined) {
    throw new Error('signing-keys: generated key is not a P-256 EC key');
  }
  // RFC 7638 thumbprint: stable, derived from the key itself, so no kid registry is needed.
  const kid = await calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, 'sha256');
  return {
    key: Object.freeze({ kid, alg: 'ES256' as const, privateKey, sign: signerOf(privateKey) }),
    publicJwk: Object.freeze({ kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid, alg: 'ES256', use: 'sig' }),
    createdAt,
  };
}

function signerOf(privateKey: CryptoKey): (input: Buffer) => Buffer {
  const key = KeyObject.from(privateKey);
  return (input) => sign('sha256', input, { key, dsaEncoding: 'ieee-p1363' });
}
