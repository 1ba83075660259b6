/**
 * Identity seam types. Certificates and keys are DER, as the Workload API sends them.
 */

/** An X.509-SVID: a SPIFFE ID, its certificate chain (leaf first) and private key. */
export interface X509Svid {
  /** The SPIFFE ID in the leaf's URI SAN, e.g. `spiffe://example.org/broker`. */
  readonly spiffeId: string;
  /** Chain, leaf first, each element one DER certificate. */
  readonly certChain: readonly Uint8Array[];
  /** Unencrypted PKCS#8 DER private key. */
  readonly privateKey: Uint8Array;
  readonly hint: string;
}

/** The X.509 authorities (DER CA certificates) of one trust domain. */
export interface X509Bundle {
  readonly trustDomain: string;
  readonly authorities: readonly Uint8Array[];
}

/** A JWT bundle: the JWKS document of one trust domain. */
export interface JwtBundle {
  readonly trustDomain: string;
  readonly jwks: { keys: Array<Record<string, unknown>> };
}

/** Contract: returns the bundle of exactly that trust domain (own or federated), or undefined. */
export interface X509BundleSource {
  getX509BundleForTrustDomain(trustDomain: string): X509Bundle | undefined;
}

/** Contract: returns the current default X.509-SVID; throws after close(). */
export interface X509SvidSource {
  getX509Svid(): X509Svid;
}

/** Contract: returns the JWT bundle of exactly that trust domain, or undefined. */
export interface JwtBundleSource {
  getJwtBundleForTrustDomain(trustDomain: string): JwtBundle | undefined;
}

/** How a caller proved its identity: an SVID, or (people at the console) an OpenID Connect sign-in. */
export type AuthMethod = 'x509' | 'jwt' | 'oidc';

/** A person signed in at the web console, as their OpenID provider asserted them. */
export interface HumanIdentity {
  /** The ID token's `sub`. */
  readonly sub: string;
  /** The `email` claim, "" when the IdP sent none. */
  readonly email: string;
  /** The values of the configured groups claim. */
  readonly groups: readonly string[];
  /** When they last authenticated at the IdP (the ID token's `auth_time`, epoch seconds). */
  readonly authTime: number;
  /** The ID token's `acr`, "" when absent. */
  readonly acr: string;
}

/** A verified caller, put into the call context by the auth interceptor (or the console's session). */
export interface Caller {
  /**
   * The caller's SPIFFE ID; for a person, `human:<sub>` (see humanCaller): the key their approvals,
   * grants and audit records are counted and checked under, never a valid SPIFFE ID.
   */
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly path: string;
  readonly authMethod: AuthMethod;
  /** Set for a person signed in at the console; the Cedar principal is then Human::"<sub>". */
  readonly human?: HumanIdentity;
}
