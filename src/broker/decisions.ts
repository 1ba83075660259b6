/** How policy decisions show up in audit records and in errors to callers: one wording everywhere. */
import { permissionDenied, type BrokerError } from '../errors.js';
import type { PolicyDecision } from '../policy/types.js';

export function decisionFields(decision: PolicyDecision): Record<string, unknown> {
  return {
    decision: decision.decision,
    policy_ids: decision.policyIds,
    policy_digest: decision.policyDigest,
    ...(decision.reasons.length ? { policy_reasons: decision.reasons } : {}),
    ...(decision.errors.length ? { policy_errors: decision.errors } : {}),
  };
}

/** `hint`: why nothing permitted it, where known (e.g. the requested TTL), for a default deny. */
export function denialError(decision: PolicyDecision, what: string, hint = ''): BrokerError {
  if (decision.policyIds.length === 0) {
    // No deciding policy: either nothing permits it (default deny) or the request did not fit the
    // schema, which the engine reports in `errors` (details go to the audit record, not the caller).
    if (decision.errors.length) {
      return permissionDenied(
        `${what} denied: the request does not fit the policy schema`,
        [],
        'policy_invalid_request',
      );
    }
    return permissionDenied(
      `${what} denied: no policy permits this request (default deny)${hint ? `; ${hint}` : ''}`,
      [],
      'default_deny',
    );
  }
  const reasons = decision.reasons.length ? `: ${decision.reasons.join('; ')}` : '';
  return permissionDenied(
    `${what} denied by policy ${decision.policyIds.map((id) => `"${id}"`).join(', ')}${reasons}`,
    decision.policyIds,
  );
}
