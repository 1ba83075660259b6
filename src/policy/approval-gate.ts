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
import type {
  ContextValue,
  GatedDecision,
  PolicyAction,
  PolicyDecision,
  PolicyEngine,
  PolicyRequest,
  PreparedPolicyRequest,
} from './types.js';

/** The actions a human approval can lift (their contexts carry `approved` and `approvalCount`). */
const GATED_ACTIONS: ReadonlySet<PolicyAction> = new Set(['IssueCredential', 'CallTool']);
/** The context keys an approval changes. */
const APPROVAL_KEYS = ['approved', 'approvalCount'] as const;

/**
 * Decides an IssueCredential request: allow, deny, or approval_required with the number of
 * distinct approvers. Another action is decided as given; an approved request as given too,
 * unless it holds fewer approvals than the gate now needs (then approval_required again).
 *
 * One evaluation decides most requests: an allowed one, and a denied one whose answer shows no
 * approval can lift it (a deciding forbid that reads no approval key, or a default deny where no
 * policy that can apply reads one). Only a request an approval may lift is probed again.
 */
export function decideWithApprovalGate(engine: PolicyEngine, req: PolicyRequest): GatedDecision {
  const prepared = prepare(engine, req);
  if (req.action === 'IssueCredential' && req.context['approved'] === true)
    return decideApproved(engine, prepared, req);
  return decideUnapproved(engine, prepared, req, undefined);
}

/** The gate for a request without approvals (`as`: context overrides making it so). */
function decideUnapproved(
  engine: PolicyEngine,
  prepared: PreparedPolicyRequest,
  req: PolicyRequest,
  as: Readonly<Record<string, ContextValue>> | undefined,
): GatedDecision {
  const first = prepared.authorize(as);
  if (first.decision === 'allow') return { outcome: 'allow', decision: first };
  const approved = as === undefined ? req.context['approved'] : as['approved'];
  if (!GATED_ACTIONS.has(req.action) || approved !== false) return { outcome: 'deny', decision: first };
  // A request the engine could not evaluate (schema mismatch, an erroring policy) is not one a
  // human should be asked to wave through.
  if (first.errors.length > 0 || !liftable(prepared, first)) return { outcome: 'deny', decision: first };

  const fromForbids = maxApprovals(engine, first.policyIds);
  const probe = prepared.authorize(approvedBy(fromForbids));
  if (probe.decision !== 'allow' || probe.errors.length > 0) return { outcome: 'deny', decision: first };

  const required = Math.max(fromForbids, maxApprovals(engine, probe.policyIds));
  // The allowing permits ask for more approvers: the request must still be allowed with them
  // (the same answer as the probe's when no policy reads the count).
  if (required > fromForbids && prepared.reads('approvalCount')) {
    const confirm = prepared.authorize(approvedBy(required));
    if (confirm.decision !== 'allow' || confirm.errors.length > 0) {
      return { outcome: 'deny', decision: first };
    }
  }
  return { outcome: 'approval_required', decision: first, approvalsRequired: required };
}

/**
 * Could an approval change this denial? Not when a deciding forbid reads no approval key (it
 * holds whatever the approval says), nor, on a default deny, when no policy that can apply reads one.
 */
function liftable(prepared: PreparedPolicyRequest, denied: PolicyDecision): boolean {
  const readsApproval = (ids?: readonly string[]): boolean =>
    APPROVAL_KEYS.some((k) => prepared.reads(k, ids));
  if (denied.policyIds.length === 0) return readsApproval();
  return denied.policyIds.every((id) => readsApproval([id]));
}

/**
 * A request holding approvals: decided as given, unless the same request without them now needs
 * more approvers than it holds (`approvalCount`).
 */
function decideApproved(
  engine: PolicyEngine,
  prepared: PreparedPolicyRequest,
  req: PolicyRequest,
): GatedDecision {
  const held = req.context['approvalCount'];
  const now = decideUnapproved(engine, prepared, req, { approved: false, approvalCount: 0 });
  if (now.outcome === 'approval_required' && (typeof held !== 'number' || now.approvalsRequired > held)) {
    return now;
  }
  // Nothing that can apply reads the approval: the request as given decides as it did without.
  const decision = APPROVAL_KEYS.some((k) => prepared.reads(k)) ? prepared.authorize() : now.decision;
  return { outcome: decision.decision === 'allow' ? 'allow' : 'deny', decision };
}

/** The engine's prepared request, or one that asks `authorize` each time and assumes every key is read. */
function prepare(engine: PolicyEngine, req: PolicyRequest): PreparedPolicyRequest {
  if (engine.prepare !== undefined) return engine.prepare(req);
  return {
    authorize: (overrides) =>
      engine.authorize(overrides ? { ...req, context: { ...req.context, ...overrides } } : req),
    reads: () => true,
  };
}

/**
 * The engine seen through `authorize` alone: nothing prepared, so the gate probes every denial
 * and confirms every raised count, as it did before it read answers (the bench's "before").
 */
export function authorizeOnly(engine: PolicyEngine): PolicyEngine {
  return {
    digest: engine.digest,
    authorize: (req) => engine.authorize(req),
    approvalsRequired: (id) => engine.approvalsRequired(id),
  };
}

function approvedBy(approvalCount: number): Record<string, ContextValue> {
  return { approved: true, approvalCount };
}

function maxApprovals(engine: PolicyEngine, policyIds: readonly string[]): number {
  let n = 1;
  for (const id of policyIds) n = Math.max(n, engine.approvalsRequired(id));
  return n;
}
