/**
 * Approvals derived from policy rather than kept in a separate list: an IssueCredential request
 * denied with `approved == false` that would be allowed with `approved == true` needs approval.
 *
 * How many approvers: the highest `@approvals("N")` among the policies involved, 1 when none
 * says. Those are the forbids that denied the request (the policies an approval lifts) and the
 * permits that allow it once approved (for a request denied by default because a permit asks for
 * `context.approved`). Taking the highest errs towards more approvers, never fewer.
 *
 * The probe runs with `approvalCount` set to that N, as the real request will once N approvers
 * have agreed. A policy that tests `context.approvalCount >= K` must therefore carry
 * `@approvals` of at least K, or no number of approvals will satisfy it here: the annotation is
 * the source of truth, and the approval store sets `approved` only once it is met.
 */
import type { ContextValue, GatedDecision, PolicyAction, PolicyEngine, PolicyRequest } from './types.js';

/** The actions a human approval can lift (their contexts carry `approved` and `approvalCount`). */
const GATED_ACTIONS: ReadonlySet<PolicyAction> = new Set(['IssueCredential', 'CallTool']);

/**
 * Decides an IssueCredential request: allow, deny, or approval_required with the number of
 * distinct approvers. Requests whose context has no `approved: false` (already approved, or
 * another action) are decided as given, allow or deny.
 */
export function decideWithApprovalGate(engine: PolicyEngine, req: PolicyRequest): GatedDecision {
  const first = engine.authorize(req);
  if (first.decision === 'allow') return { outcome: 'allow', decision: first };
  if (!GATED_ACTIONS.has(req.action) || req.context['approved'] !== false) {
    return { outcome: 'deny', decision: first };
  }
  // A request the engine could not evaluate (schema mismatch, an erroring policy) is not one a
  // human should be asked to wave through.
  if (first.errors.length > 0) return { outcome: 'deny', decision: first };

  const fromForbids = maxApprovals(engine, first.policyIds);
  const probe = engine.authorize(approvedBy(req, fromForbids));
  if (probe.decision !== 'allow' || probe.errors.length > 0) return { outcome: 'deny', decision: first };

  const required = Math.max(fromForbids, maxApprovals(engine, probe.policyIds));
  if (required > fromForbids) {
    // The allowing permits ask for more approvers: the request must still be allowed with them.
    const confirm = engine.authorize(approvedBy(req, required));
    if (confirm.decision !== 'allow' || confirm.errors.length > 0) {
      return { outcome: 'deny', decision: first };
    }
  }
  return { outcome: 'approval_required', decision: first, approvalsRequired: required };
}

function approvedBy(req: PolicyRequest, approvalCount: number): PolicyRequest {
  const context: Record<string, ContextValue> = { ...req.context, approved: true, approvalCount };
  return { ...req, context };
}

function maxApprovals(engine: PolicyEngine, policyIds: readonly string[]): number {
  let n = 1;
  for (const id of policyIds) n = Math.max(n, engine.approvalsRequired(id));
  return n;
}
