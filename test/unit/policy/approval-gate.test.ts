import assert from 'node:assert/strict';
import { decideWithApprovalGate } from '../../../src/policy/approval-gate.js';
import { CedarPolicyEngine } from '../../../src/policy/cedar-engine.js';
import type { PolicyDecision, PolicyEngine, PolicyRequest } from '../../../src/policy/types.js';
import {
  DEMO_AGENT,
  SHIPPED_SCHEMA,
  beginTaskRequest,
  issueRequest,
  policyDir,
  removePolicyDirs,
  role,
} from './policy-fixtures.js';

const ISSUE = 'action == Action::"IssueCredential"';
const PERMIT_ALL = `@id("permit-all") permit (principal, ${ISSUE}, resource);\n`;

/** The engine over `policies`, wrapped to record every request it evaluates. */
function engineOver(policies: string): { engine: PolicyEngine; seen: PolicyRequest[] } {
  const inner = CedarPolicyEngine.load({
    policyDir: policyDir({ 'p.cedar': policies }),
    schemaPath: SHIPPED_SCHEMA,
  });
  const seen: PolicyRequest[] = [];
  const engine: PolicyEngine = {
    digest: inner.digest,
    authorize: (req): PolicyDecision => {
      seen.push(req);
      return inner.authorize(req);
    },
    approvalsRequired: (id) => inner.approvalsRequired(id),
  };
  return { engine, seen };
}

const prodDeploy = (context: Record<string, string | number | boolean> = {}): PolicyRequest =>
  issueRequest(DEMO_AGENT, role('token/deploy'), {
    environment: 'prod',
    changeType: 'destructive',
    ...context,
  });

describe('decideWithApprovalGate', () => {
  after(removePolicyDirs);

  it('allows what policy allows, after one evaluation', () => {
    const { engine, seen } = engineOver(PERMIT_ALL);
    const gated = decideWithApprovalGate(engine, prodDeploy());
    assert.equal(gated.outcome, 'allow');
    assert.deepEqual(gated.decision.policyIds, ['permit-all']);
    assert.equal(seen.length, 1);
  });

  it('asks for approval when a forbid is lifted by approved == true, naming it and its reason', () => {
    const { engine, seen } = engineOver(
      `${PERMIT_ALL}
      @id("needs-approval") @approvals("1") @reason("destructive in prod needs approval")
      forbid (principal, ${ISSUE}, resource) when { context.changeType == "destructive" }
      unless { context.approved };`,
    );
    const gated = decideWithApprovalGate(engine, prodDeploy());
    assert.equal(gated.outcome, 'approval_required');
    assert.equal(gated.outcome === 'approval_required' && gated.approvalsRequired, 1);
    // The decision is the first (deny) one: what the approval lifts, and why.
    assert.equal(gated.decision.decision, 'deny');
    assert.deepEqual(gated.decision.policyIds, ['needs-approval']);
    assert.deepEqual(gated.decision.reasons, ['destructive in prod needs approval']);
    assert.equal(seen.length, 2);
    assert.equal(seen[1]?.context['approved'], true);
    assert.equal(seen[1]?.context['approvalCount'], 1);
    assert.equal(seen[0]?.context['approved'], false, 'the caller’s request is not modified');
  });

  it('takes the highest @approvals among the forbids an approval lifts', () => {
    const { engine, seen } = engineOver(
      `${PERMIT_ALL}
      @id("one") @approvals("1") forbid (principal, ${ISSUE}, resource) unless { context.approved };
      @id("three") @approvals("3") forbid (principal, ${ISSUE}, resource) unless { context.approved };
      @id("plain") forbid (principal, ${ISSUE}, resource) unless { context.approved };`,
    );
    const gated = decideWithApprovalGate(engine, prodDeploy());
    assert.equal(gated.outcome === 'approval_required' && gated.approvalsRequired, 3);
    assert.deepEqual([...gated.decision.policyIds].sort(), ['one', 'plain', 'three']);
    assert.equal(seen[1]?.context['approvalCount'], 3, 'probed as the request will look once approved');
  });

  it('lifts a default deny when a permit asks for approval (1 approver, or its annotation)', () => {
    const plain = engineOver(
      `@id("approved-deploys") permit (principal, ${ISSUE}, resource) when { context.approved };`,
    );
    const one = decideWithApprovalGate(plain.engine, prodDeploy());
    assert.equal(one.outcome, 'approval_required');
    assert.equal(one.outcome === 'approval_required' && one.approvalsRequired, 1);
    assert.deepEqual(one.decision.policyIds, [], 'a default deny: no forbid to name');

    const annotated = engineOver(
      `@id("approved-deploys") @approvals("2")
      permit (principal, ${ISSUE}, resource) when { context.approved };`,
    );
    const two = decideWithApprovalGate(annotated.engine, prodDeploy());
    assert.equal(two.outcome === 'approval_required' && two.approvalsRequired, 2);
    assert.equal(annotated.seen.length, 3, 'confirmed with the count the permit asks for');
    assert.equal(annotated.seen[2]?.context['approvalCount'], 2);
  });

  it('honours policies that test approvalCount, when their annotation says as much', () => {
    const forbid = engineOver(
      `${PERMIT_ALL}
      @id("two-person") @approvals("2")
      forbid (principal, ${ISSUE}, resource) unless { context.approved && context.approvalCount >= 2 };`,
    );
    const gated = decideWithApprovalGate(forbid.engine, prodDeploy());
    assert.equal(gated.outcome === 'approval_required' && gated.approvalsRequired, 2);

    // Without the annotation no count of approvals is ever probed that could satisfy it: the
    // annotation is the source of truth (approval-gate.ts), so the request is simply denied.
    const unannotated = engineOver(
      `${PERMIT_ALL}
      @id("two-person") forbid (principal, ${ISSUE}, resource)
      unless { context.approved && context.approvalCount >= 2 };`,
    );
    assert.equal(decideWithApprovalGate(unannotated.engine, prodDeploy()).outcome, 'deny');
  });

  it('denies what an approval would not allow, with the first decision', () => {
    const { engine, seen } = engineOver(
      `${PERMIT_ALL}
      @id("needs-approval") forbid (principal, ${ISSUE}, resource) unless { context.approved };
      @id("never") @reason("never in prod") forbid (principal, ${ISSUE}, resource)
      when { context.environment == "prod" };`,
    );
    const gated = decideWithApprovalGate(engine, prodDeploy());
    assert.equal(gated.outcome, 'deny');
    assert.deepEqual([...gated.decision.policyIds].sort(), ['needs-approval', 'never']);
    assert.equal(gated.decision.policyDigest, engine.digest);
    assert.equal(seen.length, 2);

    const noPermit = engineOver(`@id("p") permit (principal, ${ISSUE}, resource) when { false };`);
    const denied = decideWithApprovalGate(noPermit.engine, prodDeploy());
    assert.equal(denied.outcome, 'deny');
    assert.deepEqual(denied.decision.policyIds, []);
  });

  it('does not probe another action', () => {
    const { engine, seen } = engineOver(`@id("p") permit (principal, action, resource) when { false };`);
    assert.equal(decideWithApprovalGate(engine, beginTaskRequest(DEMO_AGENT, 'dev')).outcome, 'deny');
    assert.equal(seen.length, 1);
  });

  it('an approved request is decided as given when it holds what the gate needs now', () => {
    const { engine } = engineOver(
      `${PERMIT_ALL}
      @id("two") @approvals("2") forbid (principal, ${ISSUE}, resource) unless { context.approved };`,
    );
    const gated = decideWithApprovalGate(engine, prodDeploy({ approved: true, approvalCount: 2 }));
    assert.equal(gated.outcome, 'allow');
    assert.deepEqual(gated.decision.policyIds, ['permit-all']);
    const nothingPermits = engineOver(`@id("p") permit (principal, action, resource) when { false };`);
    const denied = decideWithApprovalGate(
      nothingPermits.engine,
      prodDeploy({ approved: true, approvalCount: 1 }),
    );
    assert.equal(denied.outcome, 'deny');
  });

  it('an approval that no longer meets a raised @approvals is not enough: approval is required again', () => {
    // Approved by one when the gate said @approvals("1"); the gate now says 2.
    const { engine } = engineOver(
      `${PERMIT_ALL}
      @id("raised") @approvals("2") @reason("two approvers now")
      forbid (principal, ${ISSUE}, resource) unless { context.approved };`,
    );
    const gated = decideWithApprovalGate(engine, prodDeploy({ approved: true, approvalCount: 1 }));
    assert.equal(gated.outcome, 'approval_required');
    assert.equal(gated.outcome === 'approval_required' && gated.approvalsRequired, 2);
    assert.deepEqual(gated.decision.policyIds, ['raised']);
    // An approval the gate no longer asks for at all is simply not needed.
    const lifted = engineOver(PERMIT_ALL);
    assert.equal(
      decideWithApprovalGate(lifted.engine, prodDeploy({ approved: true, approvalCount: 1 })).outcome,
      'allow',
    );
  });

  it('never turns a request the engine could not evaluate into an approval', () => {
    const { engine, seen } = engineOver(
      `@id("p") permit (principal, ${ISSUE}, resource) when { context.approved };`,
    );
    const malformed = prodDeploy({ unexpected: 'field' });
    const gated = decideWithApprovalGate(engine, malformed);
    assert.equal(gated.outcome, 'deny');
    assert.match(gated.decision.errors.join('\n'), /unexpected/);
    assert.equal(seen.length, 1);
  });
});
