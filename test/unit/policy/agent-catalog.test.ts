import assert from 'node:assert/strict';
import { AgentCatalog, AgentCatalogError } from '../../../src/policy/agent-catalog.js';
import { CedarPolicyEngine } from '../../../src/policy/cedar-engine.js';
import { DEV_CATALOG, SECURITY_ONCALL, SHIPPED_POLICY_DIR, adminRequest } from './policy-fixtures.js';

describe('AgentCatalog owners', () => {
  it('ownerOf: the first matching entry that names an owner', () => {
    const catalog = new AgentCatalog([
      { pattern: 'spiffe://acme.io/agents/*', groups: ['agents'] },
      { pattern: 'spiffe://acme.io/agents/billing', groups: ['billing'], owner: 'dana@acme.io' },
    ]);
    assert.equal(catalog.ownerOf('spiffe://acme.io/agents/billing'), 'dana@acme.io');
    assert.equal(catalog.ownerOf('spiffe://acme.io/agents/other'), undefined);
    assert.equal(catalog.ownerOf('not an id'), undefined);
  });
});

describe('AgentCatalog', () => {
  const catalog = new AgentCatalog([
    { pattern: 'spiffe://acme.io/agents/ci/*', groups: ['ci-agents'] },
    { pattern: 'spiffe://acme.io/agents/**', groups: ['agents'] },
    { pattern: 'spiffe://acme.io/agents/ci/release', groups: ['releasers', 'ci-agents'] },
    { pattern: 'spiffe://other.io/agents/ci/*', groups: ['foreign-ci'] },
  ]);

  it('matches exact IDs, one segment for /*, a subtree for /**, each group once in catalog order', () => {
    assert.deepEqual(catalog.groupsOf('spiffe://acme.io/agents/ci/runner-1'), ['ci-agents', 'agents']);
    assert.deepEqual(catalog.groupsOf('spiffe://acme.io/agents/ci/release'), [
      'ci-agents',
      'agents',
      'releasers',
    ]);
    assert.deepEqual(catalog.groupsOf('spiffe://acme.io/agents/ci/a/b'), ['agents'], '/* is one segment');
    assert.deepEqual(catalog.groupsOf('spiffe://acme.io/agents/ci'), ['agents']);
    assert.deepEqual(catalog.groupsOf('spiffe://acme.io/agents'), [], '/** needs at least one segment');
  });

  it('keeps trust domains apart and gives unknown or invalid IDs no groups', () => {
    assert.deepEqual(catalog.groupsOf('spiffe://other.io/agents/ci/x'), ['foreign-ci']);
    assert.deepEqual(catalog.groupsOf('spiffe://evil.io/agents/ci/x'), []);
    assert.deepEqual(catalog.groupsOf('spiffe://acme.io/agents/ci/../release'), []);
    assert.deepEqual(catalog.groupsOf('not a spiffe id'), []);
    assert.deepEqual(new AgentCatalog([]).groupsOf('spiffe://acme.io/agents/x'), []);
  });

  it('returns a fresh array each time', () => {
    const groups = catalog.groupsOf('spiffe://acme.io/agents/ci/runner-1');
    groups.push('mutated');
    assert.deepEqual(catalog.groupsOf('spiffe://acme.io/agents/ci/runner-1'), ['ci-agents', 'agents']);
  });

  const bad: Array<[string, { pattern: string; groups: string[] }, RegExp]> = [
    [
      'a wildcard inside the path',
      { pattern: 'spiffe://acme.io/*/ci', groups: ['g'] },
      /'\*' is only allowed/,
    ],
    ['a partial wildcard', { pattern: 'spiffe://acme.io/agents/ci-*', groups: ['g'] }, /'\*'/],
    ['no scheme', { pattern: 'acme.io/agents/*', groups: ['g'] }, /spiffe:\/\//],
    ['an uppercase trust domain', { pattern: 'spiffe://ACME.io/agents', groups: ['g'] }, /lowercase/],
    ['no groups', { pattern: 'spiffe://acme.io/agents/*', groups: [] }, /names no groups/],
    ['an empty group', { pattern: 'spiffe://acme.io/agents/*', groups: [''] }, /invalid group name ""/],
    ['a padded group', { pattern: 'spiffe://acme.io/agents/*', groups: [' ci'] }, /invalid group name " ci"/],
  ];
  for (const [what, entry, message] of bad) {
    it(`refuses ${what} at construction, naming the entry`, () => {
      assert.throws(
        () => new AgentCatalog([{ pattern: 'spiffe://acme.io/ok', groups: ['ok'] }, entry]),
        (err: unknown) => {
          assert.ok(err instanceof AgentCatalogError);
          assert.match(err.message, /^policy: agent catalog: entry 1 \(/);
          assert.ok(err.message.includes(JSON.stringify(entry.pattern)), err.message);
          assert.match(err.message, message);
          return true;
        },
      );
    });
  }

  it('feeds the engine: the dev catalog puts the security on-call in AgentGroup::"security"', () => {
    const dev = new AgentCatalog(DEV_CATALOG);
    const engine = CedarPolicyEngine.load({
      policyDir: SHIPPED_POLICY_DIR,
      agentGroups: (id) => dev.groupsOf(id),
    });
    assert.equal(engine.authorize(adminRequest(SECURITY_ONCALL, 'ListLeases')).decision, 'allow');
    const withoutCatalog = CedarPolicyEngine.load({ policyDir: SHIPPED_POLICY_DIR });
    assert.equal(withoutCatalog.authorize(adminRequest(SECURITY_ONCALL, 'ListLeases')).decision, 'deny');
  });
});
