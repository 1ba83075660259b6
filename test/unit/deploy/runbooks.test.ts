/**
 * The README's register-an-agent runbook, run as far as it goes without Docker: its catalog entry
 * joins the compose catalog and generates a SPIRE entry, and its policy, added to the shipped set,
 * lets the new agent begin a task and get the role the verify step asks for, and nothing in prod.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { readCatalog } from '../../../src/cli/spire.js';
import { agentCatalogEntrySchema } from '../../../src/config/catalog-schema.js';
import { roleDefinitions, loadConfig } from '../../../src/config/load-config.js';
import { AgentCatalog } from '../../../src/policy/agent-catalog.js';
import { decideWithApprovalGate } from '../../../src/policy/approval-gate.js';
import { CedarPolicyEngine } from '../../../src/policy/cedar-engine.js';
import { generateEntries } from '../../../src/spire/registration.js';
import { beginTaskRequest, issueRequest } from '../policy/policy-fixtures.js';
import { readText, repoPath, validatablePath } from './deploy-fixtures.js';

const readme = readText('README.md');
const runbook = readme.slice(
  readme.indexOf('## Runbook: register an agent in SPIRE'),
  readme.indexOf('## Runbook: rotate the broker'),
);
const block = (lang: string): string => {
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(runbook);
  assert.ok(m?.[1], `the runbook has a ${lang} block`);
  return m[1].replace(/^ {3}/gm, '');
};

describe('README runbook: register an agent', () => {
  const dir = mkdtempSync(join(tmpdir(), 'svb-runbook-'));
  // Validated as the config validates a catalog entry.
  const entry = agentCatalogEntrySchema.parse((parseYaml(block('yaml')) as unknown[])[0]);

  it('its catalog entry generates a SPIRE entry under the compose node', () => {
    // Steps 2 and 3 minus SPIRE: the generator register.sh runs, on the catalog with the new entry.
    const catalog = readCatalog(validatablePath('deploy/compose/broker.yaml'));
    const withAgent = { ...catalog, agents: [...catalog.agents, entry] };
    const generated = generateEntries(withAgent).find((e) => e.spiffe_id === entry.pattern);
    assert.ok(generated);
    assert.equal(generated.parent_id, 'spiffe://example.org/node/compose-host');
  });

  it('its policy lets the agent begin in staging and get the verified role, not in prod', () => {
    const policies = join(dir, 'policies');
    mkdirSync(policies);
    for (const f of readdirSync(repoPath('policies')).filter((f) => /\.cedar(schema)?$/.test(f))) {
      copyFileSync(repoPath('policies', f), join(policies, f));
    }
    writeFileSync(join(policies, 'deployer.cedar'), block('cedar'));
    const catalog = new AgentCatalog([
      { pattern: 'spiffe://example.org/agents/*', groups: ['agents'] },
      { pattern: entry.pattern, groups: entry.groups },
    ]);
    const engine = CedarPolicyEngine.load({ policyDir: policies, agentGroups: (id) => catalog.groupsOf(id) });
    const verify = /request --env (\S+) --role (\S+)/.exec(runbook);
    assert.ok(verify?.[1] && verify[2]);
    const [, env, roleName] = verify;
    const role = roleDefinitions(
      loadConfig({ file: validatablePath('deploy/compose/broker.yaml'), env: {} }),
    ).get(roleName);
    assert.ok(role, `${roleName} is in the compose role catalog`);
    assert.equal(engine.authorize(beginTaskRequest(entry.pattern, env)).decision, 'allow');
    const issued = decideWithApprovalGate(engine, issueRequest(entry.pattern, role, { environment: env }));
    assert.equal(issued.outcome, 'allow');
    const ids = issued.decision.policyIds.map((id) => `"${id}"`).join(', ');
    assert.ok(runbook.includes(`"policy_ids": [${ids}]`), `the runbook shows policy_ids [${ids}]`);
    assert.equal(engine.authorize(beginTaskRequest(entry.pattern, 'prod')).decision, 'deny');
  });
});
