/**
 * Authorizers (spec section 5; go-spiffe `tlsconfig.Authorize*`): plain functions run after an
 * SVID is verified, deciding whether that identity may talk to us at all. Fine-grained decisions
 * belong to the policy engine; these gate the transport.
 */
import { permissionDenied, unauthenticated } from '../errors.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId } from './spiffe-id.js';

/**
 * Contract: returns when `spiffeId` (already authenticated) is allowed; throws BrokerError
 * UNAUTHENTICATED when it is not a valid SPIFFE ID, PERMISSION_DENIED when it is not allowed.
 */
export type Authorizer = (spiffeId: string, verifiedChain?: readonly Uint8Array[]) => void;

function parsePresented(spiffeId: string): SpiffeId {
  try {
    return parseSpiffeId(spiffeId);
  } catch (err) {
    throw unauthenticated('invalid_spiffe_id', 'peer identity is not a valid SPIFFE ID', err);
  }
}

/** Allows any valid SPIFFE ID. */
export function authorizeAny(): Authorizer {
  return (spiffeId) => {
    parsePresented(spiffeId);
  };
}

/** Allows exactly one SPIFFE ID. Throws INVALID_ARGUMENT at construction if `id` is invalid. */
export function authorizeId(id: string): Authorizer {
  return authorizeOneOf(id);
}

/** Allows any of the listed SPIFFE IDs. Throws INVALID_ARGUMENT at construction on an invalid ID. */
export function authorizeOneOf(...ids: string[]): Authorizer {
  // Compare canonical strings so callers cannot be surprised by how an ID was spelled in config.
  const allowed = new Set(ids.map((id) => parseSpiffeId(id).toString()));
  return (spiffeId) => {
    const presented = parsePresented(spiffeId).toString();
    if (!allowed.has(presented)) {
      throw permissionDenied(`SPIFFE ID ${presented} is not authorized`, [], 'spiffe_id_not_allowed');
    }
  };
}

/** Allows any SPIFFE ID of one trust domain (bare name or `spiffe://<td>`). */
export function authorizeMemberOf(trustDomain: string): Authorizer {
  const td = parseTrustDomain(trustDomain);
  return (spiffeId) => {
    const presented = parsePresented(spiffeId);
    if (!presented.isMemberOf(td)) {
      throw permissionDenied(
        `SPIFFE ID ${presented.toString()} is not a member of trust domain "${td}"`,
        [],
        'trust_domain_not_allowed',
      );
    }
  };
}
