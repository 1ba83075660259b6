import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { RoleDefinition } from '../../../src/credentials/backend.js';
import { decideWithApprovalGate } from '../../../src/policy/approval-gate.js';
import { AgentCatalog } from '../../../src/policy/agent-catalog.js';
import {
  DEMO_AGENT,
  DEV_CATALOG,
  beginTaskRequest,
  issueRequest,
  role,
  loadShippedPolicies,
} from './policy-fixtures.js';

// The shipped policies name groups; the dev stack's catalog says who is in them.
const catalog = new AgentCatalog(DEV_CATALOG);
const engine = loadShippedPolicies();

const segment = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,11}$/);
const environment = fc.oneof(fc.constantFrom('dev', 'staging', 'prod'), segment);
const EXAMPLE_ROLES = [
  'token/demo',
  'token/deploy',
  'token/admin',
  'token/logs-read',
  'token/secrets-read',
  'vault/db-readonly',
];
const roleName = fc.oneof(
  fc.constantFrom(...EXAMPLE_ROLES),
  fc.tuple(fc.constantFrom('token', 'vault', 'aws'), segment).map(([b, r]) => `${b}/${r}`),
);
const agent = fc.oneof(
  fc.constant(DEMO_AGENT),
  fc
    .tuple(fc.constantFrom('example.org', 'evil.org'), segment)
    .map(([td, name]) => `spiffe://${td}/agents/${name}`),
  fc
    .tuple(fc.constantFrom('example.org', 'evil.org'), fc.array(segment, { minLength: 1, maxLength: 3 }))
    .map(([td, path]) => `spiffe://${td}/${path.join('/')}`),
);
const sensitivity = fc.constantFrom<RoleDefinition['sensitivity']>(
  'public',
  'internal',
  'confidential',
  'restricted',
);
const roleDef = fc
  .record({ name: roleName, environments: fc.uniqueArray(environment, { maxLength: 3 }), sensitivity })
  .map(({ name, environments, sensitivity: s }) => role(name, { environments, sensitivity: s }));
const issueContext = fc
  .record({
    environment,
    ttlSeconds: fc.integer({ min: 0, max: 2 * 86400 }),
    changeType: fc.constantFrom('read', 'write', 'destructive', 'admin'),
    sensitivity,
    taskRoles: fc.uniqueArray(fc.constantFrom(...EXAMPLE_ROLES), { maxLength: 3 }),
    approved: fc.boolean(),
    breakGlass: fc.boolean(),
  })
  // The broker derives taskBackends from taskRoles (`<backend>/<name>`).
  .map((c) => ({ ...c, taskBackends: [...new Set(c.taskRoles.map((r) => r.split('/')[0] ?? r))] }));
type IssueContext = {
  environment: string;
  ttlSeconds: number;
  changeType: string;
  sensitivity: string;
  taskRoles: string[];
  taskBackends: string[];
  approved: boolean;
  breakGlass: boolean;
};

/**
 * The shipped IssueCredential policies, restated in TypeScript: the engine must agree with this
 * reading of them on every request, so an unexpected interaction between policies shows up here.
 */
function model(who: string, r: RoleDefinition, c: IssueContext): { allow: boolean; policyIds: string[] } {
  const demo = who === DEMO_AGENT;
  const permits: Array<[string, boolean]> = [
    [
      'demo-agent-token-demo-dev',
      demo && r.name === 'token/demo' && c.environment === 'dev' && c.ttlSeconds <= 3600,
    ],
    [
      'demo-agent-token-deploy-prod',
      demo && r.name === 'token/deploy' && c.environment === 'prod' && c.ttlSeconds <= 900,
    ],
    [
      'demo-agent-token-admin-prod',
      demo && r.name === 'token/admin' && c.environment === 'prod' && c.ttlSeconds <= 900,
    ],
    [
      'demo-agent-read-logs-and-secrets',
      demo &&
        ['token/logs-read', 'token/secrets-read'].includes(r.name) &&
        c.changeType === 'read' &&
        c.ttlSeconds <= 900,
    ],
    [
      'break-glass-permits-non-restricted',
      c.breakGlass && r.sensitivity !== 'restricted' && c.sensitivity !== 'restricted',
    ],
  ];
  const forbids: Array<[string, boolean]> = [
    [
      'forbid-role-outside-its-environments',
      r.environments.length > 0 && !r.environments.includes(c.environment),
    ],
    [
      'prod-no-secrets-after-logs',
      c.environment === 'prod' &&
        (r.name === 'token/secrets-read' || r.backend === 'vault') &&
        c.taskRoles.includes('token/logs-read'),
    ],
    [
      'prod-no-logs-after-secrets',
      c.environment === 'prod' &&
        r.name === 'token/logs-read' &&
        (c.taskRoles.includes('token/secrets-read') || c.taskBackends.includes('vault')),
    ],
    [
      'prod-destructive-needs-approval',
      c.environment === 'prod' &&
        ['destructive', 'admin'].includes(c.changeType) &&
        !(c.approved || c.breakGlass),
    ],
    [
      'prod-admin-role-needs-two-approvals',
      r.name === 'token/admin' && c.environment === 'prod' && !c.approved,
    ],
    [
      'break-glass-never-restricted',
      c.breakGlass && (r.sensitivity === 'restricted' || c.sensitivity === 'restricted'),
    ],
  ];
  const matched = (list: Array<[string, boolean]>): string[] => list.filter(([, m]) => m).map(([id]) => id);
  const forbidden = matched(forbids);
  if (forbidden.length > 0) return { allow: false, policyIds: forbidden };
  const permitted = matched(permits);
  return { allow: permitted.length > 0, policyIds: permitted };
}

const APPROVALS: Record<string, number> = { 'prod-admin-role-needs-two-approvals': 2 };

describe('CedarPolicyEngine with the shipped policies (properties)', () => {
  it('decides every IssueCredential request as the model of the shipped policies does', () => {
    fc.assert(
      fc.property(agent, roleDef, issueContext, (who, r, c) => {
        const decision = engine.authorize(issueRequest(who, r, c));
        const expected = model(who, r, c);
        assert.equal(decision.decision, expected.allow ? 'allow' : 'deny');
        assert.deepEqual([...decision.policyIds].sort(), [...expected.policyIds].sort());
        assert.deepEqual(decision.errors, []);
      }),
      { numRuns: 300 },
    );
  });

  it('asks for approval exactly when approving would allow, with the annotated count', () => {
    fc.assert(
      fc.property(agent, roleDef, issueContext, (who, r, c) => {
        const asked = { ...c, approved: false };
        const gated = decideWithApprovalGate(engine, issueRequest(who, r, { ...asked, approvalCount: 0 }));
        const now = model(who, r, asked);
        const once = model(who, r, { ...asked, approved: true });
        if (now.allow) assert.equal(gated.outcome, 'allow');
        else if (!once.allow) assert.equal(gated.outcome, 'deny');
        else {
          assert.equal(gated.outcome, 'approval_required');
          const n = Math.max(1, ...now.policyIds.map((id) => APPROVALS[id] ?? 1));
          assert.equal(gated.outcome === 'approval_required' && gated.approvalsRequired, n);
          assert.deepEqual([...gated.decision.policyIds].sort(), [...now.policyIds].sort());
        }
      }),
      { numRuns: 300 },
    );
  });

  it('never lets an agent other than the demo agent have a credential without break-glass', () => {
    fc.assert(
      fc.property(agent, roleDef, issueContext, (who, r, c) => {
        fc.pre(who !== DEMO_AGENT);
        const gated = decideWithApprovalGate(engine, issueRequest(who, r, { ...c, breakGlass: false }));
        assert.equal(gated.outcome, 'deny');
      }),
    );
  });

  it('never issues a restricted role under break-glass, approved or not', () => {
    fc.assert(
      fc.property(agent, roleDef, issueContext, (who, r, c) => {
        const restricted = role(r.name, { environments: r.environments, sensitivity: 'restricted' });
        const gated = decideWithApprovalGate(
          engine,
          issueRequest(who, restricted, { ...c, breakGlass: true }),
        );
        assert.equal(gated.outcome, 'deny');
      }),
    );
  });

  it('lets catalog agents begin tasks in dev and staging, and only the demo agent in prod', () => {
    fc.assert(
      fc.property(agent, environment, (who, env) => {
        const decision = engine.authorize(beginTaskRequest(who, env));
        const expected =
          (catalog.groupsOf(who).includes('agents') && (env === 'dev' || env === 'staging')) ||
          (who === DEMO_AGENT && env === 'prod');
        assert.equal(decision.decision, expected ? 'allow' : 'deny');
      }),
    );
  });
});
