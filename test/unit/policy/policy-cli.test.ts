// @peculiar/x509 (under the dev stack) needs reflect-metadata loaded before it is evaluated.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { runPolicyTest, runPolicyValidate } from '../../../src/cli/policy.js';
import { devAgents, devRoles } from '../../../src/dev/dev-stack.js';
import { CedarPolicyEngine } from '../../../src/policy/cedar-engine.js';
import {
  SHIPPED_CASES,
  SHIPPED_POLICY_DIR,
  SHIPPED_SCHEMA,
  policyDir,
  removePolicyDirs,
} from './policy-fixtures.js';

interface Captured {
  code: number;
  out: string[];
  err: string[];
}

/** Runs a CLI command in-process with console.log and console.error captured. */
async function capture(run: () => Promise<number>): Promise<Captured> {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...args: unknown[]) => void out.push(args.map(String).join(' '));
  console.error = (...args: unknown[]) => void err.push(args.map(String).join(' '));
  try {
    return { code: await run(), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

const DEMO_CASE = `
  - name: the demo agent gets the demo token in dev
    principal: spiffe://example.org/agents/demo
    groups: [agents, demo]
    action: IssueCredential
    resource: { role: token/demo, environments: [dev] }
    context: { environment: dev }
    expect: allow
`;

describe('svid-broker policy (CLI)', () => {
  after(removePolicyDirs);

  describe('validate', () => {
    it('prints the count and digest of a valid set', async () => {
      const { code, out, err } = await capture(() => runPolicyValidate(SHIPPED_POLICY_DIR));
      const engine = CedarPolicyEngine.load({ policyDir: SHIPPED_POLICY_DIR });
      assert.equal(code, 0);
      assert.deepEqual(out, [`ok: ${engine.policyIds.length} policies, digest ${engine.digest}`]);
      assert.deepEqual(err, []);
    });

    it('prints every problem with its file and line, and exits 1', async () => {
      const dir = policyDir({
        'a.cedar':
          '@id("a")\npermit (principal, action == Action::"BeginTask", resource) when { context.nope };\n',
        'b.cedar': '\n@id("b") @approvals("0")\nforbid (principal, action, resource);\n',
      });
      const { code, out, err } = await capture(() => runPolicyValidate(dir, { schema: SHIPPED_SCHEMA }));
      assert.equal(code, 1);
      assert.deepEqual(out, []);
      assert.match(err[0] ?? '', new RegExp(`^${escape(path.join(dir, 'a.cedar'))}:2:\\d+ \\[a\\]: `));
      assert.match(err[1] ?? '', new RegExp(`^${escape(path.join(dir, 'b.cedar'))}:2:1 \\[b\\]: @approvals`));
      assert.equal(err.at(-1), '2 problem(s): the policy set would not load');
    });
  });

  describe('test', () => {
    it('passes every shipped case', async () => {
      const { code, out, err } = await capture(() => runPolicyTest(SHIPPED_POLICY_DIR, SHIPPED_CASES));
      assert.deepEqual(err, []);
      const fails = out.filter((l) => l.startsWith('FAIL'));
      assert.deepEqual(fails, []);
      const passes = out.filter((l) => l.startsWith('PASS')).length;
      assert.ok(passes >= 40, `only ${passes} cases`);
      assert.equal(out.at(-1), `${passes} passed, 0 failed`);
      assert.equal(code, 0);
    });

    it('describes the dev stack: the same agent catalog, and its roles as configured', () => {
      const file = parseYaml(readFileSync(SHIPPED_CASES, 'utf8')) as {
        agents: unknown;
        roles: Record<string, Record<string, unknown>>;
      };
      assert.deepEqual(file.agents, devAgents());
      const dev = devRoles();
      for (const [name, r] of Object.entries(dev)) {
        const described = file.roles[name];
        assert.ok(described, `cases.yaml does not describe the dev role ${name}`);
        for (const key of ['sensitivity', 'maxTtlSeconds'] as const) {
          assert.deepEqual(described[key], r[key], `${name}.${key}`);
        }
        assert.deepEqual(described['environments'] ?? [], r['environments'], `${name}.environments`);
      }
    });

    it('prints FAIL with what differed, counts it, and exits 1', async () => {
      const cases = policyDir({
        'cases.yaml': `${DEMO_CASE}
  - name: a destructive prod deploy
    principal: spiffe://example.org/agents/demo
    groups: [agents, demo]
    action: IssueCredential
    resource: { role: token/deploy }
    context: { environment: prod, changeType: destructive }
    expect: approval
    approvals: 2
    policies: [some-other-policy]
  - name: an agent lists leases
    principal: spiffe://example.org/agents/demo
    action: ListLeases
    expect: allow
`,
      });
      const { code, out } = await capture(() =>
        runPolicyTest(SHIPPED_POLICY_DIR, path.join(cases, 'cases.yaml')),
      );
      assert.equal(code, 1);
      assert.equal(out[1], 'PASS  the demo agent gets the demo token in dev');
      assert.equal(
        out[2],
        'FAIL  a destructive prod deploy: expected 2 approval(s), got 1; ' +
          'expected policies [some-other-policy], got [prod-destructive-needs-approval]',
      );
      assert.equal(out[3], 'FAIL  an agent lists leases: expected allow, got deny (no policy)');
      assert.equal(out.at(-1), '1 passed, 2 failed');
    });

    it('fails a case whose context the schema refuses, even when it expects deny', async () => {
      const cases = policyDir({
        'cases.yaml': `
- name: a typo in a context field name
  principal: spiffe://example.org/agents/demo
  action: IssueCredential
  resource: { role: token/demo }
  context: { enviroment: prod }
  expect: deny
`,
      });
      const { code, out } = await capture(() =>
        runPolicyTest(SHIPPED_POLICY_DIR, path.join(cases, 'cases.yaml')),
      );
      assert.equal(code, 1);
      assert.match(out[1] ?? '', /^FAIL {2}a typo in a context field name: errors: .*enviroment/);
    });

    it('derives groups from the agents catalog, or takes them from the case', async () => {
      const cases = policyDir({
        'cases.yaml': `
agents:
  - { pattern: "spiffe://acme.io/ops/*", groups: [security] }
cases:
  - { name: catalog, principal: "spiffe://acme.io/ops/alice", action: WatchAudit, expect: allow }
  - { name: no catalog entry, principal: "spiffe://acme.io/dev/bob", action: WatchAudit, expect: deny }
  - { name: explicit, principal: "spiffe://acme.io/dev/bob", groups: [security], action: WatchAudit, expect: allow }
  - { name: explicit none, principal: "spiffe://acme.io/ops/alice", groups: [], action: WatchAudit, expect: deny }
`,
      });
      const { code, out } = await capture(() =>
        runPolicyTest(SHIPPED_POLICY_DIR, path.join(cases, 'cases.yaml')),
      );
      assert.equal(out.at(-1), '4 passed, 0 failed');
      assert.equal(code, 0);
    });

    it('refuses an invalid cases file, listing every problem, without running any case', async () => {
      const cases = policyDir({
        'cases.yaml': `
agents:
  - { pattern: "spiffe://acme.io/a*", groups: [x] }
cases:
  - name: bad
    principal: not-a-spiffe-id
    action: Fly
    expect: maybe
  - name: approval on another action
    principal: spiffe://example.org/security/oncall
    action: ListLeases
    resource: { role: token/demo }
    context: { changeType: destuctive }
    expect: approval
`,
        'empty.yaml': 'cases: []\n',
        'not-yaml.yaml': 'cases: [\n',
      });
      const invalid = await capture(() => runPolicyTest(SHIPPED_POLICY_DIR, path.join(cases, 'cases.yaml')));
      assert.equal(invalid.code, 1);
      assert.deepEqual(invalid.out, []);
      const text = invalid.err.join('\n');
      for (const expected of [
        /agents: .*entry 0/,
        /cases\[0\] \("bad"\): principal: must be a SPIFFE ID/,
        /cases\[0\] \("bad"\): action: /,
        /cases\[0\] \("bad"\): expect: /,
        /cases\[1\] .*resource: ListLeases acts on the broker/,
        /cases\[1\] .*expect: only IssueCredential can need approval/,
        /cases\[1\] .*context\.changeType must be one of/,
      ]) {
        assert.match(text, expected);
      }

      const empty = await capture(() => runPolicyTest(SHIPPED_POLICY_DIR, path.join(cases, 'empty.yaml')));
      assert.equal(empty.code, 1);
      assert.match(empty.err.join('\n'), /at least one case/);

      const notYaml = await capture(() =>
        runPolicyTest(SHIPPED_POLICY_DIR, path.join(cases, 'not-yaml.yaml')),
      );
      assert.equal(notYaml.code, 1);
      const missing = await capture(() =>
        runPolicyTest(SHIPPED_POLICY_DIR, path.join(cases, 'missing.yaml')),
      );
      assert.equal(missing.code, 1);
      assert.match(missing.err.join('\n'), /ENOENT/);
    });

    it('exits 1 with the problems when the policy set itself is invalid', async () => {
      const dir = policyDir({ 'a.cedar': 'permit (' });
      const cases = policyDir({ 'cases.yaml': DEMO_CASE });
      const { code, out, err } = await capture(() =>
        runPolicyTest(dir, path.join(cases, 'cases.yaml'), { schema: SHIPPED_SCHEMA }),
      );
      assert.equal(code, 1);
      assert.deepEqual(out, []);
      assert.match(err[0] ?? '', new RegExp(`^${escape(path.join(dir, 'a.cedar'))}:1:`));
    });
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
