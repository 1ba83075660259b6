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
 *
 * An approved request is checked against the policy in force now, not the one it was approved
 * under: when an `@approvals` was raised since (or a new gate appeared) and the request holds fewer
 * approvals than the gate now needs, it is `approval_required` again with the new number, never
 * issued on the old approval.
 */
import type { ContextValue, GatedDecision, PolicyAction, PolicyEngine, PolicyRequest } from './types.js';

/** The actions a human approval can lift (their contexts carry `approved` and `approvalCount`). */
const GATED_ACTIONS: ReadonlySet<PolicyAction> = new Set(['IssueCredential', 'CallTool']);

/**
 * Decides an IssueCredential request: allow, deny, or approval_required with the number of
 * distinct approvers. Another action is decided as given; an approved request as given too,
 * unless it holds fewer approvals than the gate now needs (then approval_required again).
 */
export function decideWithApprovalGate(engine: PolicyEngine, req: PolicyRequest): GatedDecision {
  if (req.action === 'IssueCredential' && req.context['approved'] === true)
    return decideApproved(engine, req);
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

/**
 * A request holding approvals: decided as given, unless the same request without them now needs
 * more approvers than it holds (`approvalCount`).
 */
function decideApproved(engine: PolicyEngine, req: PolicyRequest): GatedDecision {
  const held = req.context['approvalCount'];
  const unapproved: PolicyRequest = {
    ...req,
    context: { ...req.context, approved: false, approvalCount: 0 },
  };
  const now = decideWithApprovalGate(engine, unapproved);
  if (now.outcome === 'approval_required' && (typeof held !== 'number' || now.approvalsRequired > held)) {
    return now;
  }
  const decision = engine.authorize(req);
  return { outcome: decision.decision === 'allow' ? 'allow' : 'deny', decision };
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
