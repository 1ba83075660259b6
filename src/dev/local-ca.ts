/**
 * A dev/test certificate authority for one trust domain: issues X.509-SVIDs and mints JWT-SVIDs the
 * way SPIRE would, for the embedded dev stack's Workload API and for tests.
 *
 * Defaults produce SVIDs that satisfy spec section 3; the issue options exist so tests can break
 * exactly one rule at a time. Keys are ECDSA P-256 via WebCrypto and never leave the process.
 * Not for production: there is no persistence, revocation or key protection.
 */
// @peculiar/x509 needs reflect-metadata loaded before it is evaluated; keep this import first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  type Extension,
  type JsonGeneralName,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509Certificate,
  X509CertificateGenerator,
} from '@peculiar/x509';
import { base64url, calculateJwkThumbprint, exportJWK, type JWK, SignJWT } from 'jose';
import { invalidArgument } from '../errors.js';
import { parseTrustDomain, requireWorkloadId } from '../identity/spiffe-id.js';
import type { JwtBundle, X509Bundle, X509Svid } from '../identity/types.js';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const subtle = webcrypto.subtle;
const EC_KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const EC_SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;
const ORGANIZATION = 'svid-broker dev';

const DEFAULT_SVID_TTL_SECONDS = 3600;
const DEFAULT_JWT_TTL_SECONDS = 300;
const DEFAULT_ROOT_TTL_SECONDS = 365 * 24 * 3600;
const DEFAULT_INTERMEDIATE_TTL_SECONDS = 30 * 24 * 3600;
/** Backdating notBefore, as SPIRE does, so a peer with a slightly slow clock accepts a fresh SVID. */
const BACKDATE_MS = 10_000;

/** Deviations for a CA's intermediate, to build broken chains in tests. */
export interface IntermediateOptions {
  notBefore?: Date;
  notAfter?: Date;
  /** basicConstraints cA; default true. */
  isCa?: boolean;
  omitBasicConstraints?: boolean;
  /** keyUsage bits (KeyUsageFlags); default keyCertSign | cRLSign. */
  keyUsage?: number;
  omitKeyUsage?: boolean;
  /** pathLenConstraint; default 0 (it signs leaves only). */
  pathLength?: number;
}

export interface LocalCaOptions {
  /** Default X.509-SVID lifetime; 1 h like SPIRE. */
  ttlSeconds?: number;
  /** Default JWT-SVID lifetime; 5 min like SPIRE. */
  jwtTtlSeconds?: number;
  /** Root lifetime; 1 year. */
  caTtlSeconds?: number;
  /** Sign leaves through an intermediate (true, or options to make it deviate). */
  intermediate?: boolean | IntermediateOptions;
}

/** Options to issue an X.509-SVID, most of them to break one verification rule on purpose. */
export interface IssueX509Options {
  ttlSeconds?: number;
  notBefore?: Date;
  notAfter?: Date;
  /** Replaces the URI SANs entirely (`[]` issues a leaf without any); skips SPIFFE ID validation. */
  uriSans?: string[];
  /** URI SANs added after the SPIFFE ID. */
  extraUriSans?: string[];
  dnsNames?: string[];
  /** basicConstraints cA on the leaf; default false. */
  isCa?: boolean;
  omitBasicConstraints?: boolean;
  /** keyUsage bits (KeyUsageFlags); default digitalSignature. */
  keyUsage?: number;
  /** Default true. */
  keyUsageCritical?: boolean;
  omitKeyUsage?: boolean;
  /** extKeyUsage OIDs; default serverAuth + clientAuth; `[]` omits the extension. */
  extKeyUsage?: string[];
  /** Sign with another CA (and its intermediate), e.g. to forge an ID of this trust domain. */
  signWith?: LocalCa;
  /** Put the signer's intermediate in the chain, when it has one; default true. */
  includeIntermediate?: boolean;
  /** Appended as is, e.g. an unknown critical extension. */
  extraExtensions?: Extension[];
  hint?: string;
}

/** Options to mint a JWT-SVID, most of them to break one verification rule on purpose. */
export interface MintJwtOptions {
  ttlSeconds?: number;
  /** iat; default now. exp is iat + ttl. */
  issuedAt?: Date;
  /** Default ES256; `none` produces an unsigned token; HS* needs `signingKey` as a secret. */
  alg?: string;
  /** Default the signing key's kid; null omits the header. */
  kid?: string | null;
  /** Default `JWT`; null omits the header. */
  typ?: string | null;
  omitExp?: boolean;
  omitAud?: boolean;
  /** Merged into the protected header last (e.g. `jku`, `jwk`). */
  extraHeader?: Record<string, unknown>;
  /** Merged into the payload last; may override `sub`, `aud`, `exp`. */
  claims?: Record<string, unknown>;
  /** Sign with another CA's current JWT key (and kid). */
  signWith?: LocalCa;
  /** A foreign private key or an HMAC secret; kid then defaults to none unless given. */
  signingKey?: CryptoKey | Uint8Array;
}

interface Authority {
  readonly cert: X509Certificate;
  readonly der: Uint8Array;
  readonly keys: CryptoKeyPair;
}

interface JwtSigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

function toDer(cert: X509Certificate): Uint8Array {
  return new Uint8Array(cert.rawData);
}

function secondsFrom(base: Date, seconds: number): Date {
  return new Date(base.getTime() + seconds * 1000);
}

async function generateEcKeyPair(extractable: boolean): Promise<CryptoKeyPair> {
  return subtle.generateKey(EC_KEY_ALGORITHM, extractable, ['sign', 'verify']);
}

export class LocalCa {
  readonly trustDomain: string;
  private readonly opts: Required<Omit<LocalCaOptions, 'intermediate'>>;
  private readonly intermediateOpts: IntermediateOptions | undefined;
  /** Current root first; older roots stay until retired, as during a SPIRE bundle rotation. */
  private roots: Authority[];
  private intermediate: Authority | undefined;
  /** Current key first; older keys stay published until retired. */
  private jwtKeys: JwtSigningKey[];

  private constructor(
    trustDomain: string,
    opts: LocalCaOptions,
    root: Authority,
    intermediate: Authority | undefined,
    jwtKey: JwtSigningKey,
  ) {
    this.trustDomain = trustDomain;
    this.opts = {
      ttlSeconds: opts.ttlSeconds ?? DEFAULT_SVID_TTL_SECONDS,
      jwtTtlSeconds: opts.jwtTtlSeconds ?? DEFAULT_JWT_TTL_SECONDS,
      caTtlSeconds: opts.caTtlSeconds ?? DEFAULT_ROOT_TTL_SECONDS,
    };
    this.intermediateOpts = LocalCa.intermediateOptions(opts);
    this.roots = [root];
    this.intermediate = intermediate;
    this.jwtKeys = [jwtKey];
  }

  /** Creates a CA for `trustDomain` (bare name or `spiffe://<td>`) with a fresh root and JWT key. */
  static async create(trustDomain: string, opts: LocalCaOptions = {}): Promise<LocalCa> {
    const td = parseTrustDomain(trustDomain);
    const root = await LocalCa.createRoot(td, opts.caTtlSeconds ?? DEFAULT_ROOT_TTL_SECONDS);
    const intermediateOpts = LocalCa.intermediateOptions(opts);
    const intermediate =
      intermediateOpts === undefined
        ? undefined
        : await LocalCa.createIntermediate(td, root, intermediateOpts);
    const jwtKey = await LocalCa.createJwtKey();
    return new LocalCa(td, opts, root, intermediate, jwtKey);
  }

  private static intermediateOptions(opts: LocalCaOptions): IntermediateOptions | undefined {
    if (opts.intermediate === undefined || opts.intermediate === false) return undefined;
    return opts.intermediate === true ? {} : opts.intermediate;
  }

  private static async createRoot(td: string, ttlSeconds: number): Promise<Authority> {
    const keys = await generateEcKeyPair(false);
    const now = new Date();
    // Every root of a domain shares one subject name, as SPIRE's do, so verifiers must tell
    // rotated roots apart by signature rather than by name.
    const cert = await X509CertificateGenerator.createSelfSigned({
      name: `CN=${td} root, O=${ORGANIZATION}`,
      keys,
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter: secondsFrom(now, ttlSeconds),
      signingAlgorithm: EC_SIGNING_ALGORITHM,
      extensions: [
        new BasicConstraintsExtension(true, undefined, true),
        new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
        await SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    return { cert, der: toDer(cert), keys };
  }

  private static async createIntermediate(
    td: string,
    root: Authority,
    o: IntermediateOptions,
  ): Promise<Authority> {
    const keys = await generateEcKeyPair(false);
    const now = new Date();
    const notAfter =
      o.notAfter ??
      new Date(
        Math.min(secondsFrom(now, DEFAULT_INTERMEDIATE_TTL_SECONDS).getTime(), root.cert.notAfter.getTime()),
      );
    const extensions: Extension[] = [
      await SubjectKeyIdentifierExtension.create(keys.publicKey),
      await AuthorityKeyIdentifierExtension.create(root.keys.publicKey),
    ];
    if (o.omitBasicConstraints !== true) {
      const isCa = o.isCa ?? true;
      extensions.push(new BasicConstraintsExtension(isCa, isCa ? (o.pathLength ?? 0) : undefined, true));
    }
    if (o.omitKeyUsage !== true) {
      extensions.push(
        new KeyUsagesExtension(o.keyUsage ?? KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
      );
    }
    const cert = await X509CertificateGenerator.create({
      subject: `CN=${td} intermediate, O=${ORGANIZATION}`,
      issuer: root.cert.subjectName,
      publicKey: keys.publicKey,
      signingKey: root.keys.privateKey,
      notBefore: o.notBefore ?? new Date(now.getTime() - BACKDATE_MS),
      notAfter,
      signingAlgorithm: EC_SIGNING_ALGORITHM,
      extensions,
    });
    return { cert, der: toDer(cert), keys };
  }

  private static async createJwtKey(): Promise<JwtSigningKey> {
    const keys = await generateEcKeyPair(false);
    const publicJwk = await exportJWK(keys.publicKey);
    // The RFC 7638 thumbprint makes kid stable for a key and unique across keys.
    const kid = await calculateJwkThumbprint(publicJwk);
    return { kid, privateKey: keys.privateKey, publicJwk };
  }

  private get currentRoot(): Authority {
    return this.roots[0] as Authority;
  }

  private get currentJwtKey(): JwtSigningKey {
    return this.jwtKeys[0] as JwtSigningKey;
  }

  /** DER of the current root. */
  get rootDer(): Uint8Array {
    return this.currentRoot.der;
  }

  /** DER of the current intermediate, when configured. */
  get intermediateDer(): Uint8Array | undefined {
    return this.intermediate?.der;
  }

  /** The current JWT signing key's kid. */
  get jwtKid(): string {
    return this.currentJwtKey.kid;
  }

  /** DER roots to publish in the X.509 bundle: the current one and any not yet retired. */
  authorities(): Uint8Array[] {
    return this.roots.map((r) => r.der.slice());
  }

  /** Public JWT-SVID signing keys, as a SPIFFE JWT bundle publishes them. */
  jwks(): { keys: JWK[] } {
    return {
      keys: this.jwtKeys.map((k) => ({ ...k.publicJwk, use: 'jwt-svid', kid: k.kid, alg: 'ES256' })),
    };
  }

  x509Bundle(): X509Bundle {
    return { trustDomain: this.trustDomain, authorities: this.authorities() };
  }

  jwtBundle(): JwtBundle {
    return { trustDomain: this.trustDomain, jwks: this.jwks() };
  }

  /** Starts a root rotation: new root (and intermediate) sign from now on; old roots stay published. */
  async rotateRoot(): Promise<void> {
    const root = await LocalCa.createRoot(this.trustDomain, this.opts.caTtlSeconds);
    const intermediate =
      this.intermediateOpts === undefined
        ? undefined
        : await LocalCa.createIntermediate(this.trustDomain, root, this.intermediateOpts);
    this.roots = [root, ...this.roots];
    this.intermediate = intermediate;
  }

  /** Ends a root rotation: only the current root stays in `authorities()`. */
  retireOldRoots(): void {
    this.roots = [this.currentRoot];
  }

  /** Starts a JWT key rotation: the new key signs from now on; old keys stay in `jwks()`. */
  async rotateJwtKey(): Promise<void> {
    this.jwtKeys = [await LocalCa.createJwtKey(), ...this.jwtKeys];
  }

  /** Ends a JWT key rotation: only the current key stays in `jwks()`. */
  retireOldJwtKeys(): void {
    this.jwtKeys = [this.currentJwtKey];
  }

  /** The certificate that signs leaves, and the chain tail to present after the leaf. */
  private signer(includeIntermediate: boolean): { issuer: Authority; tail: Uint8Array[] } {
    if (this.intermediate === undefined) return { issuer: this.currentRoot, tail: [] };
    return { issuer: this.intermediate, tail: includeIntermediate ? [this.intermediate.der] : [] };
  }

  /**
   * Issues an X.509-SVID for `spiffeId`, which must be a workload ID of this trust domain unless
   * `uriSans` replaces it. Chain is leaf first, then the intermediate when there is one.
   */
  async issueX509Svid(spiffeId: string, o: IssueX509Options = {}): Promise<X509Svid> {
    if (o.uriSans === undefined) {
      const id = requireWorkloadId(spiffeId);
      if (!id.isMemberOf(this.trustDomain)) {
        throw invalidArgument(
          'spiffe_id',
          `LocalCa(${this.trustDomain}) cannot issue ${spiffeId}; use signWith to forge`,
        );
      }
    }
    const { issuer, tail } = (o.signWith ?? this).signer(o.includeIntermediate ?? true);
    const keys = await generateEcKeyPair(true);
    const now = new Date();
    const notBefore = o.notBefore ?? new Date(now.getTime() - BACKDATE_MS);
    // An SVID never outlives its issuer, as SPIRE caps it, unless a test asks for it explicitly.
    const notAfter =
      o.notAfter ??
      new Date(
        Math.min(
          secondsFrom(now, o.ttlSeconds ?? this.opts.ttlSeconds).getTime(),
          issuer.cert.notAfter.getTime(),
        ),
      );

    const names: JsonGeneralName[] = [
      ...(o.uriSans ?? [spiffeId]).map((value): JsonGeneralName => ({ type: 'url', value })),
      ...(o.extraUriSans ?? []).map((value): JsonGeneralName => ({ type: 'url', value })),
      ...(o.dnsNames ?? []).map((value): JsonGeneralName => ({ type: 'dns', value })),
    ];
    const extensions: Extension[] = [
      await SubjectKeyIdentifierExtension.create(keys.publicKey),
      await AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey),
    ];
    if (o.omitBasicConstraints !== true)
      extensions.push(new BasicConstraintsExtension(o.isCa ?? false, undefined, true));
    if (o.omitKeyUsage !== true) {
      extensions.push(
        new KeyUsagesExtension(o.keyUsage ?? KeyUsageFlags.digitalSignature, o.keyUsageCritical ?? true),
      );
    }
    const eku = o.extKeyUsage ?? [ExtendedKeyUsage.serverAuth, ExtendedKeyUsage.clientAuth];
    if (eku.length > 0) extensions.push(new ExtendedKeyUsageExtension(eku, false));
    // The SAN is critical only when the subject is empty (RFC 5280 4.2.1.6); ours never is.
    if (names.length > 0) extensions.push(new SubjectAlternativeNameExtension(names, false));
    extensions.push(...(o.extraExtensions ?? []));

    const cert = await X509CertificateGenerator.create({
      subject: `CN=svid, O=${ORGANIZATION}`,
      issuer: issuer.cert.subjectName,
      publicKey: keys.publicKey,
      signingKey: issuer.keys.privateKey,
      notBefore,
      notAfter,
      signingAlgorithm: EC_SIGNING_ALGORITHM,
      extensions,
    });
    const privateKey = new Uint8Array(await subtle.exportKey('pkcs8', keys.privateKey));
    return { spiffeId, certChain: [toDer(cert), ...tail], privateKey, hint: o.hint ?? '' };
  }

  /**
   * Mints a JWT-SVID for `spiffeId` (a workload ID of this trust domain) with the current JWT key,
   * ES256. Options can produce every kind of invalid token the verifier must reject.
   */
  async mintJwtSvid(spiffeId: string, audience: string | string[], o: MintJwtOptions = {}): Promise<string> {
    const id = requireWorkloadId(spiffeId);
    if (!id.isMemberOf(this.trustDomain)) {
      throw invalidArgument(
        'spiffe_id',
        `LocalCa(${this.trustDomain}) cannot mint ${spiffeId}; use signWith to forge`,
      );
    }
    const signingKey = (o.signWith ?? this).currentJwtKey;
    const alg = o.alg ?? 'ES256';
    const iat = Math.floor((o.issuedAt ?? new Date()).getTime() / 1000);

    const payload: Record<string, unknown> = { sub: spiffeId, iat };
    if (o.omitAud !== true) payload.aud = audience;
    if (o.omitExp !== true) payload.exp = iat + (o.ttlSeconds ?? this.opts.jwtTtlSeconds);
    Object.assign(payload, o.claims ?? {});

    const header: Record<string, unknown> = { alg };
    const kid = o.kid === undefined ? (o.signingKey === undefined ? signingKey.kid : undefined) : o.kid;
    if (kid !== null && kid !== undefined) header.kid = kid;
    const typ = o.typ === undefined ? 'JWT' : o.typ;
    if (typ !== null) header.typ = typ;
    Object.assign(header, o.extraHeader ?? {});

    if (alg === 'none') {
      const encode = (v: unknown): string => base64url.encode(JSON.stringify(v));
      return `${encode(header)}.${encode(payload)}.`;
    }
    return new SignJWT(payload)
      .setProtectedHeader({ ...header, alg })
      .sign(o.signingKey ?? signingKey.privateKey);
  }
}
