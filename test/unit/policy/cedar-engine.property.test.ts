import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CedarPolicyEngine } from '../../../src/policy/cedar-engine.js';
import { DEMO_AGENT, SHIPPED_POLICY_DIR, beginTaskRequest, issueRequest, role } from './policy-fixtures.js';

const engine = CedarPolicyEngine.load({ policyDir: SHIPPED_POLICY_DIR });

const segment = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,11}$/);
const environment = fc.oneof(fc.constantFrom('dev', 'staging', 'prod'), segment);
const roleName = fc.oneof(
  fc.constant('token/demo'),
  fc.tuple(fc.constantFrom('token', 'vault', 'aws'), segment).map(([b, r]) => `${b}/${r}`),
);
const agent = fc.oneof(
  fc.constant(DEMO_AGENT),
  fc
    .tuple(fc.constantFrom('example.org', 'evil.org'), fc.array(segment, { minLength: 1, maxLength: 3 }))
    .map(([td, path]) => `spiffe://${td}/${path.join('/')}`),
);
const roleDef = fc
  .record({
    name: roleName,
    environments: fc.uniqueArray(environment, { maxLength: 3 }),
    sensitivity: fc.constantFrom('public', 'internal', 'confidential', 'restricted'),
  })
  .map(({ name, environments, sensitivity }) => role(name, { environments, sensitivity }));
const ttl = fc.integer({ min: 0, max: 2 * 86400 });

describe('CedarPolicyEngine with the shipped policies (properties)', () => {
  it('never lets an agent other than the demo agent have a credential', () => {
    fc.assert(
      fc.property(agent, roleDef, environment, ttl, (who, r, env, ttlSeconds) => {
        fc.pre(who !== DEMO_AGENT);
        const decision = engine.authorize(issueRequest(who, r, { environment: env, ttlSeconds }));
        assert.equal(decision.decision, 'deny');
      }),
    );
  });

  it('allows exactly what the demo permit matches and the environment forbid leaves', () => {
    fc.assert(
      fc.property(roleDef, environment, ttl, (r, env, ttlSeconds) => {
        const decision = engine.authorize(issueRequest(DEMO_AGENT, r, { environment: env, ttlSeconds }));
        const permitted = r.name === 'token/demo' && env === 'dev' && ttlSeconds <= 3600;
        const forbidden = r.environments.length > 0 && !r.environments.includes(env);
        assert.equal(decision.decision, permitted && !forbidden ? 'allow' : 'deny');
        assert.deepEqual(decision.errors, []);
        // The deciding policies are exactly the ones that explain the answer.
        if (forbidden) assert.deepEqual(decision.policyIds, ['forbid-role-outside-its-environments']);
        else if (permitted) assert.deepEqual(decision.policyIds, ['demo-agent-token-demo-dev']);
        else assert.deepEqual(decision.policyIds, []);
      }),
    );
  });

  it('lets only the dev trust domain begin tasks, and only in dev and staging', () => {
    fc.assert(
      fc.property(agent, environment, (who, env) => {
        const decision = engine.authorize(beginTaskRequest(who, env));
        const expected = who.startsWith('spiffe://example.org/') && (env === 'dev' || env === 'staging');
        assert.equal(decision.decision, expected ? 'allow' : 'deny');
      }),
    );
  });
});
