/**
 * Value classes (policy-value-classes.ts): which context keys a policy only compares with literals,
 * the classes the answer memory keys them by, and, through whole engines, that a request answered
 * from memory by class gets the answer a fresh evaluation gives.
 */
import assert from 'node:assert/strict';
import { policyToJson } from '@cedar-policy/cedar-wasm/nodejs';
import fc from 'fast-check';
import { CedarPolicyEngine } from '../../../src/policy/cedar-engine.js';
import { readsOf, unionReads } from '../../../src/policy/policy-reads.js';
import { classedContext, valueUsesOf, type ValueUses } from '../../../src/policy/policy-value-classes.js';
import { SHIPPED_SCHEMA_TEXT, issueRequest, policyDir, removePolicyDirs, role } from './policy-fixtures.js';

function bodiesOf(when: string): unknown[] {
  const answer = policyToJson(`permit (principal, action, resource) when { ${when} };`);
  assert.equal(answer.type, 'success', when);
  return (answer as { json: { conditions: Array<{ body: unknown }> } }).json.conditions.map((c) => c.body);
}

const usesOf = (when: string): ValueUses => valueUsesOf(bodiesOf(when));
const plain = (uses: ValueUses): unknown => Object.fromEntries(uses);

describe('value classes: what a policy only compares with literals', () => {
  it('classes keys compared with integer and string literals, either side, and literal-set membership', () => {
    const uses = usesOf(
      'context.ttlSeconds <= 900 && 60 < context.ttlSeconds && context.environment == "prod" && ["destructive", "admin"].contains(context.changeType) && context has breakGlass',
    );
    assert.deepEqual(plain(uses), {
      ttlSeconds: { numbers: [60, 900], strings: [] },
      environment: { numbers: [], strings: ['prod'] },
      changeType: { numbers: [], strings: ['destructive', 'admin'] },
    });
  });

  it('leaves a key opaque when any use is not a comparison with a literal, even beside one that is', () => {
    for (const when of [
      'context.ttlSeconds > 300 && context.ttlSeconds + 100 > 1000',
      'context.environment == "prod" || context.environment like "pr*"',
      'context.ttlSeconds == context.taskCredentialCount',
      'context.taskRoles.containsAny(["a"])',
      'context.environment < "x"',
      'context.ttlSeconds == 1 && (if context.approved then context.ttlSeconds else 0) > 5',
    ]) {
      const uses = usesOf(when);
      for (const key of ['ttlSeconds', 'environment', 'taskCredentialCount', 'taskRoles'])
        assert.equal(uses.has(key), false, `${key} in: ${when}`);
    }
  });

  it('classes nothing when the context is used whole, and never a nested record', () => {
    assert.equal(usesOf('context.ttlSeconds < 5 && context == {}').size, 0);
    assert.equal(usesOf('context has agentContext && context.agentContext.tool_name == "rm"').size, 0);
  });

  it('a slice classes a key only when every policy that reads it does', () => {
    const policy = (when: string) => readsOf(bodiesOf(when));
    const union = unionReads([
      policy('context.ttlSeconds <= 900 && context.environment == "dev"'),
      policy('context.ttlSeconds >= 60'),
      policy('context.environment like "d*"'),
      policy('context.approved'),
    ]);
    assert.deepEqual(plain(union.contextValues ?? new Map()), {
      ttlSeconds: { numbers: [60, 900], strings: [] },
    });
  });
});

describe('value classes: the memory key', () => {
  const uses: ValueUses = new Map([
    ['ttl', { numbers: [60, 900], strings: [] }],
    ['env', { numbers: [], strings: ['prod'] }],
  ]);
  const key = (context: Record<string, unknown>): string => JSON.stringify(classedContext(context, uses));

  it('gives values on the same side of every literal the same key, and any other side another', () => {
    assert.equal(key({ ttl: 100, env: 'dev' }), key({ ttl: 899, env: 'staging' }));
    const distinct = [
      { ttl: 59, env: 'dev' },
      { ttl: 60, env: 'dev' },
      { ttl: 61, env: 'dev' },
      { ttl: 900, env: 'dev' },
      { ttl: 901, env: 'dev' },
      { ttl: 61, env: 'prod' },
      { ttl: 61 },
      { ttl: '61', env: 'dev' },
    ];
    assert.equal(new Set(distinct.map(key)).size, distinct.length);
  });

  it('keeps anything but an integer or a string as it is, wrapped so no value passes for a class', () => {
    assert.notEqual(key({ ttl: 61.5 }), key({ ttl: 62.5 }));
    assert.notEqual(key({ ttl: { c: 'n><' } }), key({ ttl: 61 }));
    assert.equal(key({ other: 5 }), JSON.stringify({ other: 5 }));
  });
});

describe('value classes: whole engines', () => {
  after(removePolicyDirs);

  const WHENS = [
    'context.ttlSeconds <= 900',
    'context.ttlSeconds > 300 && context.ttlSeconds + 100 > 1000',
    'context.ttlSeconds != 600 && ["dev", "prod"].contains(context.environment)',
    'context.taskCredentialCount >= 2 || context.ttlSeconds < 120',
  ];

  it('answers each request as a fresh evaluation does, whatever was remembered before', () => {
    const r0 = role('token/r0', { maxTtlSeconds: 3600 });
    fc.assert(
      fc.property(
        fc.subarray(WHENS, { minLength: 1 }),
        fc.constantFrom('permit', 'forbid'),
        fc.array(
          fc.record({
            ttl: fc.integer({ min: 0, max: 1500 }),
            env: fc.constantFrom('dev', 'prod', 'staging'),
            count: fc.integer({ min: 0, max: 3 }),
          }),
          { minLength: 5, maxLength: 40 },
        ),
        (whens, effect, asks) => {
          const policies = whens
            .map(
              (w, i) =>
                `@id("p${i}") ${effect} (principal, action == Action::"IssueCredential", resource is Role) when { ${w} };`,
            )
            .join('\n');
          const extra =
            effect === 'forbid'
              ? '@id("base") permit (principal, action == Action::"IssueCredential", resource is Role);\n'
              : '';
          const dir = policyDir({
            'schema.cedarschema': SHIPPED_SCHEMA_TEXT,
            'main.cedar': extra + policies,
          });
          const engine = CedarPolicyEngine.load({ policyDir: dir });
          const fresh = CedarPolicyEngine.load({ policyDir: dir, slicing: false });
          for (const a of asks) {
            const req = issueRequest('spiffe://example.org/agents/a', r0, {
              ttlSeconds: a.ttl,
              environment: a.env,
              taskCredentialCount: a.count,
            });
            const got = engine.authorize(req);
            const want = fresh.authorize(req);
            assert.deepEqual(
              [got.decision, [...got.policyIds].sort(), got.errors],
              [want.decision, [...want.policyIds].sort(), want.errors],
            );
          }
          assert.ok((engine.projectionStats?.remembered ?? 0) + (engine.projectionStats?.evaluated ?? 0) > 0);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('a TTL on the same side of every limit is answered from memory; another side crosses into Cedar', () => {
    const dir = policyDir({
      'schema.cedarschema': SHIPPED_SCHEMA_TEXT,
      'main.cedar':
        '@id("short") permit (principal, action == Action::"IssueCredential", resource is Role) when { context.ttlSeconds <= 900 };',
    });
    const engine = CedarPolicyEngine.load({ policyDir: dir });
    const ask = (ttl: number): string =>
      engine.authorize(issueRequest('spiffe://example.org/agents/a', role('token/r0'), { ttlSeconds: ttl }))
        .decision;
    assert.deepEqual([ask(100), ask(200), ask(300), ask(900)], ['allow', 'allow', 'allow', 'allow']);
    const before = engine.projectionStats;
    assert.deepEqual([ask(901), ask(1200)], ['deny', 'deny']);
    const after = engine.projectionStats;
    assert.equal((after?.evaluated ?? 0) - (before?.evaluated ?? 0), 1, 'one new class, one evaluation');
    assert.equal((after?.remembered ?? 0) - (before?.remembered ?? 0), 1);
  });
});
