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

/** How a caller proved its identity. */
export type AuthMethod = 'x509' | 'jwt';

/** A verified caller, put into the call context by the auth interceptor. */
export interface Caller {
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly path: string;
  readonly authMethod: AuthMethod;
}
