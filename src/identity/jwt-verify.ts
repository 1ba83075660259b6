/**
 * JWT-SVID verification (spec section 4; go-spiffe `svid/jwtsvid`).
 *
 * The header and payload are read unverified only to choose the key: `sub` names the trust domain
 * whose JWKS may sign the token, and `kid` picks the key in it. Keys named by the token itself
 * (`jku`, `x5u`, `jwk`, `x5c`) are never consulted. Signature checks are jose's `compactVerify`;
 * claim checks are done here so each failure maps to its own stable reason.
 */
import {
  compactVerify,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  importJWK,
  type JWK,
} from 'jose';
import { BrokerError, isBrokerError, unauthenticated } from '../errors.js';
import { parseSpiffeId, type SpiffeId } from './spiffe-id.js';
import type { JwtBundleSource } from './types.js';

export interface VerifyJwtSvidOptions {
  /** Time to check `exp`/`nbf` against; defaults to the current time. */
  now?: Date;
  /** Clock skew tolerated on `exp` and `nbf`, in seconds. Default 30. */
  leewaySeconds?: number;
}

export interface VerifiedJwtSvid {
  spiffeId: string;
  trustDomain: string;
  path: string;
  /** The verified payload. */
  claims: Record<string, unknown>;
  expiresAt: Date;
}

/** The algorithms JWT-SVIDs may use: asymmetric only, so a public bundle key can never be an HMAC secret. */
export const JWT_SVID_ALGORITHMS: readonly string[] = Object.freeze([
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
]);

const DEFAULT_LEEWAY_SECONDS = 30;
/** Bounds work on hostile input; real JWT-SVIDs are well under 2 KiB. */
const MAX_TOKEN_LENGTH = 16 * 1024;
const JWT_SVID_USE = 'jwt-svid';
/** Private and symmetric members: a bundle should never carry them, and we never import them. */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];

/**
 * Verifies a JWT-SVID against the JWT bundle of its subject's trust domain and returns the
 * authenticated SPIFFE ID. `audience` lists the audiences this verifier accepts; the token's `aud`
 * must contain one of them. Throws BrokerError UNAUTHENTICATED with a stable `reason`.
 */
export async function verifyJwtSvid(
  token: string,
  bundles: JwtBundleSource,
  audience: string | readonly string[],
  opts: VerifyJwtSvidOptions = {},
): Promise<VerifiedJwtSvid> {
  const expected = typeof audience === 'string' ? [audience] : [...audience];
  if (expected.length === 0 || expected.some((a) => typeof a !== 'string' || a === '')) {
    // A verifier without an audience would accept tokens minted for anyone: a wiring bug, fail closed.
    throw new BrokerError('INTERNAL', 'JWT-SVID verifier has no expected audience', {
      reason: 'no_expected_audience',
    });
  }
  const leeway = opts.leewaySeconds ?? DEFAULT_LEEWAY_SECONDS;
  if (!Number.isFinite(leeway) || leeway < 0) {
    throw new BrokerError('INTERNAL', 'JWT-SVID leeway must be a non-negative number', {
      reason: 'bad_leeway',
    });
  }
  const nowSeconds = (opts.now ?? new Date()).getTime() / 1000;

  checkCompactShape(token);
  const header = readHeader(token);
  const unverifiedSub = readUnverifiedSub(token);
  const id = parseSubject(unverifiedSub);

  const bundle = bundles.getJwtBundleForTrustDomain(id.trustDomain);
  if (bundle === undefined) {
    throw unauthenticated('untrusted_domain', `no JWT bundle for trust domain "${id.trustDomain}"`);
  }
  const candidates = bundle.jwks.keys.filter((k) => k.use === JWT_SVID_USE && k.kid === header.kid);
  if (candidates.length === 0) {
    throw unauthenticated(
      'unknown_kid',
      `no jwt-svid key with kid ${shown(header.kid)} in the bundle of trust domain "${id.trustDomain}"`,
    );
  }

  const payloadBytes = await verifySignature(token, header.alg, candidates);
  const claims = parsePayload(payloadBytes);
  // The key was chosen by the unverified sub; the verified one must be the same string.
  if (claims.sub !== unverifiedSub)
    throw unauthenticated('malformed_jwt', 'token subject changed under verification');
  const expiresAt = checkClaims(claims, expected, nowSeconds, leeway);

  return { spiffeId: id.toString(), trustDomain: id.trustDomain, path: id.path, claims, expiresAt };
}

/** Quotes an attacker-controlled header value for a message, bounded in length. */
function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 64 ? `${text.slice(0, 64)}...` : text;
}

function malformed(message: string, cause?: unknown): BrokerError {
  return unauthenticated('malformed_jwt', message, cause);
}

function checkCompactShape(token: string): void {
  if (typeof token !== 'string' || token.length === 0) throw malformed('token is empty');
  if (token.length > MAX_TOKEN_LENGTH) throw malformed(`token is longer than ${MAX_TOKEN_LENGTH} characters`);
  if (token.trimStart().startsWith('{'))
    throw malformed('JWS JSON serialization is not accepted; use compact form');
  const parts = token.split('.');
  if (parts.length === 5) throw malformed('encrypted tokens (JWE) are not accepted');
  if (parts.length !== 3) throw malformed('token is not a compact JWS (header.payload.signature)');
  if (!parts.every((p) => /^[A-Za-z0-9_-]*$/.test(p))) throw malformed('token parts are not base64url');
}

interface CheckedHeader {
  alg: string;
  kid: string;
}

function readHeader(token: string): CheckedHeader {
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(token);
  } catch (err) {
    throw malformed('token header cannot be decoded', err);
  }
  const alg = header.alg;
  if (typeof alg !== 'string' || !JWT_SVID_ALGORITHMS.includes(alg)) {
    throw unauthenticated(
      'unsupported_alg',
      `token alg ${shown(alg)} is not allowed (allowed: ${JWT_SVID_ALGORITHMS.join(', ')})`,
    );
  }
  if (header.typ !== undefined && header.typ !== 'JWT' && header.typ !== 'JOSE') {
    throw unauthenticated('bad_typ', 'token typ must be "JWT" or "JOSE" when present');
  }
  // RFC 7797 unencoded payloads would make the bytes we read `sub` from differ from those signed.
  if (header.b64 !== undefined) throw malformed('the b64 header is not accepted');
  const kid = header.kid;
  if (typeof kid !== 'string' || kid === '') throw unauthenticated('missing_kid', 'token header has no kid');
  return { alg, kid };
}

function readUnverifiedSub(token: string): string {
  let payload: Record<string, unknown>;
  try {
    payload = decodeJwt(token);
  } catch (err) {
    throw malformed('token payload cannot be decoded', err);
  }
  if (typeof payload.sub !== 'string' || payload.sub === '') {
    throw unauthenticated('missing_sub', 'token has no sub claim');
  }
  return payload.sub;
}

function parseSubject(sub: string): SpiffeId {
  let id: SpiffeId;
  try {
    id = parseSpiffeId(sub, 'sub');
  } catch (err) {
    const detail = isBrokerError(err) ? err.message : 'invalid';
    throw unauthenticated('invalid_sub', `token sub is not a valid SPIFFE ID (${detail})`, err);
  }
  if (!id.isWorkloadId) {
    throw unauthenticated(
      'not_workload_id',
      `token sub ${id.toString()} has no path; JWT-SVIDs name workloads`,
    );
  }
  return id;
}

function publicJwk(key: Record<string, unknown>): JWK {
  const copy: Record<string, unknown> = { ...key };
  for (const member of PRIVATE_JWK_MEMBERS) delete copy[member];
  return copy as JWK;
}

/**
 * Tries each bundle key carrying the token's kid (normally exactly one) and returns the verified
 * payload bytes. A key whose own `alg` differs from the token's is not a candidate.
 */
async function verifySignature(
  token: string,
  alg: string,
  candidates: ReadonlyArray<Record<string, unknown>>,
): Promise<Uint8Array> {
  let failure: BrokerError = unauthenticated('key_mismatch', `no bundle key with this kid can verify ${alg}`);
  for (const candidate of candidates) {
    if (candidate.alg !== undefined && candidate.alg !== alg) continue;
    let key: Awaited<ReturnType<typeof importJWK>>;
    try {
      key = await importJWK(publicJwk(candidate), alg);
    } catch (err) {
      failure = unauthenticated('key_mismatch', `bundle key cannot be used with ${alg}`, err);
      continue;
    }
    try {
      const result = await compactVerify(token, key, { algorithms: [alg] });
      return result.payload;
    } catch (err) {
      if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
        failure = unauthenticated('bad_signature', 'token signature does not verify', err);
      } else if (err instanceof joseErrors.JOSEError) {
        failure = malformed(`token rejected: ${err.code}`, err);
      } else {
        // jose reports an alg/key-type mismatch (e.g. ES384 with a P-256 key) as a TypeError.
        failure = unauthenticated('key_mismatch', `bundle key cannot be used with ${alg}`, err);
      }
    }
  }
  throw failure;
}

function parsePayload(bytes: Uint8Array): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw malformed('token payload is not JSON', err);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw malformed('token payload is not a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/** Checks aud, exp and nbf; returns the expiry. */
function checkClaims(
  claims: Record<string, unknown>,
  expected: readonly string[],
  nowSeconds: number,
  leeway: number,
): Date {
  const aud = claims.aud;
  if (aud === undefined) throw unauthenticated('missing_aud', 'token has no aud claim');
  const audiences = typeof aud === 'string' ? [aud] : aud;
  if (!Array.isArray(audiences) || !audiences.every((a) => typeof a === 'string')) {
    throw unauthenticated('bad_audience', 'token aud must be a string or an array of strings');
  }
  if (!audiences.some((a) => expected.includes(a as string))) {
    throw unauthenticated('bad_audience', 'token aud does not include this service');
  }

  const exp = claims.exp;
  if (exp === undefined) throw unauthenticated('missing_exp', 'token has no exp claim');
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw malformed('token exp is not a number');
  if (nowSeconds > exp + leeway) {
    throw unauthenticated('svid_expired', `JWT-SVID expired at ${new Date(exp * 1000).toISOString()}`);
  }

  const nbf = claims.nbf;
  if (nbf !== undefined) {
    if (typeof nbf !== 'number' || !Number.isFinite(nbf)) throw malformed('token nbf is not a number');
    if (nowSeconds + leeway < nbf) {
      throw unauthenticated(
        'svid_not_yet_valid',
        `JWT-SVID is not valid before ${new Date(nbf * 1000).toISOString()}`,
      );
    }
  }
  return new Date(exp * 1000);
}
