/**
 * What the admin use cases check of a person that an SVID caller has no counterpart for: the
 * Cedar principal they are (Human), whether their sign-in is fresh enough for the riskiest
 * decisions (step-up), and whether they own the agent whose request they would approve.
 */
import type { ApprovalRequest } from '../approvals/types.js';
import { failedPrecondition } from '../errors.js';
import type { Caller, HumanIdentity } from '../identity/types.js';
import type { HumanPrincipal } from '../policy/types.js';

/** humans.* settings the use cases enforce. */
export interface StepUpPolicy {
  /** A sign-in older than this (seconds since auth_time) must be repeated. */
  maxAgeSeconds: number;
  /** When not empty, the sign-in's `acr` must be one of these. */
  acrValues: readonly string[];
  /** Environments whose destructive and admin changes count as production-destructive. */
  productionEnvironments: readonly string[];
}

/** The reason a stale sign-in is refused with; the console answers it with a fresh sign-in. */
export const STEP_UP_REQUIRED = 'step_up_required';

/** The Cedar principal of a caller: Agent::"<spiffe id>" or Human::"<sub>". */
export function policyPrincipal(caller: Caller): string | HumanPrincipal {
  if (!caller.human) return caller.spiffeId;
  const { sub, email, groups } = caller.human;
  return { type: 'Human', sub, email, groups };
}

/** Approving these needs a fresh sign-in: restricted, or a destructive or admin change in production. */
export function approvalNeedsStepUp(
  request: Pick<ApprovalRequest, 'sensitivity' | 'environment' | 'changeType'>,
  policy: StepUpPolicy,
): boolean {
  if (request.sensitivity === 'restricted') return true;
  return (
    policy.productionEnvironments.includes(request.environment) &&
    (request.changeType === 'destructive' || request.changeType === 'admin')
  );
}

/**
 * Throws FAILED_PRECONDITION `step_up_required` when a person's sign-in is older than the policy
 * allows or lacks a required `acr`. SVID callers have no sign-in to renew: their SVID is checked
 * on every call.
 */
export function requireFreshSignIn(
  caller: Caller,
  policy: StepUpPolicy | undefined,
  now: number,
  what: string,
): void {
  const human = caller.human;
  if (!human || !policy) return;
  const ageSeconds = Math.floor(now / 1000) - human.authTime;
  if (ageSeconds > policy.maxAgeSeconds) {
    throw failedPrecondition(
      STEP_UP_REQUIRED,
      `${what} needs a fresh sign-in (within ${policy.maxAgeSeconds} s)`,
    );
  }
  if (policy.acrValues.length > 0 && !policy.acrValues.includes(human.acr)) {
    throw failedPrecondition(
      STEP_UP_REQUIRED,
      `${what} needs a sign-in with acr ${policy.acrValues.join(' or ')}`,
    );
  }
}

/** Whether `owner` (the catalog's `owner`: an IdP subject or an email address) names this person. */
export function isOwner(human: HumanIdentity, owner: string | undefined): boolean {
  if (!owner) return false;
  if (owner === human.sub) return true;
  return human.email !== '' && owner.toLowerCase() === human.email.toLowerCase();
}
