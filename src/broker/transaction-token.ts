/**
 * Transaction Tokens (draft-ietf-oauth-transaction-tokens): a short-lived JWT naming which task a
 * call belongs to, so downstream services can tell without calling the broker. Signed with the
 * token backend's key ring (ES256, published at /.well-known/jwks.json); IssueCredential takes one
 * in place of task_id.
 *
 * Header `typ: txntoken+jwt`. Claims: iss and req_wl the broker's SPIFFE ID, aud the broker's
 * trust domain, iat/exp, txn the task id, sub the task's agent, scope the task's intent, tctx the
 * task's environment, sensitivity ceiling and change type ceiling (and, for a delegated task, its
 * parent task and depth), act the delegating agents (RFC 8693, nested from the current actor out).
 */
import { createLocalJWKSet, errors as joseErrors, jwtVerify, SignJWT, type JSONWebKeySet } from 'jose';
import { unauthenticated, permissionDenied, invalidArgument, type BrokerError } from '../errors.js';
import type { Caller } from '../identity/types.js';
import type { SigningKey } from '../credentials/token/signing-keys.js';
import { signCompactJws } from '../credentials/token/compact-jws.js';
import { actClaim } from '../credentials/token/token-backend.js';
import type { Task } from '../leases/types.js';
import { scopeOf } from './delegation-scope.js';

export const TXN_TOKEN_TYPE = 'txntoken+jwt';

export interface TransactionTokensOptions {
  /** The current signing key (SigningKeyRing.current). */
  signingKey: () => SigningKey;
  /** Every key a token may have been signed with: this replica's and the others' (shared JWKS). */
  jwks: () => JSONWebKeySet | Promise<JSONWebKeySet>;
  /** The broker's SPIFFE ID (iss, req_wl). */
  brokerId: () => string;
  /** The broker's trust domain name (aud). */
  audience: () => string;
  /** delegation.transactionTokenTtlSeconds; never past the task's expiry. */
  ttlSeconds: number;
  /** delegation.maxDepth, for a root task's tctx. */
  maxDepth: number;
  now?: () => number;
  /**
   * `node` (default): node's crypto.sign with the key's cached KeyObject, as the token backend
   * signs. `jose`: WebCrypto through jose, the path before; kept for the bench's previous hot path.
   */
  signer?: 'node' | 'jose';
}

export class TransactionTokens {
  private readonly now: () => number;

  constructor(private readonly opts: TransactionTokensOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** A token for `task`, valid for ttlSeconds or until the task expires, whichever is first. */
  async mint(task: Task): Promise<string> {
    const now = this.now();
    const iat = Math.floor(now / 1000);
    const exp = Math.floor(Math.min(now + this.opts.ttlSeconds * 1000, task.expiresAt) / 1000);
    const scope = scopeOf(task, this.opts.maxDepth);
    const key = this.opts.signingKey();
    const header = { alg: 'ES256', kid: key.kid, typ: TXN_TOKEN_TYPE } as const;
    const claims = {
      iss: this.opts.brokerId(),
      aud: this.opts.audience(),
      iat,
      exp,
      txn: task.id,
      sub: task.agent,
      scope: task.intent,
      tctx: {
        environment: task.environment,
        sensitivity_ceiling: scope.sensitivityCeiling,
        change_type: scope.changeTypeCeiling,
        delegation_depth: scope.chain.length - 1,
        ...(task.delegation ? { parent_txn: task.delegation.parentTaskId } : {}),
      },
      req_wl: this.opts.brokerId(),
      ...actClaim(task.delegation?.chain),
    };
    if (this.opts.signer === 'jose')
      return new SignJWT(claims).setProtectedHeader(header).sign(key.privateKey);
    return signCompactJws(header, claims, key.sign);
  }

  /**
   * The task id a caller's Transaction Token names: signature (the broker's JWKS), type, expiry,
   * audience, and `sub` the caller. Refusals never echo the token.
   */
  async taskIdFor(caller: Caller, token: string): Promise<string> {
    if (token.length > 8192) throw invalidArgument('transaction_token', 'is too long');
    const jwks = await this.opts.jwks(); // a JWKS outage is an outage, not a bad token
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
        typ: TXN_TOKEN_TYPE,
        algorithms: ['ES256'],
        audience: this.opts.audience(),
        currentDate: new Date(this.now()),
        requiredClaims: ['txn', 'sub', 'exp'],
      }));
    } catch (err) {
      throw refusal(err);
    }
    if (payload.sub !== caller.spiffeId) {
      throw permissionDenied('the transaction token belongs to another agent', [], 'txn_token_not_yours');
    }
    if (typeof payload.txn !== 'string' || payload.txn === '') {
      throw unauthenticated('txn_token_invalid', 'transaction token: txn is not a task id');
    }
    return payload.txn;
  }
}

/** Why a token was refused, in words that never include the token. */
function refusal(err: unknown): BrokerError {
  if (err instanceof joseErrors.JWTExpired) {
    return unauthenticated('txn_token_expired', 'transaction token has expired');
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    const claim = err.claim;
    return unauthenticated('txn_token_invalid', `transaction token: unexpected "${claim}" claim`);
  }
  if (
    err instanceof joseErrors.JWSSignatureVerificationFailed ||
    err instanceof joseErrors.JWKSNoMatchingKey
  ) {
    return unauthenticated('txn_token_invalid', 'transaction token: not signed by this broker');
  }
  return unauthenticated('txn_token_invalid', 'transaction token is malformed');
}
