/**
 * An in-memory set of trust bundles keyed by trust domain: the value a Workload API bundle stream
 * message turns into, and what tests and the dev stack hand to the verifiers.
 */
import { BrokerError } from '../errors.js';
import { parseTrustDomain } from './spiffe-id.js';
import type { JwtBundle, JwtBundleSource, X509Bundle, X509BundleSource } from './types.js';
import { splitConcatenatedDer } from './der.js';

/** A JWKS document as carried by a SPIFFE JWT bundle. */
export interface Jwks {
  keys: Array<Record<string, unknown>>;
  spiffe_sequence?: number;
  spiffe_refresh_hint?: number;
  [member: string]: unknown;
}

/** X.509 authorities as DER: either a list, or the Workload API's concatenated bytes. */
export type X509BundleInput = Uint8Array | readonly Uint8Array[];
/** A JWKS as an object, or its JSON text or bytes as the Workload API sends it. */
export type JwtBundleInput = Jwks | string | Uint8Array;

function malformedBundle(trustDomain: string, message: string, cause?: unknown): BrokerError {
  return new BrokerError('INVALID_ARGUMENT', `bundle for "${trustDomain}": ${message}`, {
    reason: 'malformed_bundle',
    field: 'bundles',
    cause,
  });
}

function toJwks(trustDomain: string, input: JwtBundleInput): Jwks {
  let doc: unknown = input;
  if (typeof input === 'string' || input instanceof Uint8Array) {
    try {
      const text =
        typeof input === 'string' ? input : new TextDecoder('utf-8', { fatal: true }).decode(input);
      doc = JSON.parse(text);
    } catch (err) {
      throw malformedBundle(trustDomain, 'JWT bundle is not valid JSON', err);
    }
  }
  if (doc === null || typeof doc !== 'object' || !Array.isArray((doc as { keys?: unknown }).keys)) {
    throw malformedBundle(trustDomain, 'JWT bundle has no "keys" array');
  }
  const keys = (doc as { keys: unknown[] }).keys;
  // A non-object key cannot be matched by kid; dropping it keeps one bad entry from hiding the rest.
  const validKeys = keys.filter(
    (k): k is Record<string, unknown> => k !== null && typeof k === 'object' && !Array.isArray(k),
  );
  return Object.freeze({ ...(doc as Jwks), keys: validKeys.map((k) => Object.freeze({ ...k })) });
}

/** Implements both bundle sources over plain maps; replace bundles wholesale as updates arrive. */
export class BundleSet implements X509BundleSource, JwtBundleSource {
  private readonly x509 = new Map<string, X509Bundle>();
  private readonly jwt = new Map<string, JwtBundle>();

  constructor(x509: Iterable<X509Bundle> = [], jwt: Iterable<JwtBundle> = []) {
    for (const b of x509) this.setX509Bundle(b.trustDomain, b.authorities);
    for (const b of jwt) this.setJwtBundle(b.trustDomain, b.jwks);
  }

  /**
   * Builds a set from Workload API maps. Keys may be `spiffe://<td>` (as the Workload API sends
   * them) or bare names; both are normalised to the bare trust domain name.
   */
  static fromMaps(
    x509: ReadonlyMap<string, X509BundleInput> = new Map(),
    jwt: ReadonlyMap<string, JwtBundleInput> = new Map(),
  ): BundleSet {
    const set = new BundleSet();
    for (const [td, authorities] of x509) set.setX509Bundle(td, authorities);
    for (const [td, jwks] of jwt) set.setJwtBundle(td, jwks);
    return set;
  }

  setX509Bundle(trustDomain: string, authorities: X509BundleInput): void {
    const td = parseTrustDomain(trustDomain);
    const list = authorities instanceof Uint8Array ? splitConcatenatedDer(authorities) : [...authorities];
    this.x509.set(
      td,
      Object.freeze({ trustDomain: td, authorities: Object.freeze(list.map((a) => a.slice())) }),
    );
  }

  setJwtBundle(trustDomain: string, jwks: JwtBundleInput): void {
    const td = parseTrustDomain(trustDomain);
    this.jwt.set(td, Object.freeze({ trustDomain: td, jwks: toJwks(td, jwks) }));
  }

  removeX509Bundle(trustDomain: string): boolean {
    return this.x509.delete(parseTrustDomain(trustDomain));
  }

  removeJwtBundle(trustDomain: string): boolean {
    return this.jwt.delete(parseTrustDomain(trustDomain));
  }

  getX509BundleForTrustDomain(trustDomain: string): X509Bundle | undefined {
    return this.x509.get(trustDomain);
  }

  getJwtBundleForTrustDomain(trustDomain: string): JwtBundle | undefined {
    return this.jwt.get(trustDomain);
  }

  /** Trust domains with at least one bundle, sorted. */
  trustDomains(): string[] {
    return [...new Set([...this.x509.keys(), ...this.jwt.keys()])].sort();
  }
}
