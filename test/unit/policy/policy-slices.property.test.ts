/**
 * Policy slicing keeps the whole set's semantics: the same requests decided by an engine that
 * slices (and gates approvals from one evaluation where it can) and by one that evaluates the
 * whole set through `authorize` alone (the approval gate's original three-evaluation path) come
 * out the same: outcome, deciding policies, errors and approvers required. The slicing engine
 * also projects each request to what its slice reads and remembers answers (policy-projection.ts),
 * keyed by value class where a slice only compares a context key with literals
 * (policy-value-classes.ts), so the same comparison covers all three. Over generated policy sets and requests, and over the
 * shipped policies with their cases.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { readPolicyCaseRequests } from '../../../src/cli/policy.js';
import { authorizeOnly, decideWithApprovalGate } from '../../../src/policy/approval-gate.js';
import { CedarPolicyEngine } from '../../../src/policy/cedar-engine.js';
import type { GatedDecision, PolicyEngine, PolicyRequest } from '../../../src/policy/types.js';
import {
  SHIPPED_CASES,
  SHIPPED_POLICY_DIR,
  SHIPPED_SCHEMA,
  beginTaskRequest,
  issueRequest,
  policyDir,
  removePolicyDirs,
  role,
} from './policy-fixtures.js';

function gate(engine: PolicyEngine, req: PolicyRequest): GatedDecision {
  if (req.action === 'IssueCredential' || req.action === 'CallTool')
    return decideWithApprovalGate(engine, req);
  const decision = engine.authorize(req);
  return { outcome: decision.decision === 'allow' ? 'allow' : 'deny', decision };
}

/** What must agree: order of the deciding policies is not part of Cedar's answer. */
function comparable(g: GatedDecision): unknown {
  return {
    outcome: g.outcome,
    decision: g.decision.decision,
    policyIds: [...g.decision.policyIds].sort(),
    reasons: [...g.decision.reasons].sort(),
    errors: [...g.decision.errors].sort(),
    approvalsRequired: g.outcome === 'approval_required' ? g.approvalsRequired : undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Generated policy sets: scopes of every shape, conditions that read approvals or not
// ---------------------------------------------------------------------------------------------

const AGENTS = [0, 1, 2, 3].map((i) => `spiffe://example.org/agents/a${i}`);
const GROUPS_OF: Record<string, string[]> = {
  [AGENTS[0] as string]: [],
  [AGENTS[1] as string]: ['g0'],
  [AGENTS[2] as string]: ['g0', 'g1'],
  [AGENTS[3] as string]: ['g1'],
};
const ROLES = [
  role('token/r0', { sensitivity: 'internal' }),
  role('token/r1', { sensitivity: 'restricted', environments: ['prod'] }),
  role('vault/r2', { sensitivity: 'confidential' }),
];

const principalScope = fc.constantFrom(
  'principal',
  `principal == Agent::"${AGENTS[1]}"`,
  `principal == Agent::"${AGENTS[3]}"`,
  'principal in AgentGroup::"g0"',
  'principal in AgentGroup::"g1"',
  'principal is Agent',
  'principal is Agent in AgentGroup::"g1"',
);
const issueScope = fc.record({
  resource: fc.constantFrom(
    'resource',
    'resource == Role::"token/r0"',
    'resource == Role::"vault/r2"',
    'resource in Backend::"vault"',
    'resource is Role',
    'resource is Role in Backend::"token"',
  ),
  when: fc.constantFrom(
    '',
    'when { context.environment == "prod" }',
    'when { context.approved }',
    'when { context.approvalCount >= 2 }',
    'when { context.breakGlass }',
    'when { resource.sensitivity == "restricted" }',
    'when { context.ttlSeconds <= 600 } unless { context.approved }',
    'when { context.changeType == "destructive" } unless { context.approved || context.breakGlass }',
    // Reads projection must keep (policy-projection.ts): attributes, `has`, records, literals.
    'when { principal.path like "/agents/a1*" && principal.trustDomain == "example.org" }',
    'when { resource.environments.contains(context.environment) }',
    'when { context has agentContext && context.agentContext has tool_name }',
    'unless { context has agentContext && context.agentContext has tool_name && context.agentContext.tool_name == "rm" }',
    'when { resource has description && resource.description == "test role" }',
    'when { Role::"token/r0".sensitivity == resource.sensitivity }',
    'when { context.taskRoles.containsAny(["token/r0"]) || context.taskCredentialCount > 1 }',
    // Value classes (policy-value-classes.ts): keys compared with literals only, and keys that are not.
    'when { context.ttlSeconds > 300 && context.ttlSeconds != 900 && ["dev", "staging"].contains(context.environment) }',
    'when { context.ttlSeconds < 1200 } unless { context.changeType != "read" }',
    'when { context.ttlSeconds > 300 && context.ttlSeconds + 100 > 1000 }',
    'when { context.ttlSeconds == context.taskCredentialCount || context.environment like "pr*" }',
  ),
});
const beginScope = fc.record({
  resource: fc.constantFrom('resource', 'resource == Environment::"prod"', 'resource is Environment'),
  when: fc.constantFrom('', 'when { context.ttlSeconds <= 900 }', 'when { context.environment == "dev" }'),
});
const policy = fc
  .record({
    effect: fc.constantFrom('permit', 'forbid'),
    approvals: fc.constantFrom('', '@approvals("1")', '@approvals("2")', '@approvals("3")'),
    principal: principalScope,
    body: fc.oneof(
      issueScope.map((s) => ({ action: 'action == Action::"IssueCredential"', ...s })),
      beginScope.map((s) => ({ action: 'action == Action::"BeginTask"', ...s })),
      fc.constant({
        action: 'action in [Action::"IssueCredential", Action::"BeginTask"]',
        resource: 'resource',
        when: 'when { context.ttlSeconds <= 900 }',
      }),
      fc.constant({ action: 'action', resource: 'resource', when: '' }),
    ),
  })
  .map(
    (p) => (id: number) =>
      `@id("p${id}") ${p.approvals} @reason("r${id}")\n${p.effect} (${p.principal}, ${p.body.action}, ${p.body.resource})\n${p.body.when};`,
  );
const policySet = fc.array(policy, { minLength: 1, maxLength: 24 });

const request = fc.oneof(
  fc
    .record({
      agent: fc.constantFrom(...AGENTS),
      role: fc.constantFrom(...ROLES),
      environment: fc.constantFrom('dev', 'prod'),
      ttlSeconds: fc.oneof(fc.constantFrom(300, 600, 900, 1200, 1800), fc.integer({ min: 0, max: 2400 })),
      changeType: fc.constantFrom('read', 'destructive'),
      approved: fc.boolean(),
      approvalCount: fc.integer({ min: 0, max: 3 }),
      breakGlass: fc.boolean(),
      taskRoles: fc.subarray(['token/r0', 'vault/r2']),
      taskCredentialCount: fc.integer({ min: 0, max: 3 }),
      agentContext: fc.option(
        fc.constantFrom<Record<string, string>>({}, { tool_name: 'rm' }, { tool_name: 'ls', model: 'm' }),
        { nil: undefined },
      ),
    })
    .map(({ agent, role: r, agentContext, ...context }) =>
      issueRequest(agent, r, agentContext === undefined ? context : { ...context, agentContext }),
    ),
  fc
    .tuple(fc.constantFrom(...AGENTS), fc.constantFrom('dev', 'prod'))
    .map(([agent, env]) => beginTaskRequest(agent, env)),
);

describe('policy slicing: the same decisions as the whole set', () => {
  after(removePolicyDirs);

  it('over generated policy sets and requests, gated and plain', () => {
    fc.assert(
      fc.property(policySet, fc.array(request, { minLength: 10, maxLength: 30 }), (makers, requests) => {
        const dir = policyDir({ 'p.cedar': makers.map((make, i) => make(i)).join('\n\n') });
        const options = {
          policyDir: dir,
          schemaPath: SHIPPED_SCHEMA,
          agentGroups: (id: string) => GROUPS_OF[id] ?? [],
        };
        const sliced = CedarPolicyEngine.load(options);
        const whole = authorizeOnly(CedarPolicyEngine.load({ ...options, slicing: false }));
        for (const req of requests) {
          assert.deepEqual(comparable(gate(sliced, req)), comparable(gate(whole, req)), JSON.stringify(req));
        }
      }),
      { numRuns: 60 },
    );
  });

  it('over the shipped policies and every shipped case', () => {
    let groups: readonly string[] = [];
    const options = { policyDir: SHIPPED_POLICY_DIR, agentGroups: () => groups };
    const sliced = CedarPolicyEngine.load(options);
    const whole = authorizeOnly(CedarPolicyEngine.load({ ...options, slicing: false }));
    const cases = readPolicyCaseRequests(SHIPPED_CASES);
    assert.ok(cases.length > 20, 'the shipped cases were read');
    for (const c of cases) {
      groups = c.groups;
      assert.deepEqual(comparable(gate(sliced, c.request)), comparable(gate(whole, c.request)), c.name);
      // The same request approved by 0..3 people: the approved path of the gate agrees too.
      if (c.request.action !== 'IssueCredential') continue;
      for (const approvalCount of [1, 2, 3]) {
        const approved = { ...c.request, context: { ...c.request.context, approved: true, approvalCount } };
        assert.deepEqual(comparable(gate(sliced, approved)), comparable(gate(whole, approved)), c.name);
      }
    }
  });
});
