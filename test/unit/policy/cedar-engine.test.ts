import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CedarPolicyEngine,
  DEFAULT_DENY_REASON,
  INVALID_REQUEST_REASON,
} from '../../../src/policy/cedar-engine.js';
import {
  DEMO_AGENT,
  SHIPPED_SCHEMA,
  beginTaskRequest,
  issueRequest,
  policyDir,
  removePolicyDirs,
  role,
  loadShippedPolicies,
} from './policy-fixtures.js';

describe('CedarPolicyEngine', () => {
  after(removePolicyDirs);

  describe('with the shipped policies', () => {
    const engine = loadShippedPolicies();
    const demoRole = role('token/demo');

    it('loads without warnings and exposes a sha256 digest', () => {
      assert.match(engine.digest, /^[0-9a-f]{64}$/);
      assert.deepEqual(engine.warnings, []);
    });

    it('allows the demo agent the demo token in dev, naming the permit and its reason', () => {
      assert.deepEqual(engine.authorize(issueRequest(DEMO_AGENT, demoRole)), {
        decision: 'allow',
        policyIds: ['demo-agent-token-demo-dev'],
        reasons: ['the demo agent may use the demo token in dev for up to an hour'],
        errors: [],
        policyDigest: engine.digest,
      });
    });

    it('denies by default in prod, with no deciding policy', () => {
      const decision = engine.authorize(issueRequest(DEMO_AGENT, demoRole, { environment: 'prod' }));
      assert.equal(decision.decision, 'deny');
      assert.deepEqual(decision.policyIds, []);
      assert.deepEqual(decision.reasons, [DEFAULT_DENY_REASON]);
      assert.deepEqual(decision.errors, []);
    });

    it('denies a TTL above the permit bound', () => {
      const decision = engine.authorize(issueRequest(DEMO_AGENT, demoRole, { ttlSeconds: 3601 }));
      assert.equal(decision.decision, 'deny');
      assert.deepEqual(decision.policyIds, []);
    });

    it('lets a forbid win over a matching permit, and returns its id and @reason', () => {
      const stagingOnly = role('token/demo', { environments: ['staging'] });
      assert.deepEqual(engine.authorize(issueRequest(DEMO_AGENT, stagingOnly)), {
        decision: 'deny',
        policyIds: ['forbid-role-outside-its-environments'],
        reasons: ['role is not allowed in this environment'],
        errors: [],
        policyDigest: engine.digest,
      });
    });

    it('allows the demo token when the role lists dev', () => {
      const listed = role('token/demo', { environments: ['dev', 'staging'] });
      assert.equal(engine.authorize(issueRequest(DEMO_AGENT, listed)).decision, 'allow');
    });

    it('lets catalog agents begin tasks in dev and staging only', () => {
      const agent = 'spiffe://example.org/agents/other';
      for (const env of ['dev', 'staging']) {
        const decision = engine.authorize(beginTaskRequest(agent, env));
        assert.equal(decision.decision, 'allow', env);
        assert.deepEqual(decision.policyIds, ['begin-task-known-envs']);
      }
      assert.equal(engine.authorize(beginTaskRequest(agent, 'prod')).decision, 'deny');
      assert.equal(
        engine.authorize(beginTaskRequest('spiffe://evil.org/agents/demo', 'dev')).decision,
        'deny',
      );
    });

    it('denies a request that does not match the schema, and says why', () => {
      const missing = issueRequest(DEMO_AGENT, demoRole);
      delete missing.context['ttlSeconds'];
      const decision = engine.authorize(missing);
      assert.equal(decision.decision, 'deny');
      assert.deepEqual(decision.reasons, [INVALID_REQUEST_REASON]);
      assert.match(decision.errors.join('\n'), /ttlSeconds/);

      const extra = engine.authorize(issueRequest(DEMO_AGENT, demoRole, { surprise: 'x' }));
      assert.equal(extra.decision, 'deny');
      assert.match(extra.errors.join('\n'), /surprise/);
    });

    it('denies non-integer numbers and non-SPIFFE principals rather than guess', () => {
      const fractional = engine.authorize(issueRequest(DEMO_AGENT, demoRole, { ttlSeconds: 1.5 }));
      assert.equal(fractional.decision, 'deny');
      assert.match(fractional.errors.join('\n'), /context\.ttlSeconds must be an integer/);

      const notSpiffe = engine.authorize(issueRequest('https://example.org/agents/demo', demoRole));
      assert.equal(notSpiffe.decision, 'deny');
      assert.match(notSpiffe.errors.join('\n'), /not a SPIFFE ID/);
    });

    it('does not serve stale role entities when a mutable role changes', () => {
      const mutable = role('token/demo');
      assert.equal(engine.authorize(issueRequest(DEMO_AGENT, mutable)).decision, 'allow');
      mutable.environments.push('prod');
      assert.equal(engine.authorize(issueRequest(DEMO_AGENT, mutable)).decision, 'deny');

      // Frozen as the config layer freezes roles: cached, and the cache must answer the same.
      const frozen = role('token/demo', { environments: ['dev'] });
      Object.freeze(frozen.environments);
      Object.freeze(frozen);
      for (let i = 0; i < 3; i++) {
        assert.equal(engine.authorize(issueRequest(DEMO_AGENT, frozen)).decision, 'allow');
      }
    });
  });

  it('puts agents in the AgentGroups the callback names', () => {
    const dir = policyDir({
      'groups.cedar': `@id("ci-may-begin")
        permit (principal in AgentGroup::"ci-agents", action == Action::"BeginTask", resource);`,
    });
    const ci = 'spiffe://example.org/ci/runner';
    const engine = CedarPolicyEngine.load({
      policyDir: dir,
      schemaPath: SHIPPED_SCHEMA,
      agentGroups: (id) => (id === ci ? ['ci-agents', 'builders'] : []),
    });
    const allowed = engine.authorize(beginTaskRequest(ci, 'prod'));
    assert.equal(allowed.decision, 'allow');
    assert.deepEqual(allowed.policyIds, ['ci-may-begin']);
    assert.deepEqual(allowed.reasons, [], 'no @reason annotation, no reason');
    assert.equal(engine.authorize(beginTaskRequest(DEMO_AGENT, 'prod')).decision, 'deny');
  });

  it('surfaces evaluation errors (Cedar skips the policy that errored)', () => {
    const dir = policyDir({
      'overflow.cedar': `
        @id("permit-all-issue")
        permit (principal, action == Action::"IssueCredential", resource);
        @id("forbid-overflowing")
        forbid (principal, action == Action::"IssueCredential", resource)
        when { context.ttlSeconds * 9223372036854775807 > 0 };`,
    });
    const engine = CedarPolicyEngine.load({ policyDir: dir, schemaPath: SHIPPED_SCHEMA });
    const decision = engine.authorize(issueRequest(DEMO_AGENT, role('token/demo'), { ttlSeconds: 2 }));
    // This is why errors are surfaced: the erroring forbid did not apply.
    assert.equal(decision.decision, 'allow');
    assert.deepEqual(decision.policyIds, ['permit-all-issue']);
    assert.equal(decision.errors.length, 1);
    assert.match(decision.errors[0] ?? '', /^forbid-overflowing: .*overflow/);
  });

  it('gives policies without @id the stable id <file>:<index>, in file order', () => {
    // Twelve policies: Cedar's own ids sort policy10 before policy2; ours must not.
    const text = Array.from(
      { length: 12 },
      (_, i) =>
        `permit (principal == Agent::"spiffe://t.org/a${i}", action == Action::"BeginTask", resource);`,
    ).join('\n');
    const engine = CedarPolicyEngine.load({
      policyDir: policyDir({ 'a.cedar': text }),
      schemaPath: SHIPPED_SCHEMA,
    });
    for (let i = 0; i < 12; i++) {
      const decision = engine.authorize(beginTaskRequest(`spiffe://t.org/a${i}`, 'dev'));
      assert.deepEqual(decision.policyIds, [`a.cedar:${i}`]);
    }
  });

  it('treats any @id as a plain key, even __proto__', () => {
    const engine = CedarPolicyEngine.load({
      policyDir: policyDir({
        'a.cedar': '@id("__proto__") permit (principal, action == Action::"BeginTask", resource);',
      }),
      schemaPath: SHIPPED_SCHEMA,
    });
    assert.deepEqual(engine.authorize(beginTaskRequest(DEMO_AGENT, 'dev')).policyIds, ['__proto__']);
  });

  it('keeps each engine on its own preparsed set when several are loaded', () => {
    const permitAll = CedarPolicyEngine.load({
      policyDir: policyDir({ 'p.cedar': 'permit (principal, action, resource);' }),
      schemaPath: SHIPPED_SCHEMA,
    });
    const forbidAll = CedarPolicyEngine.load({
      policyDir: policyDir({
        'p.cedar': 'permit (principal, action, resource);',
        'q.cedar': '@id("no") forbid (principal, action, resource);',
      }),
      schemaPath: SHIPPED_SCHEMA,
    });
    assert.notEqual(permitAll.digest, forbidAll.digest);
    for (let i = 0; i < 3; i++) {
      const request = beginTaskRequest(DEMO_AGENT, 'dev');
      assert.deepEqual(permitAll.authorize(request).policyIds, ['p.cedar:0']);
      assert.deepEqual(forbidAll.authorize(request).policyIds, ['no']);
      assert.equal(forbidAll.authorize(request).policyDigest, forbidAll.digest);
    }
  });

  it('authorizes only through the preparsed API (no per-call policy text)', () => {
    // ESM bindings cannot be stubbed, so guard the structure: the one authorization call in
    // src/policy is statefulIsAuthorized, which takes a preparsed set id and no policy text.
    const srcDir = fileURLToPath(new URL('../../../src/policy/', import.meta.url));
    for (const name of readdirSync(srcDir).filter((n) => n.endsWith('.ts'))) {
      const source = readFileSync(path.join(srcDir, name), 'utf8');
      assert.doesNotMatch(source, /(?<!stateful)isAuthorized\b/i, `${name} uses the unparsed API`);
      assert.doesNotMatch(source, /isAuthorizedPartial/, name);
    }
  });
});
