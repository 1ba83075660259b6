/**
 * Every path through the shipped example policies, decided as the broker decides them: with the
 * dev stack's agent catalog, and IssueCredential through the approval gate.
 */
import assert from 'node:assert/strict';
import type { RoleDefinition } from '../../../src/credentials/backend.js';
import { decideWithApprovalGate } from '../../../src/policy/approval-gate.js';
import { ADMIN_ACTIONS, type GatedDecision, type PolicyRequest } from '../../../src/policy/types.js';
import {
  DEMO_AGENT,
  OTHER_AGENT,
  SECURITY_ONCALL,
  adminRequest,
  beginTaskRequest,
  breakGlassRequest,
  decideApprovalRequest,
  issueRequest,
  role,
  loadShippedPolicies,
} from './policy-fixtures.js';

const GATEWAY = 'spiffe://example.org/gateways/mcp';
// People at the console, with their IdP's groups claim.
const SECURITY_PERSON = {
  type: 'Human',
  sub: 'u-alice',
  email: 'alice@example.org',
  groups: ['security'],
} as const;
const OTHER_PERSON = {
  type: 'Human',
  sub: 'u-bob',
  email: 'bob@example.org',
  groups: ['engineering'],
} as const;
const engine = loadShippedPolicies();

// The dev stack's roles (frozen, as configuration freezes them).
const frozen = (r: RoleDefinition): RoleDefinition =>
  Object.freeze({ ...r, environments: Object.freeze([...r.environments]) as string[] });
const DEMO = frozen(role('token/demo', { environments: ['dev'], maxTtlSeconds: 900 }));
const DEPLOY = frozen(
  role('token/deploy', { environments: ['staging', 'prod'], sensitivity: 'confidential' }),
);
const ADMIN = frozen(role('token/admin', { environments: ['prod'], sensitivity: 'confidential' }));
const LOGS = frozen(role('token/logs-read'));
const SECRETS = frozen(role('token/secrets-read', { sensitivity: 'confidential' }));
const VAULT_DB = frozen(role('vault/db-readonly', { sensitivity: 'confidential' }));
const CUSTOMER_DATA = frozen(role('token/customer-data', { sensitivity: 'restricted' }));

type Expect =
  | { outcome: 'allow' | 'deny'; policies: string[] }
  | { outcome: 'approval_required'; policies: string[]; approvals: number };

interface Case {
  name: string;
  request: PolicyRequest;
  expect: Expect;
}

const allow = (...policies: string[]): Expect => ({ outcome: 'allow', policies });
const deny = (...policies: string[]): Expect => ({ outcome: 'deny', policies });
const approval = (approvals: number, ...policies: string[]): Expect => ({
  outcome: 'approval_required',
  policies,
  approvals,
});

const prod = { environment: 'prod' };
const CASES: Case[] = [
  // Tasks.
  {
    name: 'example.org agents work in dev',
    request: beginTaskRequest(OTHER_AGENT, 'dev'),
    expect: allow('begin-task-known-envs'),
  },
  {
    name: 'example.org agents work in staging',
    request: beginTaskRequest(OTHER_AGENT, 'staging'),
    expect: allow('begin-task-known-envs'),
  },
  {
    name: 'example.org agents do not work in prod',
    request: beginTaskRequest(OTHER_AGENT, 'prod'),
    expect: deny(),
  },
  {
    name: 'the demo agent works in prod',
    request: beginTaskRequest(DEMO_AGENT, 'prod'),
    expect: allow('begin-task-demo-prod'),
  },
  {
    name: 'other trust domains do not work',
    request: beginTaskRequest('spiffe://partner.test/agents/demo', 'dev'),
    expect: deny(),
  },

  // The demo token.
  {
    name: 'demo token in dev',
    request: issueRequest(DEMO_AGENT, DEMO),
    expect: allow('demo-agent-token-demo-dev'),
  },
  {
    name: 'demo token outside its environments',
    request: issueRequest(DEMO_AGENT, DEMO, prod),
    expect: deny('forbid-role-outside-its-environments'),
  },
  { name: 'demo token, other agent', request: issueRequest(OTHER_AGENT, DEMO), expect: deny() },

  // Deploying to prod.
  {
    name: 'prod deploy, write',
    request: issueRequest(DEMO_AGENT, DEPLOY, { ...prod, changeType: 'write' }),
    expect: allow('demo-agent-token-deploy-prod'),
  },
  {
    name: 'prod deploy, destructive: one approval',
    request: issueRequest(DEMO_AGENT, DEPLOY, { ...prod, changeType: 'destructive' }),
    expect: approval(1, 'prod-destructive-needs-approval'),
  },
  {
    name: 'prod deploy, destructive, approved',
    request: issueRequest(DEMO_AGENT, DEPLOY, {
      ...prod,
      changeType: 'destructive',
      approved: true,
      approvalCount: 1,
    }),
    expect: allow('demo-agent-token-deploy-prod'),
  },
  {
    name: 'prod deploy, destructive, TTL beyond the permit: no approval can help',
    request: issueRequest(DEMO_AGENT, DEPLOY, { ...prod, changeType: 'destructive', ttlSeconds: 901 }),
    expect: deny('prod-destructive-needs-approval'),
  },
  {
    name: 'prod deploy, destructive, break-glass stands in for the approval',
    request: issueRequest(DEMO_AGENT, DEPLOY, { ...prod, changeType: 'destructive', breakGlass: true }),
    expect: allow('demo-agent-token-deploy-prod', 'break-glass-permits-non-restricted'),
  },

  // The prod admin token: two approvers.
  {
    name: 'prod admin token, admin change: two approvals',
    request: issueRequest(DEMO_AGENT, ADMIN, { ...prod, changeType: 'admin' }),
    expect: approval(2, 'prod-destructive-needs-approval', 'prod-admin-role-needs-two-approvals'),
  },
  {
    name: 'prod admin token, declared read: still two approvals',
    request: issueRequest(DEMO_AGENT, ADMIN, prod),
    expect: approval(2, 'prod-admin-role-needs-two-approvals'),
  },
  {
    name: 'prod admin token, approved by two',
    request: issueRequest(DEMO_AGENT, ADMIN, {
      ...prod,
      changeType: 'admin',
      approved: true,
      approvalCount: 2,
    }),
    expect: allow('demo-agent-token-admin-prod'),
  },
  {
    name: 'prod admin token under break-glass: still two approvals',
    request: issueRequest(DEMO_AGENT, ADMIN, { ...prod, changeType: 'admin', breakGlass: true }),
    expect: approval(2, 'prod-admin-role-needs-two-approvals'),
  },

  // Chaining.
  {
    name: 'prod logs',
    request: issueRequest(DEMO_AGENT, LOGS, prod),
    expect: allow('demo-agent-read-logs-and-secrets'),
  },
  {
    name: 'prod secrets in a fresh task',
    request: issueRequest(DEMO_AGENT, SECRETS, prod),
    expect: allow('demo-agent-read-logs-and-secrets'),
  },
  {
    name: 'prod secrets after prod logs: denied, not approvable',
    request: issueRequest(DEMO_AGENT, SECRETS, {
      ...prod,
      taskRoles: ['token/logs-read'],
      taskCredentialCount: 1,
    }),
    expect: deny('prod-no-secrets-after-logs'),
  },
  {
    name: 'dev secrets after dev logs',
    request: issueRequest(DEMO_AGENT, SECRETS, { taskRoles: ['token/logs-read'] }),
    expect: allow('demo-agent-read-logs-and-secrets'),
  },
  {
    name: 'prod logs after prod secrets: denied too (the pair is forbidden in either order)',
    request: issueRequest(DEMO_AGENT, LOGS, {
      ...prod,
      taskRoles: ['token/secrets-read'],
      taskBackends: ['token'],
    }),
    expect: deny('prod-no-logs-after-secrets'),
  },
  {
    name: 'prod logs after a vault role: denied',
    request: issueRequest(DEMO_AGENT, LOGS, {
      ...prod,
      taskRoles: ['vault/db-readonly'],
      taskBackends: ['vault'],
      breakGlass: true,
    }),
    expect: deny('prod-no-logs-after-secrets'),
  },
  {
    name: 'dev logs after dev secrets',
    request: issueRequest(DEMO_AGENT, LOGS, { taskRoles: ['token/secrets-read'], taskBackends: ['token'] }),
    expect: allow('demo-agent-read-logs-and-secrets'),
  },
  {
    name: 'prod secrets after logs under break-glass: still denied',
    request: issueRequest(DEMO_AGENT, SECRETS, { ...prod, taskRoles: ['token/logs-read'], breakGlass: true }),
    expect: deny('prod-no-secrets-after-logs'),
  },
  {
    name: 'a vault role after logs counts as secrets',
    request: issueRequest(OTHER_AGENT, VAULT_DB, {
      ...prod,
      taskRoles: ['token/logs-read'],
      breakGlass: true,
    }),
    expect: deny('prod-no-secrets-after-logs'),
  },

  // Break-glass.
  {
    name: 'break-glass, non-restricted role, any agent',
    request: issueRequest(OTHER_AGENT, VAULT_DB, { ...prod, breakGlass: true }),
    expect: allow('break-glass-permits-non-restricted'),
  },
  {
    name: 'no break-glass, same request',
    request: issueRequest(OTHER_AGENT, VAULT_DB, prod),
    expect: deny(),
  },
  {
    name: 'break-glass, restricted role',
    request: issueRequest(OTHER_AGENT, CUSTOMER_DATA, { ...prod, breakGlass: true }),
    expect: deny('break-glass-never-restricted'),
  },
  {
    name: 'break-glass, declared restricted',
    request: issueRequest(DEMO_AGENT, DEPLOY, { ...prod, sensitivity: 'restricted', breakGlass: true }),
    expect: deny('break-glass-never-restricted'),
  },
  {
    name: 'break-glass keeps roles in their environments',
    request: issueRequest(OTHER_AGENT, DEMO, { ...prod, breakGlass: true }),
    expect: deny('forbid-role-outside-its-environments'),
  },

  // Approvers.
  {
    name: 'security decides approvals',
    request: decideApprovalRequest(SECURITY_ONCALL, DEPLOY),
    expect: allow('security-may-decide-approvals'),
  },
  {
    name: 'agents do not decide approvals',
    request: decideApprovalRequest(OTHER_AGENT, DEPLOY),
    expect: deny(),
  },

  {
    name: 'people in the IdP group security decide approvals',
    request: decideApprovalRequest(SECURITY_PERSON, DEPLOY),
    expect: allow('security-people-may-decide-approvals'),
  },
  {
    name: 'people outside it do not',
    request: decideApprovalRequest(OTHER_PERSON, DEPLOY),
    expect: deny(),
  },
  {
    name: 'a person whose email looks like security is not in the group',
    request: decideApprovalRequest({ ...OTHER_PERSON, email: 'security@example.org' }, DEPLOY),
    expect: deny(),
  },

  // Granting break-glass.
  {
    name: 'security grants break-glass',
    request: breakGlassRequest(SECURITY_ONCALL, DEPLOY),
    expect: allow('security-may-grant-break-glass'),
  },
  {
    name: 'no grant over an hour',
    request: breakGlassRequest(SECURITY_ONCALL, DEPLOY, { ttlSeconds: 3601 }),
    expect: deny(),
  },
  {
    name: 'no grant for a restricted role',
    request: breakGlassRequest(SECURITY_ONCALL, CUSTOMER_DATA),
    expect: deny(),
  },
  {
    name: 'no grant without a reason',
    request: breakGlassRequest(SECURITY_ONCALL, DEPLOY, { reason: '' }),
    expect: deny(),
  },
  { name: 'agents do not grant break-glass', request: breakGlassRequest(DEMO_AGENT, DEPLOY), expect: deny() },
  {
    name: 'security people grant break-glass',
    request: breakGlassRequest(SECURITY_PERSON, DEPLOY),
    expect: allow('security-people-may-grant-break-glass'),
  },
  {
    name: 'security people grant no break-glass for a restricted role',
    request: breakGlassRequest(SECURITY_PERSON, CUSTOMER_DATA),
    expect: deny(),
  },
  {
    name: 'other people grant no break-glass',
    request: breakGlassRequest(OTHER_PERSON, DEPLOY),
    expect: deny(),
  },

  // Administration.
  ...ADMIN_ACTIONS.flatMap((action): Case[] => [
    {
      name: `security: ${action}`,
      request: adminRequest(SECURITY_ONCALL, action),
      expect: allow('security-may-administer'),
    },
    { name: `agents: no ${action}`, request: adminRequest(DEMO_AGENT, action), expect: deny() },
    {
      name: `security people: ${action}`,
      request: adminRequest(SECURITY_PERSON, action),
      expect: allow('security-people-may-administer'),
    },
    { name: `other people: no ${action}`, request: adminRequest(OTHER_PERSON, action), expect: deny() },
  ]),

  // Tool calls through a gateway (AuthZEN).
  {
    name: 'a gateway may ask for access decisions',
    request: gatewayRequest(GATEWAY),
    expect: allow('gateways-may-evaluate-access'),
  },
  { name: 'an agent may not ask for access decisions', request: gatewayRequest(DEMO_AGENT), expect: deny() },
  {
    name: 'a read tool call in a task',
    request: toolRequest({}),
    expect: allow('agents-may-call-read-tools-in-a-task'),
  },
  { name: 'no tool calls outside a task', request: toolRequest({ hasTask: false }), expect: deny() },
  {
    name: 'a destructive tool call needs one approval',
    request: toolRequest({ changeType: 'destructive' }),
    expect: approval(1, 'tool-writes-need-approval'),
  },
  {
    name: 'restricted data never through a tool',
    request: toolRequest({ sensitivity: 'restricted' }),
    expect: deny('no-restricted-data-through-tools'),
  },
];

function gatewayRequest(principal: string): PolicyRequest {
  return { principal, action: 'EvaluateAccess', resource: { type: 'Broker' }, context: {} };
}

function toolRequest(over: Record<string, string | boolean>): PolicyRequest {
  return {
    principal: DEMO_AGENT,
    action: 'CallTool',
    resource: { type: 'Tool', id: 'search_logs' },
    context: {
      hasTask: true,
      environment: 'dev',
      taskRoles: [],
      taskCredentialCount: 0,
      taskAgeSeconds: 5,
      sensitivity: 'internal',
      changeType: 'read',
      approved: false,
      approvalCount: 0,
      ...over,
    },
  };
}

function decide(request: PolicyRequest): GatedDecision {
  if (request.action === 'IssueCredential' || request.action === 'CallTool')
    return decideWithApprovalGate(engine, request);
  const decision = engine.authorize(request);
  return decision.decision === 'allow' ? { outcome: 'allow', decision } : { outcome: 'deny', decision };
}

describe('the shipped example policies', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const got = decide(c.request);
      assert.deepEqual(got.decision.errors, []);
      assert.equal(got.outcome, c.expect.outcome);
      assert.deepEqual([...got.decision.policyIds].sort(), [...c.expect.policies].sort());
      if (c.expect.outcome === 'approval_required') {
        assert.equal(got.outcome === 'approval_required' && got.approvalsRequired, c.expect.approvals);
      }
    });
  }

  it('every shipped policy decides at least one case above, and carries an @reason', () => {
    const deciding = new Set<string>();
    for (const c of CASES) {
      const got = decide(c.request);
      for (const id of got.decision.policyIds) deciding.add(id);
      assert.equal(got.decision.reasons.length, got.decision.policyIds.length || 1, c.name);
    }
    assert.deepEqual([...deciding].sort(), [...engine.policyIds].sort());
  });
});
