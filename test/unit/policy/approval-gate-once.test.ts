/**
 * The approval gate reads the first answer before asking Cedar again: a denial no approval can
 * lift, and an approval count no policy reads, cost no further evaluation.
 */
import assert from 'node:assert/strict';
import { decideWithApprovalGate } from '../../../src/policy/approval-gate.js';
import { CedarPolicyEngine } from '../../../src/policy/cedar-engine.js';
import type { PolicyEngine } from '../../../src/policy/types.js';
import {
  DEMO_AGENT,
  OTHER_AGENT,
  SHIPPED_SCHEMA,
  issueRequest,
  loadShippedPolicies,
  policyDir,
  removePolicyDirs,
  role,
} from './policy-fixtures.js';

/** `engine` with every Cedar evaluation counted, through authorize or a prepared request. */
function counted(inner: CedarPolicyEngine): { engine: PolicyEngine; evaluations: () => number } {
  let n = 0;
  const engine: PolicyEngine = {
    digest: inner.digest,
    authorize: (req) => {
      n++;
      return inner.authorize(req);
    },
    approvalsRequired: (id) => inner.approvalsRequired(id),
    prepare: (req) => {
      const prepared = inner.prepare(req);
      return {
        authorize: (overrides) => {
          n++;
          return prepared.authorize(overrides);
        },
        reads: (key, ids) => prepared.reads(key, ids),
      };
    },
  };
  return { engine, evaluations: () => n };
}

const ISSUE = 'action == Action::"IssueCredential"';

function over(policies: string): CedarPolicyEngine {
  return CedarPolicyEngine.load({
    policyDir: policyDir({ 'p.cedar': policies }),
    schemaPath: SHIPPED_SCHEMA,
  });
}

describe('approval gate: one evaluation where the answer says enough', () => {
  after(removePolicyDirs);

  it('an allowed request: one evaluation', () => {
    const { engine, evaluations } = counted(loadShippedPolicies());
    const gated = decideWithApprovalGate(engine, issueRequest(DEMO_AGENT, role('token/demo'), {}));
    assert.equal(gated.outcome, 'allow');
    assert.equal(evaluations(), 1);
  });

  it('denied by a forbid that reads no approval: one evaluation, no probe', () => {
    const { engine, evaluations } = counted(loadShippedPolicies());
    const r = role('token/deploy', { environments: ['staging', 'prod'], sensitivity: 'confidential' });
    const gated = decideWithApprovalGate(engine, issueRequest(DEMO_AGENT, r, { environment: 'dev' }));
    assert.equal(gated.outcome, 'deny');
    assert.deepEqual(gated.decision.policyIds, ['forbid-role-outside-its-environments']);
    assert.equal(evaluations(), 1);
  });

  it('a default deny where no policy that can apply reads an approval: one evaluation', () => {
    const { engine, evaluations } = counted(
      over(`@id("only-demo") permit (principal == Agent::"${DEMO_AGENT}", ${ISSUE}, resource);
        @id("other-agents-gate") forbid (principal == Agent::"${DEMO_AGENT}", ${ISSUE}, resource)
        unless { context.approved };`),
    );
    const gated = decideWithApprovalGate(engine, issueRequest(OTHER_AGENT, role('token/demo'), {}));
    assert.equal(gated.outcome, 'deny');
    assert.deepEqual(gated.decision.policyIds, []);
    assert.equal(evaluations(), 1);
  });

  it('pending on a forbid lifted by approval: two evaluations, the count unread needs no confirmation', () => {
    const { engine, evaluations } = counted(
      over(`@id("p") @approvals("2") permit (principal, ${ISSUE}, resource) when { context.approved };
        @id("f") @approvals("1") forbid (principal, ${ISSUE}, resource) unless { context.approved };`),
    );
    const gated = decideWithApprovalGate(engine, issueRequest(DEMO_AGENT, role('token/demo'), {}));
    assert.equal(gated.outcome, 'approval_required');
    assert.equal(gated.outcome === 'approval_required' ? gated.approvalsRequired : 0, 2);
    assert.equal(evaluations(), 2);
  });

  it('still confirms with the higher count when a policy reads approvalCount: three evaluations', () => {
    const { engine, evaluations } = counted(
      over(`@id("p") @approvals("3") permit (principal, ${ISSUE}, resource)
          when { context.approved && context.approvalCount >= 2 };
        @id("f") @approvals("2") forbid (principal, ${ISSUE}, resource) unless { context.approved };`),
    );
    const gated = decideWithApprovalGate(engine, issueRequest(DEMO_AGENT, role('token/demo'), {}));
    assert.equal(gated.outcome, 'approval_required');
    assert.equal(gated.outcome === 'approval_required' ? gated.approvalsRequired : 0, 3);
    assert.equal(evaluations(), 3);
  });

  it('an approved request where nothing reads the approval: one evaluation', () => {
    const { engine, evaluations } = counted(over(`@id("p") permit (principal, ${ISSUE}, resource);`));
    const req = issueRequest(DEMO_AGENT, role('token/demo'), { approved: true, approvalCount: 1 });
    const gated = decideWithApprovalGate(engine, req);
    assert.equal(gated.outcome, 'allow');
    assert.equal(evaluations(), 1);
  });
});
