/**
 * Projected evaluation (policy-projection.ts): what a policy reads, which schemas allow it, that a
 * wrong reading costs speed and never an answer, and that remembered answers are keyed on all
 * that was read. The property test (policy-slices.property.test.ts) compares whole engines.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  policyToJson,
  preparsePolicySet,
  preparseSchema,
  statefulIsAuthorized,
  type StatefulAuthorizationCall,
} from '@cedar-policy/cedar-wasm/nodejs';
import { readsOf, type PolicyReads } from '../../../src/policy/policy-reads.js';
import {
  MAX_ANSWERS,
  ProjectedEvaluation,
  project,
  schemaAllowsProjection,
} from '../../../src/policy/policy-projection.js';
import { CedarPolicyEngine } from '../../../src/policy/cedar-engine.js';
import { shapeOf } from '../../../src/policy/policy-shape.js';
import { SHIPPED_POLICY_DIR, SHIPPED_SCHEMA, issueRequest, role } from './policy-fixtures.js';

function readsOfText(text: string): PolicyReads {
  const answer = policyToJson(text);
  assert.equal(answer.type, 'success');
  const json = (answer as { json: { conditions: Array<{ body: unknown }> } }).json;
  return readsOf(json.conditions.map((c) => c.body));
}

const keys = (r: PolicyReads[keyof PolicyReads]): unknown => (r instanceof Set ? [...r].sort() : r);

describe('policy projection: what a policy reads', () => {
  it('names the context keys and the principal and resource attributes read, `has` included', () => {
    const r = readsOfText(
      'permit (principal, action, resource) when { context.a == 1 && principal.path == "x" && resource has description && context.rec.sub == "y" };',
    );
    assert.deepEqual(
      [keys(r.context), keys(r.principal), keys(r.resource), r.otherEntities],
      [['a', 'rec'], ['path'], ['description'], false],
    );
  });

  it('counts the context used whole as reading all of it', () => {
    assert.equal(readsOfText('permit (principal, action, resource) when { context == {} };').context, 'all');
  });

  it('an attribute of any other entity, or a tag, keeps every entity as built', () => {
    for (const when of [
      'Role::"r".sensitivity == "x"',
      'principal.hasTag("t")',
      'resource.owner.name == "x"',
    ]) {
      assert.equal(
        readsOfText(`permit (principal, action, resource) when { ${when} };`).otherEntities,
        true,
        when,
      );
    }
  });

  it('a scope alone reads nothing', () => {
    const r = readsOfText('permit (principal in AgentGroup::"g", action, resource is Role);');
    assert.deepEqual([keys(r.context), keys(r.principal), keys(r.resource)], [[], [], []]);
  });
});

describe('policy projection: schemas whose check is one of types alone', () => {
  const base = 'entity A; entity B in [A] { n: Long };';
  const applies = 'appliesTo { principal: [B], resource: [A], context: {} }';
  it('allows the shipped schema', () => {
    assert.equal(schemaAllowsProjection(readFileSync(SHIPPED_SCHEMA, 'utf8')), true);
  });
  it('refuses enumerated entity types, action groups and extension types', () => {
    assert.equal(schemaAllowsProjection(`${base} action go ${applies};`), true);
    assert.equal(schemaAllowsProjection(`${base} entity E enum ["x"]; action go ${applies};`), false);
    assert.equal(schemaAllowsProjection(`${base} action g; action go in [g] ${applies};`), false);
    assert.equal(schemaAllowsProjection(`entity A; entity B { ip: ipaddr }; action go ${applies};`), false);
  });
});

describe('policy projection: request shapes', () => {
  const call = (context: Record<string, unknown>): StatefulAuthorizationCall =>
    ({
      principal: { type: 'P', id: 'p' },
      action: { type: 'Action', id: 'go' },
      resource: { type: 'R', id: 'r' },
      context,
      entities: [],
      preparsedPolicySetId: 'set',
    }) as StatefulAuthorizationCall;

  it('is the same for the same types, whatever the values', () => {
    assert.equal(shapeOf(call({ a: 'x', n: 1, s: ['u'] })), shapeOf(call({ a: 'y', n: 9, s: ['v', 'w'] })));
  });

  it('tells apart other types, other keys, and keys that spell another key and its shape', () => {
    const shapes = [
      { a: 'x' },
      { a: 1 },
      { a: true },
      { a: ['x'] },
      { a: [] },
      { a: { b: 'x' } },
      { b: 'x' },
      { "a'1:s,": 'x' },
      { a: 'x', b: 'y' },
    ].map((c) => shapeOf(call(c)));
    assert.equal(new Set(shapes).size, shapes.length);
  });
});

describe('policy projection: evaluation', () => {
  const schema =
    'entity G; entity P in [G] { name: String }; entity R; action go appliesTo { principal: [P], resource: [R], context: { x: Long, y: String } };';
  const pset = 'test/projection/pset';
  before(() => {
    preparseSchema('test/projection/schema', schema);
    preparsePolicySet(pset, {
      staticPolicies: { p: 'permit (principal in G::"g", action, resource) when { context.x > 1 };' },
    });
  });
  const call = (x: number, y = 'y'): StatefulAuthorizationCall => ({
    principal: { type: 'P', id: 'p' },
    action: { type: 'Action', id: 'go' },
    resource: { type: 'R', id: 'r' },
    context: { x, y },
    entities: [
      { uid: { type: 'P', id: 'p' }, attrs: { name: 'n' }, parents: [{ type: 'G', id: 'g' }] },
      { uid: { type: 'G', id: 'g' }, attrs: {}, parents: [] },
      { uid: { type: 'R', id: 'r' }, attrs: {}, parents: [] },
    ],
    preparsedPolicySetId: pset,
    preparsedSchemaName: 'test/projection/schema',
    validateRequest: true,
  });
  const right: PolicyReads = {
    context: new Set(['x']),
    principal: new Set(),
    resource: new Set(),
    otherEntities: false,
  };
  const decision = (a: ReturnType<typeof statefulIsAuthorized>): string =>
    a.type === 'success' ? a.response.decision : 'failure';

  it('hands Cedar only what is read: no unread keys, attributes or bare entities', () => {
    const p = project(call(2), right);
    assert.deepEqual(p.context, { x: 2 });
    assert.deepEqual(p.entities, [
      { uid: { type: 'P', id: 'p' }, attrs: {}, parents: [{ type: 'G', id: 'g' }] },
    ]);
    assert.equal(p.preparsedSchemaName, undefined);
    assert.equal(decision(statefulIsAuthorized(p)), 'allow');
  });

  it('projects a shape once both answers agree, and answers as the full call does', () => {
    const projection = new ProjectedEvaluation();
    for (const x of [2, 0, 2, 5, 0])
      assert.equal(decision(projection.evaluate(call(x), right)), x > 1 ? 'allow' : 'deny');
    assert.equal(projection.stats.projectedShapes, 1);
    assert.equal(projection.stats.fullShapes, 0);
  });

  it('a reading that misses a key costs speed, never the answer: the shape is decided in full', () => {
    const wrong: PolicyReads = { ...right, context: new Set(['y']) };
    const projection = new ProjectedEvaluation();
    for (const x of [2, 2, 0, 3])
      assert.equal(decision(projection.evaluate(call(x), wrong)), x > 1 ? 'allow' : 'deny');
    assert.deepEqual(projection.stats, { projectedShapes: 0, fullShapes: 1, remembered: 0, evaluated: 0 });
  });

  it('never projects a shape the schema refuses', () => {
    const projection = new ProjectedEvaluation();
    const bad = { ...call(2), context: { x: 2 } }; // y is missing: the schema refuses it
    assert.equal(projection.evaluate(bad, right).type, 'failure');
    assert.equal(projection.evaluate(bad, right).type, 'failure');
    assert.equal(projection.stats.fullShapes, 1);
  });

  it('remembers answers by everything read, and forgets the least recently used past MAX_ANSWERS', () => {
    const projection = new ProjectedEvaluation();
    projection.evaluate(call(2), right); // learns the shape
    assert.equal(decision(projection.evaluate(call(2, 'a'), right)), 'allow');
    assert.equal(decision(projection.evaluate(call(2, 'b'), right)), 'allow'); // y is not read
    assert.equal(decision(projection.evaluate(call(0), right)), 'deny'); // x is
    assert.deepEqual([projection.stats.evaluated, projection.stats.remembered], [2, 1]);
    for (let x = 10; x < 10 + MAX_ANSWERS; x++) projection.evaluate(call(x), right);
    const evaluated = projection.stats.evaluated;
    assert.equal(decision(projection.evaluate(call(2), right)), 'allow');
    assert.equal(projection.stats.evaluated, evaluated + 1, 'the oldest answer was forgotten');
  });

  it('the engine projects the shipped policies once per shape, and not when slicing is off', () => {
    const engine = CedarPolicyEngine.load({
      policyDir: SHIPPED_POLICY_DIR,
      agentGroups: () => ['agents', 'demo'],
    });
    const req = issueRequest(
      'spiffe://example.org/agents/demo',
      role('token/demo', { environments: ['dev'] }),
      {
        environment: 'dev',
      },
    );
    for (let i = 0; i < 3; i++) assert.equal(engine.authorize(req).decision, 'allow');
    assert.deepEqual(engine.projectionStats, {
      projectedShapes: 1,
      fullShapes: 0,
      remembered: 1,
      evaluated: 1,
    });
    const whole = CedarPolicyEngine.load({ policyDir: SHIPPED_POLICY_DIR, slicing: false });
    assert.equal(whole.projectionStats, undefined);
  });
});
