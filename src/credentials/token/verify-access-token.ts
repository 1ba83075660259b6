/**
 * What a downstream service does with a broker token: verify it against the broker's JWKS, insist
 * on ES256 and the RFC 9068 `at+jwt` type (so an ID token or another JWT from the same keys cannot
 * be replayed as an access token), check issuer and audience, require the RFC 9068 claims
 * (`client_id` included), then consult the revocation list.
 * Used by the tests and shown in the docs.
 */
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet } from 'jose';
import { unauthenticated } from '../../errors.js';

export interface VerifyAccessTokenOptions {
  jwks: JSONWebKeySet;
  /** The broker's SPIFFE ID. */
  issuer: string;
  /** This service's audience (or any of several). */
  audience: string | string[];
  /** Revoked, unexpired jtis as served by the broker. */
  revokedJtis?: ReadonlySet<string>;
  clockToleranceSeconds?: number;
  /** For tests: verify as of this instant. */
  currentDate?: Date;
}

export interface AccessTokenClaims {
  iss: string;
  sub: string;
  /** RFC 9068: the client the token was issued to (the agent's SPIFFE ID, as `sub`). */
  client_id: string;
  aud: string | string[];
  scope: string;
  task: string;
  env: string;
  role: string;
  jti: string;
  iat: number;
  nbf: number;
  exp: number;
}

const STRING_CLAIMS = ['iss', 'sub', 'client_id', 'scope', 'task', 'env', 'role', 'jti'] as const;

export async function verifyAccessToken(
  token: string,
  opts: VerifyAccessTokenOptions,
): Promise<{ claims: AccessTokenClaims; kid: string }> {
  let verified;
  try {
    verified = await jwtVerify(token, createLocalJWKSet(opts.jwks), {
      algorithms: ['ES256'],
      typ: 'at+jwt',
      issuer: opts.issuer,
      audience: opts.audience,
      requiredClaims: ['iss', 'sub', 'client_id', 'aud', 'exp', 'iat', 'nbf', 'jti', 'scope'],
      ...(opts.clockToleranceSeconds === undefined ? {} : { clockTolerance: opts.clockToleranceSeconds }),
      ...(opts.currentDate === undefined ? {} : { currentDate: opts.currentDate }),
    });
  } catch (err) {
    const detail = err instanceof joseErrors.JOSEError ? `${err.code}: ${err.message}` : String(err);
    throw unauthenticated('token_invalid', `access token rejected (${detail})`, err);
  }
  const { payload, protectedHeader } = verified;
  for (const claim of STRING_CLAIMS) {
    if (typeof payload[claim] !== 'string') {
      throw unauthenticated('token_invalid', `access token rejected (claim ${claim} is not a string)`);
    }
  }
  const claims = payload as unknown as AccessTokenClaims;
  // Only after the signature holds is the jti worth looking up: an unsigned jti proves nothing.
  if (opts.revokedJtis?.has(claims.jti)) {
    throw unauthenticated('token_revoked', `access token rejected (jti ${claims.jti} has been revoked)`);
  }
  return { claims, kid: protectedHeader.kid ?? '' };
}
